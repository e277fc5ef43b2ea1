#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One shard of the cache: a chained hash table over items written into segments, a byte budget, and
/// a FIFO of segments with second chances for items read since the last pass. Not thread-safe on its
/// own; `Cache` keeps each shard behind a lock.
///
/// Memory: items of any size are appended to the open segment (`segmentSize` bytes, 1 MiB unless the
/// budget is small), packed at 2-byte alignment with a 30-byte header and no size classes; an item
/// larger than a segment gets an allocation of its own, which is a segment holding one item.
/// `committed` (segments plus those allocations) never exceeds `budget`. Deleting or replacing an item
/// only marks it dead; its bytes come back when its segment reaches the old end of the FIFO. There the
/// segment is compacted in place: dead, expired and flushed items go, live items read since the last
/// pass (or read often before it: a use count of up to 3, one off per pass) slide to the front, up to
/// half the segment, and every other live item is evicted;
/// the segment then reopens at the new end for writes. Under `-M` nothing live is evicted, so only dead
/// and expired bytes come back. See docs/performance.md for the design and its costs per item.
struct SegmentShard {
    struct Segment {
        var base: UnsafeMutableRawPointer?
        /// `segmentSize`, or a large item's allocation.
        var capacity = 0
        /// Bytes written (for a large item, its footprint).
        var used = 0
        var liveItems = 0
        /// Bytes of items deleted or replaced since the segment was last compacted.
        var deadBytes = 0
        /// FIFO links by segment index (0: none); `newer` points towards `newest`.
        var newer: Int32 = 0
        var older: Int32 = 0
        var large = false
        /// In the FIFO (not kept empty in the pool, not free).
        var queued = false
        /// Bumped whenever items move within it or it empties, so that the crawler restarts it.
        var generation: UInt32 = 0
    }

    let segmentSize: Int
    /// An `ItemRef`'s offset field counts 2-byte units of a segment: log2(segmentSize) - 1 bits.
    let unitBits: Int
    private let unitMask: UInt32
    private let maxSegments: Int
    private(set) var budget: Int
    var evictionsEnabled: Bool
    let maxItemSize: Int
    let shardIndex: UInt64
    let shardBits: UInt64
    private var segments: [Segment] = [Segment()]
    /// Segment bases by index, for resolving an `ItemRef` without touching `segments`.
    private var bases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private var basesCapacity: Int
    private var freeIndices: [Int32] = []
    /// Emptied segments kept allocated (and committed) for the next open.
    private var pool: [Int32] = []
    private var newest: Int32 = 0
    private var oldest: Int32 = 0
    /// The segment new items are appended to (0: none open).
    private var openSegment: Int32 = 0
    /// Where a restore appends: the old end of the FIFO, since a snapshot lists the newest items first.
    private var restoreSegment: Int32 = 0
    /// The segment being compacted: its items must not send it to the pool mid-walk.
    private var compacting: Int32 = 0
    private(set) var committed = 0
    private(set) var usedBytes = 0
    private var buckets: UnsafeMutablePointer<ItemRef>
    private var bucketMask: Int
    private(set) var count = 0
    var casCounter: UInt64 = 0
    private(set) var counters = ShardCounters()
    private var crawlSegment = 1
    private var crawlOffset = 0
    private var crawlGeneration: UInt32 = 0

    init(
        budget: Int, segmentSize: Int, maxItemSize: Int, evictionsEnabled: Bool, shardIndex: Int, shardCount: Int
    ) {
        var bits = 1
        while (1 << bits) < segmentSize { bits += 1 }
        self.segmentSize = segmentSize
        self.unitBits = bits - 1
        self.unitMask = UInt32((1 << (bits - 1)) - 1)
        self.maxSegments = (1 << (32 - (bits - 1))) - 1
        self.budget = budget
        self.maxItemSize = maxItemSize
        self.evictionsEnabled = evictionsEnabled
        self.shardIndex = UInt64(shardIndex)
        var shardBits: UInt64 = 0
        while (1 << shardBits) < shardCount { shardBits += 1 }
        self.shardBits = shardBits
        self.basesCapacity = 64
        self.bases = .allocate(capacity: 64)
        self.bases.initialize(repeating: nil, count: 64)
        let initialBuckets = 1024
        self.buckets = .allocate(capacity: initialBuckets)
        self.buckets.initialize(repeating: 0, count: initialBuckets)
        self.bucketMask = initialBuckets - 1
    }

