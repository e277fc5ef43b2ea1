/// Counters a shard keeps under its own lock; summed across shards for `stats`.
public struct ShardCounters: Sendable, Equatable {
    public var currentItems = 0
    public var bytes = 0
    public var totalItems: UInt64 = 0
    public var evictions: UInt64 = 0
    public var reclaimed: UInt64 = 0
    public var expiredUnfetched: UInt64 = 0
    public var evictedUnfetched: UInt64 = 0
    public var outOfMemory: UInt64 = 0
    public var getExpired: UInt64 = 0
    public var getFlushed: UInt64 = 0
    public var crawlerReclaimed: UInt64 = 0
    /// Bytes of item memory allocated (segments and large items); never above the limit.
    public var mallocedBytes = 0
    /// Seconds since the least recently used item was stored (0 when empty).
    public var oldestItemAge: Int64 = 0

    public init() {}

    public static func + (lhs: ShardCounters, rhs: ShardCounters) -> ShardCounters {
        var sum = lhs
        sum.currentItems += rhs.currentItems
        sum.bytes += rhs.bytes
        sum.totalItems += rhs.totalItems
        sum.evictions += rhs.evictions
        sum.reclaimed += rhs.reclaimed
        sum.expiredUnfetched += rhs.expiredUnfetched
        sum.evictedUnfetched += rhs.evictedUnfetched
        sum.outOfMemory += rhs.outOfMemory
        sum.getExpired += rhs.getExpired
        sum.getFlushed += rhs.getFlushed
        sum.crawlerReclaimed += rhs.crawlerReclaimed
        sum.mallocedBytes += rhs.mallocedBytes
        sum.oldestItemAge = max(lhs.oldestItemAge, rhs.oldestItemAge)
        return sum
    }
}
