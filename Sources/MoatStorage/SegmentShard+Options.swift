/// The shard side of the operations with options, which every dialect's requests use: the one lookup
/// (classic gets are lookups without options; meta's `mg` adds hit-before and last-access reads before
/// the bump, vivify on miss, stale items and recache win tokens), deletes and arithmetic with CAS
/// checks and explicit CAS values, and `me`'s inspection.
extension SegmentShard {
    mutating func lookup<R>(
        _ key: UnsafeRawBufferPointer, hash: Int, options: LookupOptions, touchTo: UInt32?, vivifyTo: UInt32?,
        recacheBefore: UInt32?, now: UInt32, flushDeadline: UInt32, _ body: (ItemDetails) throws -> R
    ) rethrows -> R? {
        var created = false
        var found = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: true)
        if found == nil, let vivifyTo {
            // A zero-length placeholder whose creator is told it won the right to fill it.
            let outcome = store(
                mode: .add, key: key, hash: hash, value: UnsafeRawBufferPointer(start: nil, count: 0), flags: 0,
                expiresAt: vivifyTo, now: now, flushDeadline: flushDeadline, newCAS: options.newCAS)
            if outcome == .stored, let item = find(key, hash: hash) {
                found = item
                created = true
            }
        }
        guard let item = found else { return nil }
        // h, l and Z describe the item as it was before this request.
        let fetchedBefore = item.fetched
        let idle = now >= item.lastAccess ? Int64(now - item.lastAccess) : 0
        let tokenSentBefore = item.tokenSent
        var won = created
        if options.grantsTokens {
            if let recacheBefore, !tokenSentBefore, !created, item.expiresAt != 0, item.expiresAt < recacheBefore {
                won = true
            }
            // The first client to see a stale item is the one asked to recache it.
            if item.stale, !tokenSentBefore { won = true }
        }
        if won { item.tokenSent = true }
        if let touchTo { item.expiresAt = touchTo }
        if options.bump {
            item.fetched = true
            item.lastAccess = now
            item.markUsed()
        }
        let view = ItemDetails(
            key: item.keyBytes, value: item.valueBytes, flags: item.flags, cas: item.cas,
            ttl: Self.remaining(item, now: now), idle: idle, fetchedBefore: fetchedBefore, stale: item.stale,
            tokenSentBefore: tokenSentBefore, won: won)
        return try body(view)
    }

    /// `md`: deletes, or with `invalidate` marks stale (new CAS, token cleared so the next reader
    /// wins), or with `removeValue` keeps the item with an empty value.
    mutating func delete(
        _ key: UnsafeRawBufferPointer, hash: Int, compareCAS: UInt64?, invalidate: Bool, removeValue: Bool,
        newExpiry: UInt32?, newCAS: UInt64, now: UInt32, flushDeadline: UInt32
    ) -> DeleteOutcome {
        guard var item = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: false) else {
            return .notFound
        }
        if let compareCAS, item.cas != compareCAS { return .exists }
        guard invalidate || removeValue else {
            unlink(item, hash: hash)
            return .deleted
        }
        if removeValue, item.valueCount > 0 {
            // Without room for the empty copy the item goes entirely, which is also valueless.
            guard
                let empty = allocate(
                    keyCount: key.count, valueCount: 0, pinned: item.ref, now: now, flushDeadline: flushDeadline)
            else {
                unlink(item, hash: hash)
                return .deleted
            }
            // The item may have moved while room was made; it stayed linked, so the key finds it.
            let old = find(key, hash: hash).unsafelyUnwrapped
            empty.flags = old.flags
            empty.expiresAt = old.expiresAt
            empty.lastAccess = old.lastAccess
            if let base = key.baseAddress {
                (empty.raw + ItemPointer.headerSize).copyMemory(from: base, byteCount: key.count)
            }
            let bits = old.state & (ItemPointer.fetchedBit | ItemPointer.staleBit | ItemPointer.tokenSentBit)
            unlink(old, hash: hash)
            link(empty, hash: hash)
            empty.state |= bits
            item = empty
        }
        if invalidate {
            item.stale = true
            item.tokenSent = false
            if let newExpiry { item.expiresAt = newExpiry }
        }
        item.cas = newCAS != 0 ? newCAS : nextCAS()
        return .deleted
    }

    /// `ma`: incr/decr with an optional CAS check, explicit new CAS, new TTL, and creation on a miss.
    mutating func arithmetic(
        _ key: UnsafeRawBufferPointer, hash: Int, delta: UInt64, increment: Bool, compareCAS: UInt64?, newCAS: UInt64,
        vivifyTo: UInt32?, initial: UInt64, touchTo: UInt32?, now: UInt32, flushDeadline: UInt32
    ) -> ArithmeticResult {
        guard let item = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: false) else {
            guard let vivifyTo else { return ArithmeticResult(outcome: .notFound) }
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
            let outcome = withUnsafeMutableBytes(of: &digits) { scratch -> StoreOutcome in
                let count = Self.formatDecimal(initial, into: scratch)
                return store(
                    mode: .add, key: key, hash: hash,
                    value: UnsafeRawBufferPointer(rebasing: scratch[(scratch.count - count)...]),
                    flags: 0, expiresAt: vivifyTo, now: now, flushDeadline: flushDeadline, newCAS: newCAS)
            }
            guard outcome == .stored, let fresh = find(key, hash: hash) else {
                return ArithmeticResult(outcome: outcome == .noMemory ? .noMemory : .notStored)
            }
            if let touchTo { fresh.expiresAt = touchTo }
            return ArithmeticResult(
                outcome: .created(initial), cas: fresh.cas, ttl: Self.remaining(fresh, now: now))
        }
        if let compareCAS, item.cas != compareCAS { return ArithmeticResult(outcome: .exists) }
        let (outcome, fresh) = arithmetic(
            on: item, key: key, hash: hash, delta: delta, increment: increment, now: now, flushDeadline: flushDeadline)
        switch outcome {
        case .value(let value):
            if newCAS != 0 { fresh.cas = newCAS }
            if let touchTo { fresh.expiresAt = touchTo }
            return ArithmeticResult(outcome: .value(value), cas: fresh.cas, ttl: Self.remaining(fresh, now: now))
        case .notFound: return ArithmeticResult(outcome: .notFound)
        case .nonNumeric: return ArithmeticResult(outcome: .nonNumeric)
        case .noMemory: return ArithmeticResult(outcome: .noMemory)
        case .exists: return ArithmeticResult(outcome: .exists)
        }
    }

    /// `me`: one item's metadata, without bumping or marking it.
    mutating func inspect(_ key: UnsafeRawBufferPointer, hash: Int, now: UInt32, flushDeadline: UInt32)
        -> ItemInfo?
    {
        guard let item = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: false) else {
            return nil
        }
        return ItemInfo(
            ttl: Self.remaining(item, now: now), idle: now >= item.lastAccess ? Int64(now - item.lastAccess) : 0,
            cas: item.cas, fetched: item.fetched,
            sizeClass: 1, size: item.totalSize)
    }

    /// Seconds left to live, -1 for items that never expire.
    static func remaining(_ item: ItemPointer, now: UInt32) -> Int64 {
        item.expiresAt == 0 ? -1 : max(0, Int64(item.expiresAt) - Int64(now))
    }

    /// Writes `value` in decimal at the end of `scratch`; returns the digit count.
    static func formatDecimal(_ value: UInt64, into scratch: UnsafeMutableRawBufferPointer) -> Int {
        var v = value
        var index = scratch.count
        repeat {
            index -= 1
            scratch[index] = UInt8(0x30 + v % 10)
            v /= 10
        } while v > 0
        return scratch.count - index
    }
}