    /// Frees every segment and the table; the shard is unusable afterwards.
    mutating func releaseAll() {
        for index in segments.indices where segments[index].base != nil {
            segments[index].base?.deallocate()
        }
        segments = [Segment()]
        bases.deallocate()
        buckets.deallocate()
    }

    // MARK: references

    @inline(__always)
    func item(_ ref: ItemRef) -> ItemPointer {
        let base = bases[Int(ref >> UInt32(unitBits))].unsafelyUnwrapped
        return ItemPointer(base + Int(ref & unitMask) << 1, ref: ref)
    }

    @inline(__always)
    private func ref(segment: Int32, offset: Int) -> ItemRef {
        (UInt32(segment) << UInt32(unitBits)) | UInt32(offset >> 1)
    }

    @inline(__always)
    private func segmentIndex(of ref: ItemRef) -> Int { Int(ref >> UInt32(unitBits)) }

    // MARK: lookups

    @inline(__always)
    func find(_ key: UnsafeRawBufferPointer, hash: Int) -> ItemPointer? {
        var cursor = buckets[hash & bucketMask]
        while cursor != 0 {
            let candidate = item(cursor)
            if candidate.keyEquals(key) { return candidate }
            cursor = candidate.next
        }
        return nil
    }

    /// An item last accessed before a delayed flush's deadline is gone once it arrives. Reading the
    /// last access (not the store) time is equivalent, as in memcached: an access before the deadline
    /// leaves the time before it, and an item still visible after the deadline was already newer.
    @inline(__always)
    static func hiddenByFlush(_ item: ItemPointer, now: UInt32, flushDeadline: UInt32) -> Bool {
        flushDeadline != 0 && now >= flushDeadline && item.lastAccess < flushDeadline
    }

