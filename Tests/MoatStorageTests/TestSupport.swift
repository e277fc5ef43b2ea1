import MoatStorage
import MoatTestSupport

/// Bytes one item is charged: key + value + fixed overhead.
let itemOverhead = CacheConfiguration.perItemOverhead
func charge(key: Int, value: Int) -> Int { key + value + itemOverhead }

func makeCache(
    memoryLimit: Int = 64 * 1024 * 1024, maxItemSize: Int = 1024 * 1024, evictions: Bool = true,
    shards: Int? = nil, pageSize: Int? = nil, clock: ManualClock = ManualClock()
) -> Cache {
    Cache(
        configuration: CacheConfiguration(
            memoryLimit: memoryLimit, maxItemSize: maxItemSize, evictionsEnabled: evictions, shardCount: shards,
            pageSize: pageSize),
        clock: clock)
}

/// The chunk an item of this key and value length occupies under `pageSize` (nil: allocated on its own).
func chunk(key: Int, value: Int, pageSize: Int) -> Int? {
    CacheConfiguration(memoryLimit: pageSize, shardCount: 1, pageSize: pageSize).chunkSize(
        keyCount: key, valueCount: value)
}

/// A one-shard cache whose memory is exactly one page holding `slots` items of this key and value
/// length: the page is `slots` chunks of the item's size class.
func slotCache(
    slots: Int, key: Int, value: Int, maxItemSize: Int = 1024, evictions: Bool = true,
    clock: ManualClock = ManualClock()
) -> Cache {
    let size = chunk(key: key, value: value, pageSize: 1024 * 1024)!
    let pageSize = slots * size
    let cache = makeCache(
        memoryLimit: pageSize, maxItemSize: maxItemSize, evictions: evictions, shards: 1, pageSize: pageSize,
        clock: clock)
    precondition(
        cache.configuration.chunkSize(keyCount: key, valueCount: value) == size, "item class changed with the page size"
    )
    return cache
}

extension Cache {
    @discardableResult
    func set(_ key: String, _ value: String, flags: UInt32 = 0, exptime: Int64 = 0) -> StoreOutcome {
        store(.set, key: b(key), value: b(value), flags: flags, exptime: exptime)
    }

    func value(_ key: String) -> String? {
        get(b(key)).map { String(decoding: $0.value, as: UTF8.self) }
    }
}
