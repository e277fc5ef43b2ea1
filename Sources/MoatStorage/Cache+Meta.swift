/// What `mg` asks of a lookup besides the key.
public struct MetaGetOptions: Sendable, Equatable {
    /// False is `u`: no LRU bump, no hit mark, no access time update.
    public var bump = true
    /// `T`: a new expiry for a hit.
    public var touchExptime: Int64?
    /// `N`: on a miss, create an empty item with this expiry and tell the caller it won.
    public var vivifyExptime: Int64?
    /// `R`: a hit whose expiry comes before this one (as an exptime) wins the right to recache.
    public var recacheExptime: Int64?
    /// `E`: the CAS unique of an item created by `N` (0: the server's own).
    public var newCAS: UInt64 = 0

    public init() {}
}

/// A meta-get hit seen in place (valid only inside the closure, while the shard is locked).
public struct MetaItemView {
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    public let flags: UInt32
    public let cas: UInt64
    /// Seconds left, -1 for never.
    public let ttl: Int64
    /// Seconds since the last access before this request.
    public let idle: Int64
    public let fetchedBefore: Bool
    public let stale: Bool
    /// Another client already holds the recache token (memcached's Z).
    public let tokenSentBefore: Bool
    /// This client wins the recache token (W).
    public let won: Bool
}

public struct MetaArithmeticResult: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case value(UInt64)
        /// Missed, and created with the initial value (`N`).
        case created(UInt64)
        case notFound
        case notStored
        case exists
        case nonNumeric
        case noMemory
    }
    public var outcome: Outcome
    public var cas: UInt64 = 0
    public var ttl: Int64 = -1
}

/// `me`'s view of one item.
public struct MetaDebugInfo: Sendable, Equatable {
    public let ttl: Int64
    public let idle: Int64
    public let cas: UInt64
    public let fetched: Bool
    /// 1-based size class; 0 for an item allocated on its own.
    public let sizeClass: Int
    /// Header, key and value bytes.
    public let size: Int
}

extension Cache {
    public func metaGet<R>(_ key: UnsafeRawBufferPointer, _ options: MetaGetOptions, _ body: (MetaItemView) throws -> R)
        rethrows -> R?
    {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let touchTo = options.touchExptime.map(relativeDeadline)
        let vivifyTo = options.vivifyExptime.map(relativeDeadline)
        let recacheBefore = options.recacheExptime.map(relativeDeadline)
        return try shard(for: hash).withLock {
            try $0.metaGet(
                key, hash: hash, options: options, touchTo: touchTo, vivifyTo: vivifyTo, recacheBefore: recacheBefore,
                now: now,
                flushDeadline: deadline, body)
        }
    }

    /// A store with meta set's options: `compareCAS` (C; for set/replace it makes the store a CAS),
    /// `newCAS` (E), `invalidate` (I: an older CAS stores a stale item). Returns the stored item's CAS.
    public func metaStore(
        _ mode: StoreMode, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt32, exptime: Int64,
        compareCAS: UInt64?, newCAS: UInt64, invalidate: Bool
    ) -> (StoreOutcome, cas: UInt64) {
        if value.count > configuration.maxItemSize { return (.tooLarge, 0) }
        var effective = mode
        var expectedCAS: UInt64 = 0
        if let compareCAS {
            switch mode {
            case .set, .replace: effective = .cas(compareCAS)
            // memcached ignores a CAS on add; append and prepend check it.
            case .append, .prepend: expectedCAS = compareCAS
            case .add, .cas: break
            }
        }
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let expiresAt = relativeDeadline(exptime)
        return shard(for: hash).withLock { shard in
            let outcome = shard.store(
                mode: effective, key: key, hash: hash, value: value, flags: flags, expiresAt: expiresAt, now: now,
                flushDeadline: deadline, expectedCAS: expectedCAS, newCAS: newCAS, invalidateIfOlder: invalidate)
            let cas = outcome == .stored ? (shard.find(key, hash: hash)?.cas ?? 0) : 0
            return (outcome, cas)
        }
    }

    public func metaDelete(
        _ key: UnsafeRawBufferPointer, compareCAS: UInt64?, invalidate: Bool, removeValue: Bool, newExptime: Int64?,
        newCAS: UInt64
    ) -> DeleteOutcome {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let newExpiry = newExptime.map(relativeDeadline)
        return shard(for: hash).withLock {
            $0.metaDelete(
                key, hash: hash, compareCAS: compareCAS, invalidate: invalidate, removeValue: removeValue,
                newExpiry: newExpiry,
                newCAS: newCAS, now: now, flushDeadline: deadline)
        }
    }

    public func metaArithmetic(
        _ key: UnsafeRawBufferPointer, delta: UInt64, increment: Bool, compareCAS: UInt64?, newCAS: UInt64,
        vivifyExptime: Int64?, initial: UInt64, touchExptime: Int64?
    ) -> MetaArithmeticResult {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let vivifyTo = vivifyExptime.map(relativeDeadline)
        let touchTo = touchExptime.map(relativeDeadline)
        return shard(for: hash).withLock {
            $0.metaArithmetic(
                key, hash: hash, delta: delta, increment: increment, compareCAS: compareCAS, newCAS: newCAS,
                vivifyTo: vivifyTo,
                initial: initial, touchTo: touchTo, now: now, flushDeadline: deadline)
        }
    }

    public func metaDebug(_ key: UnsafeRawBufferPointer) -> MetaDebugInfo? {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        return shard(for: hash).withLock { $0.metaDebug(key, hash: hash, now: now, flushDeadline: deadline) }
    }
}