    /// The live item for `key`, or nil; expired or flushed items found here go (lazy expiry).
    mutating func liveItem(
        _ key: UnsafeRawBufferPointer, hash: Int, now: UInt32, flushDeadline: UInt32, counting: Bool
    ) -> ItemPointer? {
        guard let item = find(key, hash: hash) else { return nil }
        if item.isExpired(now: now) {
            if counting { counters.getExpired += 1 }
            if !item.fetched { counters.expiredUnfetched += 1 }
            unlink(item, hash: hash)
            return nil
        }
        if Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline) {
            if counting { counters.getFlushed += 1 }
            unlink(item, hash: hash)
            return nil
        }
        return item
    }

    mutating func touch<R>(
        _ key: UnsafeRawBufferPointer, hash: Int, expiresAt: UInt32, now: UInt32, flushDeadline: UInt32,
        _ body: (ItemView) throws -> R
    ) rethrows -> R? {
        guard let item = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: false) else {
            return nil
        }
        item.expiresAt = expiresAt
        item.lastAccess = now
        item.markUsed()
        return try body(ItemView(key: item.keyBytes, value: item.valueBytes, flags: item.flags, cas: item.cas))
    }

    // MARK: updates

    mutating func nextCAS() -> UInt64 {
        casCounter &+= 1
        // Unique across shards without a shared counter: the shard's index sits in the low bits.
        return (casCounter << shardBits) | shardIndex
    }

    /// The CAS unique most recently given out by this shard (the stored item's, right after a store).
    var lastCAS: UInt64 { (casCounter << shardBits) | shardIndex }

    /// What an item of this size is charged: its footprint in a segment, or its own allocation.
    func charge(keyCount: Int, valueCount: Int) -> Int {
        let footprint = ItemPointer.footprint(keyCount: keyCount, valueCount: valueCount)
        return footprint > segmentSize ? Self.largeAllocationSize(footprint) : footprint
    }

    mutating func store(
        mode: StoreMode, key: UnsafeRawBufferPointer, hash: Int, value: UnsafeRawBufferPointer, flags: UInt32,
        expiresAt: UInt32, now: UInt32, flushDeadline: UInt32, expectedCAS: UInt64 = 0, newCAS: UInt64 = 0,
        invalidateIfOlder: Bool = false
    ) -> StoreOutcome {
        let existing = liveItem(key, hash: hash, now: now, flushDeadline: flushDeadline, counting: false)
        var newFlags = flags
        var newExpiry = expiresAt
        var combined = value.count
        // Meta set's I flag: an older CAS still stores, but as stale (keeping TTL and win token).
        var storeStale = false
        var keepTokenSent = false
        switch mode {
        case .set:
            break
        case .add:
            if let existing {
                // memcached bumps the item on a failed add, so a hot key that clients keep adding survives.
                existing.markUsed()
                return .notStored
            }
        case .replace:
            if existing == nil { return .notStored }
        case .append, .prepend:
            guard let existing else { return .notStored }
            // The binary protocol's append/prepend may carry a CAS to check (0: none).
            if expectedCAS != 0, existing.cas != expectedCAS { return .exists }
            combined = existing.valueCount + value.count
            // The combined value obeys -I like any other.
            if combined > maxItemSize { return .tooLarge }
            newFlags = existing.flags
            newExpiry = existing.expiresAt
        case .cas(let unique):
            guard let existing else { return .notFound }
            if existing.cas != unique {
                guard invalidateIfOlder, unique < existing.cas else { return .exists }
                storeStale = true
                keepTokenSent = existing.tokenSent
                newExpiry = existing.expiresAt
            }
        }
        if charge(keyCount: key.count, valueCount: combined) > budget { return .tooLarge }

        let keepsOld = mode == .append || mode == .prepend
        var pinned: ItemRef = 0
        if let existing {
            if keepsOld {
                existing.markUsed()
                pinned = existing.ref
            } else {
                // The old value is replaced either way (memcached also drops it when a set fails).
                unlink(existing, hash: hash)
            }
        }
        guard
            let item = allocate(
                keyCount: key.count, valueCount: combined, pinned: pinned, now: now, flushDeadline: flushDeadline)
        else {
            counters.outOfMemory += 1
            return .noMemory
        }
        item.flags = newFlags
        item.expiresAt = newExpiry
        item.lastAccess = now
        // memcached's E flag: the client picks the new CAS (0 keeps the server's counter).
        item.cas = newCAS != 0 ? newCAS : nextCAS()
        if let base = key.baseAddress {
            (item.raw + ItemPointer.headerSize).copyMemory(from: base, byteCount: key.count)
        }
        let valueStart = item.raw + ItemPointer.headerSize + key.count
        if keepsOld {
            // The old item may have moved while room was made; it stayed linked, so the key finds it.
            let spare = find(key, hash: hash).unsafelyUnwrapped
            let old = spare.valueBytes
            if mode == .append {
                if let b = old.baseAddress { valueStart.copyMemory(from: b, byteCount: old.count) }
                if let b = value.baseAddress { (valueStart + old.count).copyMemory(from: b, byteCount: value.count) }
            } else {
                if let b = value.baseAddress { valueStart.copyMemory(from: b, byteCount: value.count) }
                if let b = old.baseAddress { (valueStart + value.count).copyMemory(from: b, byteCount: old.count) }
            }
            unlink(spare, hash: hash)
        } else if let b = value.baseAddress {
            valueStart.copyMemory(from: b, byteCount: value.count)
        }
        link(item, hash: hash)
        if storeStale {
            item.stale = true
            item.tokenSent = keepTokenSent
        }
        counters.totalItems += 1
        return .stored
    }

    /// incr/decr on a live item; `item` is the one that holds the result (a longer number may need a
    /// new place).
    mutating func arithmetic(
        on item: ItemPointer, key: UnsafeRawBufferPointer, hash: Int, delta: UInt64, increment: Bool, now: UInt32,
        flushDeadline: UInt32
    ) -> (outcome: ArithmeticOutcome, item: ItemPointer) {
        guard let current = Self.parseCounter(item.valueBytes) else { return (.nonNumeric, item) }
        let result = increment ? current &+ delta : (delta > current ? 0 : current - delta)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { scratch -> (ArithmeticOutcome, ItemPointer) in
            let count = Self.formatDecimal(result, into: scratch)
            let text = UnsafeRawBufferPointer(rebasing: scratch[(scratch.count - count)...])
            item.markUsed()
            if text.count == item.valueCount {
                // Same length: rewrite in place (the common case for counters).
                if let b = text.baseAddress {
                    item.mutableValue.baseAddress?.copyMemory(from: b, byteCount: text.count)
                }
                item.cas = nextCAS()
                return (.value(result), item)
            }
            // A new length needs a new place; the old item stays until the new one exists (and stays
            // for good when no room can be made).
            guard
                let fresh = allocate(
                    keyCount: key.count, valueCount: text.count, pinned: item.ref, now: now,
                    flushDeadline: flushDeadline)
            else {
                counters.outOfMemory += 1
                return (.noMemory, find(key, hash: hash) ?? item)
            }
            let old = find(key, hash: hash).unsafelyUnwrapped
            fresh.flags = old.flags
            fresh.expiresAt = old.expiresAt
            fresh.lastAccess = old.lastAccess
            fresh.cas = nextCAS()
            if let b = key.baseAddress {
                (fresh.raw + ItemPointer.headerSize).copyMemory(from: b, byteCount: key.count)
            }
            if let b = text.baseAddress { fresh.mutableValue.baseAddress?.copyMemory(from: b, byteCount: text.count) }
            let wasFetched = old.fetched
            unlink(old, hash: hash)
            link(fresh, hash: hash)
            fresh.fetched = wasFetched
            fresh.markUsed()
            return (.value(result), fresh)
        }
    }

    /// A counter is a decimal unsigned 64-bit number; memcached tolerates trailing spaces.
    static func parseCounter(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        var end = bytes.count
        while end > 0, bytes[end - 1] == UInt8(ascii: " ") { end -= 1 }
        guard end > 0, end <= 20 else { return nil }
        var value: UInt64 = 0
        for index in 0..<end {
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// A new budget (a bucket's quota changed on reload). Shrinking frees pooled segments, then drops
    /// whole segments from the old end of the FIFO, until the shard is within it; growing only raises
    /// the ceiling.
    mutating func resize(budget newBudget: Int, evictionsEnabled evict: Bool, now: UInt32, flushDeadline: UInt32) {
        budget = newBudget
        evictionsEnabled = evict
        while committed > budget {
            if let index = pool.popLast() {
                release(index)
                continue
            }
            guard oldest != 0 else { break }
            drop(oldest, now: now, flushDeadline: flushDeadline)
        }
    }

    /// `flush_all` now: every item goes; segments stay allocated for reuse, large items are freed.
    mutating func removeAll() {
        for index in segments.indices.dropFirst() where segments[index].base != nil {
            let segment = Int32(index)
            if segments[index].large {
                release(segment)
            } else if segments[index].queued {
                toPool(segment)
            }
        }
        openSegment = 0
        restoreSegment = 0
        buckets.update(repeating: 0, count: bucketMask + 1)
        count = 0
        usedBytes = 0
        crawlSegment = 1
        crawlOffset = 0
    }

    /// Walks up to `limit` items, segment by segment, dropping expired and flushed ones; resumes where it
    /// stopped (from the segment's start when its items moved since).
    mutating func reclaimExpired(now: UInt32, flushDeadline: UInt32, limit: Int) -> Int {
        var visited = 0
        var reclaimedNow = 0
        var segmentsSeen = 0
        while visited < limit, segmentsSeen < segments.count, segments.count > 1 {
            if crawlSegment >= segments.count {
                crawlSegment = 1
                crawlOffset = 0
            }
            let index = crawlSegment
            if crawlOffset != 0, segments[index].generation != crawlGeneration { crawlOffset = 0 }
            crawlGeneration = segments[index].generation
            while segments[index].base != nil, crawlOffset < segments[index].used, visited < limit {
                let item = ItemPointer(
                    segments[index].base.unsafelyUnwrapped + crawlOffset,
                    ref: ref(segment: Int32(index), offset: crawlOffset))
                crawlOffset += item.footprint
                visited += 1
                guard item.isLinked else { continue }
                let flushed = Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline)
                if item.isExpired(now: now) || flushed {
                    if !item.fetched, !flushed { counters.expiredUnfetched += 1 }
                    unlink(item, hash: Cache.hash(item.keyBytes))
                    counters.reclaimed += 1
                    counters.crawlerReclaimed += 1
                    reclaimedNow += 1
                    // Emptying a segment sends it to the pool; the walk goes on with the next.
                    if segments[index].generation != crawlGeneration { break }
                }
            }
            if segments[index].base == nil || crawlOffset >= segments[index].used
                || segments[index].generation != crawlGeneration
            {
                crawlSegment += 1
                crawlOffset = 0
                segmentsSeen += 1
            }
        }
        return reclaimedNow
    }

    func snapshotCounters(now: UInt32) -> ShardCounters {
        var copy = counters
        copy.currentItems = count
        copy.bytes = usedBytes
        copy.mallocedBytes = committed
        // The oldest live item sits in the oldest segment that still has one.
        var oldestStored: UInt32?
        var cursor = oldest
        while cursor != 0, oldestStored == nil {
            forEachLinkedItem(in: cursor) { oldestStored = min(oldestStored ?? $0.lastAccess, $0.lastAccess) }
            cursor = segments[Int(cursor)].newer
        }
        copy.oldestItemAge = oldestStored.map { Int64(now) - Int64($0) }.map { max(0, $0) } ?? 0
        return copy
    }

    mutating func resetCounters() {
        counters = ShardCounters()
    }

    func forEachLinkedItem(in segment: Int32, _ body: (ItemPointer) -> Void) {
        let index = Int(segment)
        guard let base = segments[index].base else { return }
        var offset = 0
        while offset < segments[index].used {
            let item = ItemPointer(base + offset, ref: ref(segment: segment, offset: offset))
            offset += item.footprint
            if item.isLinked { body(item) }
        }
    }

    // MARK: hash table

    /// Links `item` into the hash table, live.
    mutating func link(_ item: ItemPointer, hash: Int) {
        let bucket = hash & bucketMask
        item.next = buckets[bucket]
        buckets[bucket] = item.ref
        item.state = ItemPointer.linkedBit
        segments[segmentIndex(of: item.ref)].liveItems += 1
        count += 1
        usedBytes += item.totalSize
        if count > (bucketMask + 1) + (bucketMask + 1) / 2 { growTable() }
    }

    /// Takes `item` out of the hash table and marks it dead; its segment goes to the pool once it holds
    /// nothing live (a large item's allocation is freed at once).
    mutating func unlink(_ item: ItemPointer, hash: Int) {
        replaceInChain(item.ref, with: item.next, bucket: hash & bucketMask)
        count -= 1
        usedBytes -= item.totalSize
        item.state = 0
        let segment = Int32(segmentIndex(of: item.ref))
        segments[Int(segment)].liveItems -= 1
        segments[Int(segment)].deadBytes += item.footprint
        if segments[Int(segment)].liveItems == 0 {
            if segments[Int(segment)].large {
                release(segment)
            } else if segment != openSegment, segment != restoreSegment, segment != compacting {
                toPool(segment)
            }
        }
    }

    /// Points whatever links to `old` in its bucket's chain (the bucket or the previous item) at `new`.
    private mutating func replaceInChain(_ old: ItemRef, with new: ItemRef, bucket: Int) {
        if buckets[bucket] == old {
            buckets[bucket] = new
            return
        }
        var cursor = buckets[bucket]
        while cursor != 0 {
            let current = item(cursor)
            if current.next == old {
                current.next = new
                return
            }
            cursor = current.next
        }
    }

    /// Grows the hash table ahead of `items` insertions (a restore, whose count the snapshot tells), so
    /// that it is not rehashed on the way and its chains stay short.
    mutating func reserve(items: Int) {
        while (bucketMask + 1) < count + items { growTable() }
    }

    /// Doubles the table. Items keep no hash, so each key is hashed again (the table grows rarely, and 4
    /// bytes per item is worth more than the rehash).
    private mutating func growTable() {
        let newCount = (bucketMask + 1) * 2
        let newBuckets = UnsafeMutablePointer<ItemRef>.allocate(capacity: newCount)
        newBuckets.initialize(repeating: 0, count: newCount)
        let newMask = newCount - 1
        for index in 0...bucketMask {
            var cursor = buckets[index]
            while cursor != 0 {
                let current = item(cursor)
                cursor = current.next
                let target = Cache.hash(current.keyBytes) & newMask
                current.next = newBuckets[target]
                newBuckets[target] = current.ref
            }
        }
        buckets.deallocate()
        buckets = newBuckets
        bucketMask = newMask
    }

    // MARK: segments

    static func largeAllocationSize(_ size: Int) -> Int {
        (size + 63) & ~63
    }

    /// A new segment index with memory of `capacity` bytes, counted as committed; nil when the index
    /// space is spent (2^32 2-byte units per shard).
    private mutating func newSegment(capacity: Int, large: Bool) -> Int32? {
        let index: Int32
        if let reused = freeIndices.popLast() {
            index = reused
        } else {
            guard segments.count <= maxSegments else { return nil }
            index = Int32(segments.count)
            segments.append(Segment())
            if segments.count > basesCapacity {
                let grown = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: basesCapacity * 2)
                grown.initialize(repeating: nil, count: basesCapacity * 2)
                grown.update(from: bases, count: basesCapacity)
                bases.deallocate()
                bases = grown
                basesCapacity *= 2
            }
        }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        var segment = Segment()
        segment.base = memory
        segment.capacity = capacity
        segment.large = large
        segment.generation = segments[Int(index)].generation &+ 1
        segments[Int(index)] = segment
        bases[Int(index)] = memory
        committed += capacity
        return index
    }

    /// Frees a segment's memory and index: it holds nothing live, and is in the FIFO or nowhere (a pooled
    /// segment is popped from the pool first).
    private mutating func release(_ segment: Int32) {
        let index = Int(segment)
        if segments[index].queued { detach(segment) }
        if openSegment == segment { openSegment = 0 }
        if restoreSegment == segment { restoreSegment = 0 }
        committed -= segments[index].capacity
        segments[index].base?.deallocate()
        let generation = segments[index].generation &+ 1
        segments[index] = Segment()
        segments[index].generation = generation
        bases[index] = nil
        freeIndices.append(segment)
    }

    private mutating func toPool(_ segment: Int32) {
        let index = Int(segment)
        if segments[index].queued { detach(segment) }
        if openSegment == segment { openSegment = 0 }
        if restoreSegment == segment { restoreSegment = 0 }
        segments[index].used = 0
        segments[index].liveItems = 0
        segments[index].deadBytes = 0
        segments[index].generation &+= 1
        pool.append(segment)
    }

    private mutating func pushNewest(_ segment: Int32) {
        let index = Int(segment)
        segments[index].older = newest
        segments[index].newer = 0
        if newest != 0 { segments[Int(newest)].newer = segment }
        newest = segment
        if oldest == 0 { oldest = segment }
        segments[index].queued = true
    }

    private mutating func pushOldest(_ segment: Int32) {
        let index = Int(segment)
        segments[index].newer = oldest
        segments[index].older = 0
        if oldest != 0 { segments[Int(oldest)].older = segment }
        oldest = segment
        if newest == 0 { newest = segment }
        segments[index].queued = true
    }

    private mutating func detach(_ segment: Int32) {
        let index = Int(segment)
        let newer = segments[index].newer
        let older = segments[index].older
        if newer != 0 { segments[Int(newer)].older = older } else { newest = older }
        if older != 0 { segments[Int(older)].newer = newer } else { oldest = newer }
        segments[index].newer = 0
        segments[index].older = 0
        segments[index].queued = false
    }

    /// A segment from the pool, or a new one if the budget allows, at the new end of the FIFO (or the
    /// old end, for a restore).
    private mutating func openFresh(atOldEnd: Bool) -> Int32? {
        let segment: Int32
        if let pooled = pool.popLast() {
            segment = pooled
        } else if committed + segmentSize <= budget, let created = newSegment(capacity: segmentSize, large: false) {
            segment = created
        } else {
            return nil
        }
        if atOldEnd { pushOldest(segment) } else { pushNewest(segment) }
        return segment
    }

    /// Room for an item of this size, evicting as the policy allows; nil when nothing can go. The item
    /// comes back with its sizes written and not linked. `pinned` (an item the caller still reads from)
    /// is never evicted, but it may move: look it up again afterwards.
    mutating func allocate(
        keyCount: Int, valueCount: Int, pinned: ItemRef, now: UInt32, flushDeadline: UInt32
    ) -> ItemPointer? {
        let size = ItemPointer.footprint(keyCount: keyCount, valueCount: valueCount)
        if size > segmentSize {
            return allocateLarge(
                keyCount: keyCount, valueCount: valueCount, pinned: pinned, now: now, flushDeadline: flushDeadline)
        }
        // Each pass moves one segment from the old end to the new, and takes one use off every item it
        // keeps; when evictions are on, room is found well within this bound.
        var passes = 2 * segments.count + 2
        while true {
            let open = openSegment
            if open != 0, segments[Int(open)].used + size <= segments[Int(open)].capacity {
                return carve(in: open, keyCount: keyCount, valueCount: valueCount)
            }
            if let segment = openFresh(atOldEnd: false) {
                openSegment = segment
                continue
            }
            guard passes > 0, oldest != 0 else { return nil }
            passes -= 1
            var segment = oldest
            if !evictionsEnabled {
                // Nothing live may go: compact where deletes and replacements left the most bytes, and
                // look at the old end (for expired items) only twice before refusing.
                if let richest = mostDeadBytes(), segments[Int(richest)].deadBytes >= size {
                    segment = richest
                } else if passes < 2 * segments.count {
                    return nil
                }
            }
            let keepsRoom = min(segmentSize / 2, segmentSize - size)
            recycle(
                segment, needed: size, retainLimit: keepsRoom, pinned: pinned, now: now, flushDeadline: flushDeadline)
            if segments[Int(segment)].queued, !segments[Int(segment)].large,
                segments[Int(segment)].used + size <= segmentSize
            {
                openSegment = segment
            }
        }
    }

    /// The queued segment (not a large item) holding the most dead bytes.
    private func mostDeadBytes() -> Int32? {
        var best: Int32?
        var bestBytes = 0
        var cursor = oldest
        while cursor != 0 {
            let segment = segments[Int(cursor)]
            if !segment.large, segment.deadBytes > bestBytes {
                best = cursor
                bestBytes = segment.deadBytes
            }
            cursor = segment.newer
        }
        return best
    }

    private mutating func carve(in segment: Int32, keyCount: Int, valueCount: Int) -> ItemPointer {
        let index = Int(segment)
        let offset = segments[index].used
        let item = ItemPointer(
            segments[index].base.unsafelyUnwrapped + offset, ref: ref(segment: segment, offset: offset))
        item.keyCount = keyCount
        item.valueCount = valueCount
        item.state = 0
        segments[index].used += item.footprint
        return item
    }

    private mutating func allocateLarge(
        keyCount: Int, valueCount: Int, pinned: ItemRef, now: UInt32, flushDeadline: UInt32
    ) -> ItemPointer? {
        let bytes = Self.largeAllocationSize(ItemPointer.footprint(keyCount: keyCount, valueCount: valueCount))
        // Under -M a pass frees only dead and expired bytes: a few, not a walk of the whole shard per
        // refused store.
        var passes = evictionsEnabled ? 2 * segments.count + 2 : 4
        while committed + bytes > budget {
            if let pooled = pool.popLast() {
                release(pooled)
                continue
            }
            guard passes > 0, oldest != 0 else { return nil }
            passes -= 1
            // Memory, not room in a segment, is what is short: keep nothing that may go.
            recycle(
                oldest, needed: segmentSize, retainLimit: 0, pinned: pinned, now: now, flushDeadline: flushDeadline)
        }
        guard let segment = newSegment(capacity: bytes, large: true) else { return nil }
        pushNewest(segment)
        let item = carve(in: segment, keyCount: keyCount, valueCount: valueCount)
        return item
    }

    /// The eviction pass over one segment at the old end of the FIFO. A large item goes unless it was
    /// read since the last pass (or is pinned, or evictions are off), in which case it moves to the new
    /// end with one use less. A segment is compacted in place: dead, expired and flushed items go;
    /// when they free `needed` bytes and a quarter of the segment, every live item stays; otherwise live
    /// ones stay if pinned, if evictions are off, or if read since the last pass while they fit in
    /// `retainLimit` bytes, and the rest are evicted (and the kept ones' use counts lowered). What remains
    /// moves to the new end, or to the pool when nothing does.
    private mutating func recycle(
        _ segment: Int32, needed: Int, retainLimit: Int, pinned: ItemRef, now: UInt32, flushDeadline: UInt32
    ) {
        let index = Int(segment)
        guard let base = segments[index].base else { return }
        if segments[index].large {
            let item = ItemPointer(base, ref: ref(segment: segment, offset: 0))
            if keep(item, retaining: true, pinned: pinned, now: now, flushDeadline: flushDeadline) {
                item.passOver()
                detach(segment)
                pushNewest(segment)
            } else {
                unlink(item, hash: Cache.hash(item.keyBytes))
            }
            return
        }
        let end = segments[index].used
        // Dead, expired and flushed items go first, as memcached reclaims an expired tail before it
        // evicts: when they free a quarter of the segment, nothing live is evicted this pass.
        var reclaimable = 0
        var read = 0
        while read < end {
            let item = ItemPointer(base + read, ref: ref(segment: segment, offset: read))
            let size = item.footprint
            if !item.isLinked || item.isExpired(now: now)
                || Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline)
            {
                reclaimable += size
            }
            read += size
        }
        let evicting = evictionsEnabled && reclaimable < max(segmentSize / 4, needed)
        let limit = evicting ? retainLimit : segmentSize
        compacting = segment
        read = 0
        var write = 0
        while read < end {
            let item = ItemPointer(base + read, ref: ref(segment: segment, offset: read))
            let size = item.footprint
            if item.isLinked {
                let keeps = keep(
                    item, retaining: write + size <= limit, keepingLive: !evicting, pinned: pinned, now: now,
                    flushDeadline: flushDeadline)
                if keeps {
                    // A pass that evicts nothing gives no second chance, so it takes none away.
                    if evicting { item.passOver() }
                    if write != read {
                        let moved = ItemPointer(base + write, ref: ref(segment: segment, offset: write))
                        replaceInChain(item.ref, with: moved.ref, bucket: Cache.hash(item.keyBytes) & bucketMask)
                        (base + write).copyMemory(from: base + read, byteCount: size)
                    }
                    write += size
                } else {
                    unlink(item, hash: Cache.hash(item.keyBytes))
                }
            }
            read += size
        }
        compacting = 0
        segments[index].used = write
        segments[index].deadBytes = 0
        segments[index].generation &+= 1
        if segments[index].liveItems == 0 {
            toPool(segment)
        } else {
            detach(segment)
            pushNewest(segment)
        }
    }

    /// Whether an eviction pass keeps a live item, counting what goes. `retaining`: there is room for
    /// one more item read since the last pass.
    private mutating func keep(
        _ item: ItemPointer, retaining: Bool, keepingLive: Bool = false, pinned: ItemRef, now: UInt32,
        flushDeadline: UInt32
    ) -> Bool {
        if item.ref == pinned { return true }
        if Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline) {
            counters.reclaimed += 1
            return false
        }
        if item.isExpired(now: now) {
            if !item.fetched { counters.expiredUnfetched += 1 }
            counters.reclaimed += 1
            return false
        }
        if !evictionsEnabled || keepingLive || (retaining && item.uses > 0) { return true }
        counters.evictions += 1
        if !item.fetched { counters.evictedUnfetched += 1 }
        return false
    }

    /// Drops a whole segment (a smaller quota): every item in it goes, evicted or reclaimed.
    private mutating func drop(_ segment: Int32, now: UInt32, flushDeadline: UInt32) {
        compacting = segment
        var victims: [ItemPointer] = []
        forEachLinkedItem(in: segment) { victims.append($0) }
        for item in victims {
            if Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline) || item.isExpired(now: now) {
                counters.reclaimed += 1
            } else {
                counters.evictions += 1
                if !item.fetched { counters.evictedUnfetched += 1 }
            }
            unlink(item, hash: Cache.hash(item.keyBytes))
            if segments[Int(segment)].base == nil { break }
        }
        compacting = 0
        if segments[Int(segment)].base != nil { release(segment) }
    }

    // MARK: restores

    /// Room for a restored item at the old end of the FIFO, without evicting anything; nil when the
    /// budget is spent.
    mutating func allocateForRestore(keyCount: Int, valueCount: Int) -> ItemPointer? {
        let size = ItemPointer.footprint(keyCount: keyCount, valueCount: valueCount)
        if size > segmentSize {
            let bytes = Self.largeAllocationSize(size)
            while committed + bytes > budget, let pooled = pool.popLast() { release(pooled) }
            guard committed + bytes <= budget, let segment = newSegment(capacity: bytes, large: true) else {
                return nil
            }
            pushOldest(segment)
            return carve(in: segment, keyCount: keyCount, valueCount: valueCount)
        }
        let current = restoreSegment
        if current != 0, segments[Int(current)].used + size <= segments[Int(current)].capacity {
            return carve(in: current, keyCount: keyCount, valueCount: valueCount)
        }
        if current != 0, segments[Int(current)].liveItems == 0 { toPool(current) }
        restoreSegment = 0
        guard let segment = openFresh(atOldEnd: true) else { return nil }
        restoreSegment = segment
        return carve(in: segment, keyCount: keyCount, valueCount: valueCount)
    }

    /// Segment indices from the newest to the oldest, for a snapshot.
    var segmentsNewestFirst: [Int32] {
        var order: [Int32] = []
        var cursor = newest
        while cursor != 0 {
            order.append(cursor)
            cursor = segments[Int(cursor)].older
        }
        return order
    }
}

// Items never leave their shard and a shard is only reached through its lock (see `Cache`), so handing
// the state to the lock is safe even though it holds raw pointers.
extension SegmentShard: @unchecked Sendable {}
