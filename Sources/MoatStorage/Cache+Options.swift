/// What a lookup may do besides reading the item (gat's touch; the meta protocol's `mg` flags map onto
/// the rest).
public struct LookupOptions: Sendable, Equatable {
    /// False: no LRU bump, no hit mark, no access time update (`mg`'s `u`).
    public var bump = true
    /// A new expiry for a hit (`T`).
    public var touchExptime: Int64?
    /// On a miss, create an empty item with this expiry and tell the caller it won (`N`).
    public var vivifyExptime: Int64?
    /// A hit whose expiry comes before this one (as an exptime) wins the right to recache (`R`).
    public var recacheExptime: Int64?
    /// The CAS unique of an item created on a miss (0: the cache's own; `E`).
    public var newCAS: UInt64 = 0
    /// Hand out recache tokens: a stale item, or one past `recacheExptime`, is won by its first reader
    /// (`mg`). Off, a lookup leaves the tokens as they are (a classic get cannot tell its client it won).
    public var grantsTokens = false

    public init() {}
}

/// A lookup's hit seen in place, with its age, expiry and recache state (valid only inside the
/// closure, while the shard is locked).
public struct ItemDetails {
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

public struct ArithmeticResult: Sendable, Equatable {
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

/// One item's metadata, without its value (what `me` reports).
public struct ItemInfo: Sendable, Equatable {
    public let ttl: Int64
    public let idle: Int64
    public let cas: UInt64
    public let fetched: Bool
    /// memcached's slab class; always 1 (the segment store has no size classes).
    public let sizeClass: Int
    /// Header, key and value bytes.
    public let size: Int
}

extension Cache {
    public func lookup<R>(_ key: UnsafeRawBufferPointer, _ options: LookupOptions, _ body: (ItemDetails) throws -> R)
        rethrows -> R?
    {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let touchTo = options.touchExptime.map(relativeDeadline)
        let vivifyTo = options.vivifyExptime.map(relativeDeadline)
        let recacheBefore = options.recacheExptime.map(relativeDeadline)
        return try shard(for: hash).withLock {
            try $0.lookup(
                key, hash: hash, options: options, touchTo: touchTo, vivifyTo: vivifyTo, recacheBefore: recacheBefore,
                now: now,
                flushDeadline: deadline, body)
        }
    }

    /// A store with options: `compareCAS` (for set/replace it makes the store a CAS), `newCAS` (the
    /// unique the stored item gets; 0: the cache's own), `invalidate` (an older CAS stores the item as
    /// stale instead of failing). Returns the stored item's CAS.
    public func store(
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
            // The stored item's CAS is the one the client chose, or the shard's last.
            return (outcome, outcome != .stored ? 0 : newCAS != 0 ? newCAS : shard.lastCAS)
        }
    }

    public func delete(
        _ key: UnsafeRawBufferPointer, compareCAS: UInt64?, invalidate: Bool, removeValue: Bool, newExptime: Int64?,
        newCAS: UInt64
    ) -> DeleteOutcome {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let newExpiry = newExptime.map(relativeDeadline)
        return shard(for: hash).withLock {
            $0.delete(
                key, hash: hash, compareCAS: compareCAS, invalidate: invalidate, removeValue: removeValue,
                newExpiry: newExpiry,
                newCAS: newCAS, now: now, flushDeadline: deadline)
        }
    }

    public func arithmetic(
        _ key: UnsafeRawBufferPointer, delta: UInt64, increment: Bool, compareCAS: UInt64?, newCAS: UInt64,
        vivifyExptime: Int64?, initial: UInt64, touchExptime: Int64?
    ) -> ArithmeticResult {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let vivifyTo = vivifyExptime.map(relativeDeadline)
        let touchTo = touchExptime.map(relativeDeadline)
        return shard(for: hash).withLock {
            $0.arithmetic(
                key, hash: hash, delta: delta, increment: increment, compareCAS: compareCAS, newCAS: newCAS,
                vivifyTo: vivifyTo,
                initial: initial, touchTo: touchTo, now: now, flushDeadline: deadline)
        }
    }

    /// Sets a new expiry; on a hit, passes the item to `body` while its shard is locked. Nil on a miss.
    public func touch<R>(_ key: UnsafeRawBufferPointer, exptime: Int64, _ body: (ItemView) throws -> R) rethrows -> R? {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        let expiresAt = relativeDeadline(exptime)
        return try shard(for: hash).withLock {
            try $0.touch(key, hash: hash, expiresAt: expiresAt, now: now, flushDeadline: deadline, body)
        }
    }

    public func inspect(_ key: UnsafeRawBufferPointer) -> ItemInfo? {
        let hash = Self.hash(key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        return shard(for: hash).withLock { $0.inspect(key, hash: hash, now: now, flushDeadline: deadline) }
    }
}
