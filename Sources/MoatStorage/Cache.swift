import Synchronization

/// Limits the cache enforces.
public struct CacheConfiguration: Sendable, Equatable {
    /// Total bytes of item memory (segments and large items), memcached's `-m`.
    public var memoryLimit: Int
    /// Largest value accepted, memcached's `-I`.
    public var maxItemSize: Int
    /// False is memcached's `-M`: refuse stores instead of evicting.
    public var evictionsEnabled: Bool
    /// Number of independently locked shards; nil picks one from the memory limit.
    public var shardCount: Int?
    /// Segment size; nil picks one from the shard budget.
    public var segmentSize: Int?

    public init(
        memoryLimit: Int, maxItemSize: Int = 1024 * 1024, evictionsEnabled: Bool = true, shardCount: Int? = nil,
        segmentSize: Int? = nil
    ) {
        self.memoryLimit = memoryLimit
        self.maxItemSize = maxItemSize
        self.evictionsEnabled = evictionsEnabled
        self.shardCount = shardCount
        self.segmentSize = segmentSize
    }

    /// Bytes of item header beyond key and value (what `bytes` counts per item besides them).
    public static let perItemOverhead = ItemPointer.headerSize

    /// The bytes an item of this key and value length takes in a segment, or nil when it is allocated
    /// on its own (larger than a segment). For tests and capacity planning.
    public func footprint(keyCount: Int, valueCount: Int) -> Int? {
        let footprint = ItemPointer.footprint(keyCount: keyCount, valueCount: valueCount)
        return footprint > effectiveSegmentSize ? nil : footprint
    }

    /// Shards for a server with `threads` event loops: four per thread (so that threads rarely meet on
    /// a lock), at most 16. At least 64 MiB each, so that each shard's FIFO spans many segments (its
    /// eviction order is per shard) and its open segment is a small share of it.
    public static func shardCount(forThreads threads: Int, memoryLimit: Int) -> Int {
        var count = 1
        while count < threads * 4, count < 16 { count *= 2 }
        while count > 1, memoryLimit / count < 64 * 1024 * 1024 { count /= 2 }
        return count
    }

    /// Up to 16 shards (a power of two), each with at least 16 MiB, so that every shard holds many
    /// segments; one shard below 32 MiB; more than 16 only past 128 GiB.
    var effectiveShardCount: Int {
        var count: Int
        if let shardCount {
            count = max(1, shardCount)
            while count & (count - 1) != 0 { count &= count - 1 }
        } else {
            count = 16
            while count > 1, memoryLimit / count < 16 * 1024 * 1024 { count /= 2 }
        }
        // A shard addresses 8 GiB (32-bit item references in 2-byte units): more shards past 128 GiB.
        while memoryLimit / count > Self.maxShardBudget { count *= 2 }
        return count
    }

    /// The most item memory one shard can address.
    static let maxShardBudget = 8 << 30

    /// 1 MiB segments (memcached's page size), smaller when a shard's budget holds fewer than 32 of
    /// them, but not below 16 KiB.
    var effectiveSegmentSize: Int {
        if let segmentSize { return segmentSize }
        let budget = memoryLimit / effectiveShardCount
        var size = 1024 * 1024
        while size > 16 * 1024, budget / size < 32 { size /= 2 }
        return size
    }
}

/// A lock and the shard it guards (Mutex is non-copyable, so it lives in a class to sit in an array).
final class Shard: Sendable {
    let state: Mutex<SegmentShard>
    init(_ state: consuming sending SegmentShard) { self.state = Mutex(state) }

    deinit {
        state.withLock { $0.releaseAll() }
    }

    @inline(__always)
    func withLock<R>(_ body: (inout SegmentShard) throws -> R) rethrows -> R {
        try state.withLock { try body(&$0) }
    }
}

