import Synchronization

/// Limits the cache enforces.
public struct CacheConfiguration: Sendable, Equatable {
    /// Total bytes all items may be charged (key + value + per-item overhead), memcached's `-m`.
    public var memoryLimit: Int
    /// Largest value accepted, memcached's `-I`.
    public var maxItemSize: Int
    /// False is memcached's `-M`: refuse stores instead of evicting.
    public var evictionsEnabled: Bool
    /// Number of independently locked shards; nil picks one from the limits.
    public var shardCount: Int?

    public init(memoryLimit: Int, maxItemSize: Int = 1024 * 1024, evictionsEnabled: Bool = true, shardCount: Int? = nil) {
        self.memoryLimit = memoryLimit
        self.maxItemSize = maxItemSize
        self.evictionsEnabled = evictionsEnabled
        self.shardCount = shardCount
    }

    /// Bytes charged per item beyond its key and value (see `Item.overhead`).
    public static let perItemOverhead = Item.overhead

    /// As many shards (up to 16, a power of two) as keep each shard's budget at least
    /// four maximum-size items, so a large item always fits in its shard.
    var effectiveShardCount: Int {
        if let shardCount { return max(1, shardCount) }
        var count = 16
        while count > 1, memoryLimit / count < 4 * (maxItemSize + Item.overhead + 250) { count /= 2 }
        return count
    }
}

/// A lock and the shard it guards (Mutex is non-copyable, so it lives in a class to sit in an array).
final class Shard: Sendable {
    let state: Mutex<ShardState>
    init(_ state: consuming sending ShardState) { self.state = Mutex(state) }

    @inline(__always)
    func withLock<R>(_ body: (inout ShardState) -> R) -> R {
        state.withLock { body(&$0) }
    }
}

/// The cache: a fixed set of shards, each a hash table with its own LRU, budget and lock.
/// Safe to call from any thread; each call takes exactly one shard lock.
public final class Cache: Sendable {
    public let configuration: CacheConfiguration
    private let shards: [Shard]
    private let shardMask: UInt64
    private let clock: any CacheClock
    private let casCounter = Atomic<UInt64>(0)
    /// A pending `flush_all <delay>`: items stored before this second vanish once it arrives.
    private let flushDeadline = Atomic<Int64>(0)

    public init(configuration: CacheConfiguration, clock: any CacheClock = SystemClock()) {
        self.configuration = configuration
        self.clock = clock
        var count = configuration.effectiveShardCount
        // Round down to a power of two so a mask picks the shard.
        while count & (count - 1) != 0 { count &= count - 1 }
        let budget = configuration.memoryLimit / count
        self.shards = (0..<count).map { _ in
            Shard(ShardState(budget: budget, evictionsEnabled: configuration.evictionsEnabled))
        }
        self.shardMask = UInt64(count - 1)
    }

    public var shardCount: Int { shards.count }

    public func now() -> Int64 { clock.now() }

    @inline(__always)
    private func shard(for key: [UInt8]) -> Shard {
        // FNV-1a: cheap, and independent of the table's own (seeded) hashing.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return shards[Int(truncatingIfNeeded: (hash ^ (hash >> 32)) & shardMask)]
    }

    private func nextCAS() -> UInt64 {
        casCounter.add(1, ordering: .relaxed).newValue
    }

    // MARK: commands

    public func get(_ key: [UInt8]) -> ItemSnapshot? {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        return shard(for: key).withLock { $0.get(key, now: now, flushDeadline: deadline) }
    }

    public func getAndTouch(_ key: [UInt8], exptime: Int64) -> ItemSnapshot? {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let expiresAt = Expiry.deadline(for: exptime, now: now)
        return shard(for: key).withLock {
            $0.getAndTouch(key, expiresAt: expiresAt, now: now, flushDeadline: deadline)
        }
    }

    public func touch(_ key: [UInt8], exptime: Int64) -> TouchOutcome {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let expiresAt = Expiry.deadline(for: exptime, now: now)
        return shard(for: key).withLock { $0.touch(key, expiresAt: expiresAt, now: now, flushDeadline: deadline) }
    }

    public func store(_ mode: StoreMode, key: [UInt8], value: [UInt8], flags: UInt32, exptime: Int64) -> StoreOutcome {
        if value.count > configuration.maxItemSize { return .tooLarge }
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let expiresAt = Expiry.deadline(for: exptime, now: now)
        return shard(for: key).withLock {
            $0.store(
                mode: mode, key: key, value: value, flags: flags, expiresAt: expiresAt,
                maxItemSize: configuration.maxItemSize, now: now, flushDeadline: deadline, nextCAS: nextCAS)
        }
    }

    public func delete(_ key: [UInt8]) -> DeleteOutcome {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        return shard(for: key).withLock { $0.delete(key, now: now, flushDeadline: deadline) }
    }

    public func increment(_ key: [UInt8], by delta: UInt64) -> ArithmeticOutcome {
        arithmetic(key, delta: delta, increment: true)
    }

    public func decrement(_ key: [UInt8], by delta: UInt64) -> ArithmeticOutcome {
        arithmetic(key, delta: delta, increment: false)
    }

    private func arithmetic(_ key: [UInt8], delta: UInt64, increment: Bool) -> ArithmeticOutcome {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        return shard(for: key).withLock {
            $0.arithmetic(key, delta: delta, increment: increment, now: now, flushDeadline: deadline, nextCAS: nextCAS)
        }
    }

    /// `flush_all [delay]`: with no delay everything goes now; with a delay, everything stored
    /// before that moment becomes invisible when it arrives.
    public func flushAll(delay: Int64 = 0) {
        let now = clock.now()
        if delay <= 0 {
            flushDeadline.store(0, ordering: .relaxed)
            for shard in shards { shard.withLock { $0.removeAll() } }
        } else {
            flushDeadline.store(Expiry.deadline(for: delay, now: now), ordering: .relaxed)
        }
    }

    /// Background reclaim of expired items, a bounded walk per shard; returns how many went.
    @discardableResult
    public func reclaimExpired(perShardLimit: Int = 1000) -> Int {
        let now = clock.now()
        let deadline = flushDeadline.load(ordering: .relaxed)
        var total = 0
        for shard in shards {
            total += shard.withLock { $0.reclaimExpired(now: now, flushDeadline: deadline, limit: perShardLimit) }
        }
        return total
    }

    public func counters() -> ShardCounters {
        let now = clock.now()
        var sum = ShardCounters()
        for shard in shards { sum = sum + shard.withLock { $0.snapshotCounters(now: now) } }
        return sum
    }

    /// `stats reset`: clears the cumulative counters, not the item and byte gauges.
    public func resetCounters() {
        for shard in shards { shard.withLock { $0.resetCounters() } }
    }
}
