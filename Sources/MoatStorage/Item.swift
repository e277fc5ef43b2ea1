/// One cached entry. Lives inside exactly one shard and is only touched under that shard's lock.
final class Item {
    let key: [UInt8]
    var value: [UInt8]
    var flags: UInt32
    /// 0 = never; otherwise the second at which the item stops being visible.
    var expiresAt: Int64
    var cas: UInt64
    /// When the item was last stored (for delayed `flush_all`).
    var storedAt: Int64
    var fetched: Bool = false

    // Intrusive LRU links. The shard's table owns every item, so the links need not retain
    // (and skipping the reference counting keeps the hot path cheap); `linked` guards the walker.
    unowned(unsafe) var newer: Item?
    unowned(unsafe) var older: Item?
    var linked = false

    init(key: [UInt8], value: [UInt8], flags: UInt32, expiresAt: Int64, cas: UInt64, storedAt: Int64) {
        self.key = key
        self.value = value
        self.flags = flags
        self.expiresAt = expiresAt
        self.cas = cas
        self.storedAt = storedAt
    }

    /// Bytes charged against the memory limit: key, value and a fixed charge for the object header,
    /// its fields and its hash-table slot, so that `-m` bounds real memory, not only payload.
    var accountedSize: Int { Item.size(keyCount: key.count, valueCount: value.count) }

    /// Measured, not guessed: 1,000,000 items of 100-byte values with 13-byte keys grew the release
    /// server's RSS by 354 bytes per item (`shared/bench/load_items.py`), i.e. about 240 bytes beyond
    /// key and value (object header and fields, two array headers, malloc rounding, table slot).
    static let overhead = 240

    static func size(keyCount: Int, valueCount: Int) -> Int {
        keyCount + valueCount + overhead
    }

    func isExpired(now: Int64) -> Bool {
        expiresAt != 0 && expiresAt <= now
    }
}
