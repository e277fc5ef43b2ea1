import MoatStorage
import MoatTestSupport

/// Bytes one item is charged: key + value + fixed overhead.
let itemOverhead = CacheConfiguration.perItemOverhead
func charge(key: Int, value: Int) -> Int { key + value + itemOverhead }

func makeCache(
    memoryLimit: Int = 64 * 1024 * 1024, maxItemSize: Int = 1024 * 1024, evictions: Bool = true,
    shards: Int? = nil, segmentSize: Int? = nil, clock: ManualClock = ManualClock()
) -> Cache {
    Cache(
        configuration: CacheConfiguration(
            memoryLimit: memoryLimit, maxItemSize: maxItemSize, evictionsEnabled: evictions, shardCount: shards,
            segmentSize: segmentSize),
        clock: clock)
}

/// The bytes an item of this key and value length takes in a segment of `segmentSize` (nil: allocated
/// on its own).
func footprint(key: Int, value: Int, segmentSize: Int = 1024 * 1024) -> Int? {
    CacheConfiguration(memoryLimit: segmentSize, shardCount: 1, segmentSize: segmentSize).footprint(
        keyCount: key, valueCount: value)
}

/// A one-shard cache whose memory is exactly one segment holding `slots` items of this key and value
/// length.
func slotCache(
    slots: Int, key: Int, value: Int, maxItemSize: Int = 1024, evictions: Bool = true,
    clock: ManualClock = ManualClock()
) -> Cache {
    let size = footprint(key: key, value: value)!
    return makeCache(
        memoryLimit: slots * size, maxItemSize: maxItemSize, evictions: evictions, shards: 1,
        segmentSize: slots * size, clock: clock)
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