/// The cache: a fixed set of shards, each a hash table over items in segments with its own eviction
/// lists, budget and lock. Safe from any thread; each call takes exactly one shard lock.
///
/// Keys and values are passed as raw bytes (they usually point into a connection's input buffer);
/// `[UInt8]` overloads exist for convenience.
public final class Cache: Sendable {
    public let configuration: CacheConfiguration
    private let shards: [Shard]
    private let shardShift: Int
    public let clock: any CacheClock
    /// Unix time that relative item times count from (items store 32-bit seconds, as memcached's).
    let epoch: Int64
    /// A pending `flush_all <delay>` in relative seconds: items stored before it vanish once it arrives.
    let flushDeadline = Atomic<UInt32>(0)

    /// The memory limit now (a bucket's quota can change on reload; `configuration` keeps the first).
    private let currentLimit: Atomic<Int>

    public init(configuration: CacheConfiguration, clock: any CacheClock = SystemClock()) {
        self.configuration = configuration
        self.currentLimit = Atomic(configuration.memoryLimit)
        self.clock = clock
        self.epoch = clock.now() - 1
        let count = configuration.effectiveShardCount
        let budget = configuration.memoryLimit / count
        let segmentSize = configuration.effectiveSegmentSize
        self.shards = (0..<count).map { index in
            Shard(
                SegmentShard(
                    budget: budget, segmentSize: segmentSize, maxItemSize: configuration.maxItemSize,
                    evictionsEnabled: configuration.evictionsEnabled, shardIndex: index, shardCount: count))
        }
        var bits = 0
        while (1 << bits) < count { bits += 1 }
        // The shard comes from the hash's top bits, the bucket from its low bits.
        self.shardShift = 64 - bits
    }

    public var shardCount: Int { shards.count }

    var allShards: [Shard] { shards }

    /// Runs `body` with every shard locked, taken in index order (everything else holds one lock at a
    /// time, so this cannot deadlock).
    func withEveryShardLocked(_ body: ([UnsafeMutablePointer<SegmentShard>]) -> Void) {
        func lock(_ index: Int, _ held: [UnsafeMutablePointer<SegmentShard>]) {
            guard index < shards.count else { return body(held) }
            shards[index].withLock { state in withUnsafeMutablePointer(to: &state) { lock(index + 1, held + [$0]) } }
        }
        lock(0, [])
    }

    public var memoryLimit: Int { currentLimit.load(ordering: .relaxed) }

    /// Applies a new memory limit and eviction policy; a smaller limit evicts until every shard is
    /// within its share. The shard count and segment size stay those chosen at creation.
    public func resize(memoryLimit: Int, evictionsEnabled: Bool) {
        currentLimit.store(memoryLimit, ordering: .relaxed)
        let budget = memoryLimit / shards.count
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        for shard in shards {
            shard.withLock {
                $0.resize(budget: budget, evictionsEnabled: evictionsEnabled, now: now, flushDeadline: deadline)
            }
        }
    }

    public func now() -> Int64 { clock.now() }

    @inline(__always)
    func relativeNow() -> UInt32 {
        UInt32(clamping: clock.now() - epoch)
    }

    /// memcached's expiry rules as a relative deadline: 0 never; otherwise at least 1.
    @inline(__always)
    func relativeDeadline(_ exptime: Int64) -> UInt32 {
        let absolute = Expiry.deadline(for: exptime, now: clock.now())
        if absolute == 0 { return 0 }
        return UInt32(clamping: max(1, absolute - epoch))
    }

    /// A keyed hash (Swift's per-process random seed), so clients cannot choose colliding keys.
    @inline(__always)
    static func hash(_ key: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: key)
        return hasher.finalize()
    }

    @inline(__always)
    func shard(for hash: Int) -> Shard {
        shardShift == 64 ? shards[0] : shards[Int(UInt64(bitPattern: Int64(hash)) >> UInt64(shardShift))]
    }

    // MARK: commands on raw bytes, without options (the engine uses the forms in Cache+Options, these
    // are the same calls with none)

    public func touch(_ key: UnsafeRawBufferPointer, exptime: Int64) -> TouchOutcome {
        touch(key, exptime: exptime) { _ in } == nil ? .notFound : .touched
    }

    public func store(
        _ mode: StoreMode, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt32, exptime: Int64
    ) -> StoreOutcome {
        store(
            mode, key: key, value: value, flags: flags, exptime: exptime, compareCAS: nil, newCAS: 0, invalidate: false
        )
        .0
    }

    public func delete(_ key: UnsafeRawBufferPointer) -> DeleteOutcome {
        delete(key, compareCAS: nil, invalidate: false, removeValue: false, newExptime: nil, newCAS: 0)
    }

    public func increment(_ key: UnsafeRawBufferPointer, by delta: UInt64) -> ArithmeticOutcome {
        arithmetic(key, delta: delta, increment: true)
    }

    public func decrement(_ key: UnsafeRawBufferPointer, by delta: UInt64) -> ArithmeticOutcome {
        arithmetic(key, delta: delta, increment: false)
    }

    private func arithmetic(_ key: UnsafeRawBufferPointer, delta: UInt64, increment: Bool) -> ArithmeticOutcome {
        let result = arithmetic(
            key, delta: delta, increment: increment, compareCAS: nil, newCAS: 0, vivifyExptime: nil, initial: 0,
            touchExptime: nil)
        switch result.outcome {
        case .value(let value), .created(let value): return .value(value)
        case .notFound, .notStored: return .notFound
        case .exists: return .exists
        case .nonNumeric: return .nonNumeric
        case .noMemory: return .noMemory
        }
    }

    // MARK: the same on arrays (tests, tools)

    public func get(_ key: [UInt8]) -> ItemSnapshot? {
        key.withUnsafeBytes { k in
            lookup(k, LookupOptions()) { ItemSnapshot(value: Array($0.value), flags: $0.flags, cas: $0.cas) }
        }
    }

    public func getAndTouch(_ key: [UInt8], exptime: Int64) -> ItemSnapshot? {
        var options = LookupOptions()
        options.touchExptime = exptime
        return key.withUnsafeBytes { k in
            lookup(k, options) { ItemSnapshot(value: Array($0.value), flags: $0.flags, cas: $0.cas) }
        }
    }

    public func touch(_ key: [UInt8], exptime: Int64) -> TouchOutcome {
        key.withUnsafeBytes { touch($0, exptime: exptime) }
    }

    public func store(_ mode: StoreMode, key: [UInt8], value: [UInt8], flags: UInt32, exptime: Int64) -> StoreOutcome {
        key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in store(mode, key: k, value: v, flags: flags, exptime: exptime) }
        }
    }

    public func delete(_ key: [UInt8]) -> DeleteOutcome {
        key.withUnsafeBytes { delete($0) }
    }

    public func increment(_ key: [UInt8], by delta: UInt64) -> ArithmeticOutcome {
        key.withUnsafeBytes { increment($0, by: delta) }
    }

    public func decrement(_ key: [UInt8], by delta: UInt64) -> ArithmeticOutcome {
        key.withUnsafeBytes { decrement($0, by: delta) }
    }

    // MARK: whole cache

    /// `flush_all [delay]`: with no delay everything goes now; with a delay, everything stored
    /// before that moment becomes invisible when it arrives.
    public func flushAll(delay: Int64 = 0) {
        if delay <= 0 {
            flushDeadline.store(0, ordering: .relaxed)
            for shard in shards { shard.withLock { $0.removeAll() } }
        } else {
            flushDeadline.store(relativeDeadline(delay), ordering: .relaxed)
        }
    }

    /// Background reclaim of expired items, a bounded walk per shard; returns how many went.
    @discardableResult
    public func reclaimExpired(perShardLimit: Int = 1000) -> Int {
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        var total = 0
        for shard in shards {
            total += shard.withLock { $0.reclaimExpired(now: now, flushDeadline: deadline, limit: perShardLimit) }
        }
        return total
    }

    public func counters() -> ShardCounters {
        let now = relativeNow()
        var sum = ShardCounters()
        for shard in shards { sum = sum + shard.withLock { $0.snapshotCounters(now: now) } }
        return sum
    }

    /// `stats reset`: clears the cumulative counters, not the item and byte gauges.
    public func resetCounters() {
        for shard in shards { shard.withLock { $0.resetCounters() } }
    }
}
