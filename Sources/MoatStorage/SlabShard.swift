#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One shard of the cache: a chained hash table over items stored in slab pages, one LRU list per
/// size class, and a byte budget. Not thread-safe on its own; `Cache` keeps each shard behind a lock.
///
/// Memory: pages of `pageSize` bytes are cut into chunks of one size class (growth 1.25, as memcached's
/// slabs); items larger than a page get an allocation of their own. `committed` (pages plus large
/// allocations) never exceeds `budget`. When a class needs a chunk and the budget is spent, the class's
/// least recently used item goes; if the class has none, the coldest page of the class holding the most
/// pages is emptied and handed over (memcached's slab rebalancing, done on demand).
struct SlabShard {
    struct ClassState {
        /// Free chunks, linked through their first word.
        var freeList: UnsafeMutableRawPointer?
        var bumpPage: UnsafeMutableRawPointer?
        var bumpOffset = 0
        var newest: ItemPointer?
        var oldest: ItemPointer?
        var items = 0
        var pages = 0
    }

    struct Page {
        let base: UnsafeMutableRawPointer
        var classID: UInt8
    }

    let classes: SizeClasses
    private(set) var budget: Int
    var evictionsEnabled: Bool
    let maxItemSize: Int
    let shardIndex: UInt64
    let shardBits: UInt64
    private(set) var classStates: [ClassState]
    private(set) var large = ClassState()
    private var pages: [Page] = []
    private var freePages: [UnsafeMutableRawPointer] = []
    private(set) var committed = 0
    private(set) var usedBytes = 0
    private var buckets: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private var bucketMask: Int
    private(set) var count = 0
    var casCounter: UInt64 = 0
    private(set) var counters = ShardCounters()
    private var crawlPage = 0
    private var crawlChunk = 0

    init(budget: Int, pageSize: Int, maxItemSize: Int, evictionsEnabled: Bool, shardIndex: Int, shardCount: Int) {
        self.classes = SizeClasses(pageSize: pageSize)
        self.budget = budget
        self.maxItemSize = maxItemSize
        self.evictionsEnabled = evictionsEnabled
        self.shardIndex = UInt64(shardIndex)
        var bits: UInt64 = 0
        while (1 << bits) < shardCount { bits += 1 }
        self.shardBits = bits
        self.classStates = Array(repeating: ClassState(), count: classes.chunkSizes.count)
        let initialBuckets = 1024
        self.buckets = .allocate(capacity: initialBuckets)
        self.buckets.initialize(repeating: nil, count: initialBuckets)
        self.bucketMask = initialBuckets - 1
    }

    /// Frees every page, large item and the table; the shard is unusable afterwards.
    mutating func releaseAll() {
        releaseItemsAndPages()
        for page in freePages { page.deallocate() }
        freePages.removeAll()
        buckets.deallocate()
    }

    // MARK: lookups

    @inline(__always)
    func find(_ key: UnsafeRawBufferPointer, hash: Int) -> ItemPointer? {
        let tag = UInt32(truncatingIfNeeded: hash)
        var cursor = buckets[hash & bucketMask].map(ItemPointer.init)
        while let item = cursor {
            if item.hash == tag, item.keyEquals(key) { return item }
            cursor = item.hashNext
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
            unlinkAndFree(item)
            return nil
        }
        if Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline) {
            if counting { counters.getFlushed += 1 }
            unlinkAndFree(item)
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
        moveToNewest(item)
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
                moveToNewest(existing)
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
        let size = ItemPointer.size(keyCount: key.count, valueCount: combined)
        // An item allocated on its own is charged its size rounded up to 64 bytes.
        let charge = classes.classFor(size: size) == SizeClasses.large ? Self.largeAllocationSize(size) : size
        if charge > budget { return .tooLarge }

        let keepsOld = mode == .append || mode == .prepend
        var spare: ItemPointer?
        if let existing {
            if keepsOld {
                moveToNewest(existing)
                spare = existing
            } else {
                // The old value is replaced either way (memcached also drops it when a set fails).
                unlinkAndFree(existing)
            }
        }
        guard let item = allocate(size: size, sparing: spare, now: now, flushDeadline: flushDeadline) else {
            counters.outOfMemory += 1
            return .noMemory
        }
        item.keyCount = key.count
        item.valueCount = combined
        item.flags = newFlags
        item.expiresAt = newExpiry
        item.lastAccess = now
        item.hash = UInt32(truncatingIfNeeded: hash)
        // memcached's E flag: the client picks the new CAS (0 keeps the server's counter).
        item.cas = newCAS != 0 ? newCAS : nextCAS()
        if let base = key.baseAddress {
            (item.raw + ItemPointer.headerSize).copyMemory(from: base, byteCount: key.count)
        }
        let valueStart = item.raw + ItemPointer.headerSize + key.count
        if let spare {
            let old = spare.valueBytes
            if mode == .append {
                if let b = old.baseAddress { valueStart.copyMemory(from: b, byteCount: old.count) }
                if let b = value.baseAddress { (valueStart + old.count).copyMemory(from: b, byteCount: value.count) }
            } else {
                if let b = value.baseAddress { valueStart.copyMemory(from: b, byteCount: value.count) }
                if let b = old.baseAddress { (valueStart + value.count).copyMemory(from: b, byteCount: old.count) }
            }
            unlinkAndFree(spare)
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

    /// incr/decr on a live item; `item` is the one that holds the result (a longer number may need a new chunk).
    mutating func arithmetic(
        on item: ItemPointer, hash: Int, delta: UInt64, increment: Bool, now: UInt32, flushDeadline: UInt32
    ) -> (outcome: ArithmeticOutcome, item: ItemPointer) {
        guard let current = Self.parseCounter(item.valueBytes) else { return (.nonNumeric, item) }
        let result = increment ? current &+ delta : (delta > current ? 0 : current - delta)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { scratch -> (ArithmeticOutcome, ItemPointer) in
            let count = Self.formatDecimal(result, into: scratch)
            let text = UnsafeRawBufferPointer(rebasing: scratch[(scratch.count - count)...])
            if text.count == item.valueCount {
                // Same length: rewrite in place (the common case for counters).
                if let b = text.baseAddress {
                    item.mutableValue.baseAddress?.copyMemory(from: b, byteCount: text.count)
                }
                item.cas = nextCAS()
                moveToNewest(item)
                return (.value(result), item)
            }
            // A new length needs a new chunk; the old item stays until the new one exists (and stays
            // for good when no room can be made).
            moveToNewest(item)
            let size = ItemPointer.size(keyCount: item.keyCount, valueCount: text.count)
            guard let fresh = allocate(size: size, sparing: item, now: now, flushDeadline: flushDeadline) else {
                counters.outOfMemory += 1
                return (.noMemory, item)
            }
            fresh.keyCount = item.keyCount
            fresh.valueCount = text.count
            fresh.flags = item.flags
            fresh.expiresAt = item.expiresAt
            fresh.lastAccess = item.lastAccess
            fresh.hash = item.hash
            fresh.cas = nextCAS()
            (fresh.raw + ItemPointer.headerSize).copyMemory(
                from: item.raw + ItemPointer.headerSize, byteCount: item.keyCount)
            if let b = text.baseAddress { fresh.mutableValue.baseAddress?.copyMemory(from: b, byteCount: text.count) }
            let wasFetched = item.fetched
            unlinkAndFree(item)
            link(fresh, hash: hash)
            fresh.fetched = wasFetched
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

    /// A new budget (a bucket's quota changed on reload). Shrinking frees pages, evicting what they
    /// hold, until the shard is within it; growing only raises the ceiling.
    mutating func resize(budget newBudget: Int, evictionsEnabled evict: Bool, now: UInt32, flushDeadline: UInt32) {
        budget = newBudget
        evictionsEnabled = evict
        while committed > budget {
            if let page = freePages.popLast() {
                page.deallocate()
                committed -= classes.pageSize
                continue
            }
            if let oldest = large.oldest {
                if !oldest.isExpired(now: now) && !Self.hiddenByFlush(oldest, now: now, flushDeadline: flushDeadline) {
                    counters.evictions += 1
                }
                unlinkAndFree(oldest)
                continue
            }
            if reclaimPage(for: nil, sparing: nil, now: now, flushDeadline: flushDeadline) { continue }
            break
        }
    }

    /// `flush_all` now: every item goes, pages stay allocated for reuse.
    mutating func removeAll() {
        releaseItemsAndPages(keepPages: true)
    }

    private mutating func releaseItemsAndPages(keepPages: Bool = false) {
        var cursor = large.oldest
        while let item = cursor {
            cursor = item.lruNewer
            committed -= Self.largeAllocationSize(item)
            item.raw.deallocate()
        }
        large = ClassState()
        for page in pages {
            if keepPages { freePages.append(page.base) } else { page.base.deallocate() }
        }
        if !keepPages { committed -= pages.count * classes.pageSize }
        pages.removeAll()
        classStates = Array(repeating: ClassState(), count: classes.chunkSizes.count)
        buckets.update(repeating: nil, count: bucketMask + 1)
        count = 0
        usedBytes = 0
        crawlPage = 0
        crawlChunk = 0
    }

    /// Walks up to `limit` chunks, page by page, dropping expired items; resumes where it stopped.
    mutating func reclaimExpired(now: UInt32, flushDeadline: UInt32, limit: Int) -> Int {
        var visited = 0
        var reclaimedNow = 0
        while visited < limit, !pages.isEmpty {
            if crawlPage >= pages.count {
                crawlPage = 0
                crawlChunk = 0
            }
            let page = pages[crawlPage]
            let chunkSize = classes.chunkSizes[Int(page.classID)]
            // Chunks past the bump offset of the page being filled have never held an item.
            let state = classStates[Int(page.classID)]
            let perPage = state.bumpPage == page.base ? state.bumpOffset / chunkSize : classes.pageSize / chunkSize
            while crawlChunk < perPage, visited < limit {
                let item = ItemPointer(page.base + crawlChunk * chunkSize)
                crawlChunk += 1
                visited += 1
                guard item.isLinked else { continue }
                let flushed = Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline)
                if item.isExpired(now: now) || flushed {
                    if !item.fetched, !flushed { counters.expiredUnfetched += 1 }
                    unlinkAndFree(item)
                    counters.reclaimed += 1
                    counters.crawlerReclaimed += 1
                    reclaimedNow += 1
                }
            }
            if crawlChunk >= perPage {
                crawlPage += 1
                crawlChunk = 0
                if crawlPage >= pages.count { break }
            }
        }
        return reclaimedNow
    }

    func snapshotCounters(now: UInt32) -> ShardCounters {
        var copy = counters
        copy.currentItems = count
        copy.bytes = usedBytes
        copy.mallocedBytes = committed
        var oldestStored: UInt32?
        for state in classStates + [large] {
            if let oldest = state.oldest {
                oldestStored = min(oldestStored ?? oldest.lastAccess, oldest.lastAccess)
            }
        }
        copy.oldestItemAge = oldestStored.map { Int64(now) - Int64($0) }.map { max(0, $0) } ?? 0
        return copy
    }

    mutating func resetCounters() {
        counters = ShardCounters()
    }

    // MARK: hash table and LRU

    /// Links `item` into the hash table and its class's LRU list, as the most recently used (or, for an
    /// item restored from a snapshot that lists newer items first, as the least).
    mutating func link(_ item: ItemPointer, hash: Int, asOldest: Bool = false) {
        let bucket = hash & bucketMask
        item.hashNext = buckets[bucket].map(ItemPointer.init)
        buckets[bucket] = item.raw
        item.state = ItemPointer.linkedBit
        let id = item.classID
        withClass(id) { state in
            if asOldest {
                item.lruNewer = state.oldest
                item.lruOlder = nil
                state.oldest?.lruOlder = item
                state.oldest = item
                if state.newest == nil { state.newest = item }
            } else {
                item.lruOlder = state.newest
                item.lruNewer = nil
                state.newest?.lruNewer = item
                state.newest = item
                if state.oldest == nil { state.oldest = item }
            }
            state.items += 1
        }
        count += 1
        usedBytes += item.totalSize
        if count > (bucketMask + 1) + (bucketMask + 1) / 2 { growTable() }
    }

    mutating func unlinkAndFree(_ item: ItemPointer) {
        // Hash chain: find the predecessor in the bucket.
        let bucket = Int(item.hash) & bucketMask
        // The stored hash is the low 32 bits, enough for any table below 2^32 buckets.
        if buckets[bucket] == item.raw {
            buckets[bucket] = item.hashNext?.raw
        } else {
            var cursor = buckets[bucket].map(ItemPointer.init)
            while let current = cursor, let next = current.hashNext {
                if next == item {
                    current.hashNext = item.hashNext
                    break
                }
                cursor = next
            }
        }
        withClass(item.classID) { state in
            if let newer = item.lruNewer { newer.lruOlder = item.lruOlder } else { state.newest = item.lruOlder }
            if let older = item.lruOlder { older.lruNewer = item.lruNewer } else { state.oldest = item.lruNewer }
            state.items -= 1
        }
        count -= 1
        usedBytes -= item.totalSize
        item.state = 0
        free(item)
    }

    mutating func moveToNewest(_ item: ItemPointer) {
        withClass(item.classID) { state in
            guard state.newest != item else { return }
            if let newer = item.lruNewer { newer.lruOlder = item.lruOlder }
            if let older = item.lruOlder { older.lruNewer = item.lruNewer } else { state.oldest = item.lruNewer }
            item.lruOlder = state.newest
            item.lruNewer = nil
            state.newest?.lruNewer = item
            state.newest = item
        }
    }

    @inline(__always)
    private mutating func withClass<R>(_ id: UInt8, _ body: (inout ClassState) -> R) -> R {
        if id == SizeClasses.large { return body(&large) }
        return body(&classStates[Int(id)])
    }

    /// Grows the hash table ahead of `items` insertions (a restore, whose count the snapshot tells), so
    /// that it is not rehashed on the way and its chains stay short.
    mutating func reserve(items: Int) {
        while (bucketMask + 1) < count + items { growTable() }
    }

    private mutating func growTable() {
        let newCount = (bucketMask + 1) * 2
        let newBuckets = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: newCount)
        newBuckets.initialize(repeating: nil, count: newCount)
        let newMask = newCount - 1
        for index in 0...bucketMask {
            var cursor = buckets[index].map(ItemPointer.init)
            while let item = cursor {
                cursor = item.hashNext
                let target = Int(item.hash) & newMask
                item.hashNext = newBuckets[target].map(ItemPointer.init)
                newBuckets[target] = item.raw
            }
        }
        buckets.deallocate()
        buckets = newBuckets
        bucketMask = newMask
    }

    // MARK: memory

    private static func largeAllocationSize(_ item: ItemPointer) -> Int {
        largeAllocationSize(item.totalSize)
    }

    static func largeAllocationSize(_ size: Int) -> Int {
        (size + 63) & ~63
    }

    private mutating func free(_ item: ItemPointer) {
        let id = item.classID
        if id == SizeClasses.large {
            committed -= Self.largeAllocationSize(item)
            item.raw.deallocate()
            return
        }
        item.raw.storeBytes(of: classStates[Int(id)].freeList, as: UnsafeMutableRawPointer?.self)
        classStates[Int(id)].freeList = item.raw
    }

    /// A chunk for an item of `size` bytes, evicting as the policy allows; nil when nothing can go.
    mutating func allocate(size: Int, sparing: ItemPointer?, now: UInt32, flushDeadline: UInt32) -> ItemPointer? {
        let id = classes.classFor(size: size)
        if id == SizeClasses.large {
            return allocateLarge(size: size, sparing: sparing, now: now, flushDeadline: flushDeadline)
        }
        let index = Int(id)
        let chunkSize = classes.chunkSizes[index]
        while true {
            if let chunk = classStates[index].freeList {
                classStates[index].freeList = chunk.load(as: UnsafeMutableRawPointer?.self)
                return prepared(chunk, id)
            }
            if let page = classStates[index].bumpPage, classStates[index].bumpOffset + chunkSize <= classes.pageSize {
                let chunk = page + classStates[index].bumpOffset
                classStates[index].bumpOffset += chunkSize
                return prepared(chunk, id)
            }
            if let page = freePages.popLast() {
                page.initializeMemory(as: UInt8.self, repeating: 0, count: classes.pageSize)
                assignPage(page, to: id)
                continue
            }
            if committed + classes.pageSize <= budget {
                let page = UnsafeMutableRawPointer.allocate(byteCount: classes.pageSize, alignment: 64)
                page.initializeMemory(as: UInt8.self, repeating: 0, count: classes.pageSize)
                committed += classes.pageSize
                assignPage(page, to: id)
                continue
            }
            if evictOldest(of: id, sparing: sparing, now: now, flushDeadline: flushDeadline) { continue }
            if evictOldest(of: SizeClasses.large, sparing: sparing, now: now, flushDeadline: flushDeadline) { continue }
            if evictionsEnabled, reclaimPage(for: id, sparing: sparing, now: now, flushDeadline: flushDeadline) {
                continue
            }
            return nil
        }
    }

    private func prepared(_ chunk: UnsafeMutableRawPointer, _ id: UInt8) -> ItemPointer {
        let item = ItemPointer(chunk)
        item.classID = id
        item.state = 0
        return item
    }

    private mutating func assignPage(_ page: UnsafeMutableRawPointer, to id: UInt8) {
        pages.append(Page(base: page, classID: id))
        classStates[Int(id)].bumpPage = page
        classStates[Int(id)].bumpOffset = 0
        classStates[Int(id)].pages += 1
    }

    private mutating func allocateLarge(size: Int, sparing: ItemPointer?, now: UInt32, flushDeadline: UInt32)
        -> ItemPointer?
    {
        let bytes = Self.largeAllocationSize(size)
        while committed + bytes > budget {
            if let page = freePages.popLast() {
                page.deallocate()
                committed -= classes.pageSize
                continue
            }
            if evictOldest(of: SizeClasses.large, sparing: sparing, now: now, flushDeadline: flushDeadline) { continue }
            if evictionsEnabled, reclaimPage(for: nil, sparing: sparing, now: now, flushDeadline: flushDeadline) {
                continue
            }
            return nil
        }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        committed += bytes
        return prepared(raw, SizeClasses.large)
    }

    /// Drops the least recently used item of class `id` (expired ones always; live ones only when
    /// evictions are on). False when there is nothing it may drop.
    private mutating func evictOldest(of id: UInt8, sparing: ItemPointer?, now: UInt32, flushDeadline: UInt32) -> Bool {
        var victim = withClass(id) { $0.oldest }
        if let candidate = victim, candidate == sparing { victim = candidate.lruNewer }
        guard let victim else { return false }
        if Self.hiddenByFlush(victim, now: now, flushDeadline: flushDeadline) {
            counters.reclaimed += 1
        } else if victim.isExpired(now: now) {
            if !victim.fetched { counters.expiredUnfetched += 1 }
            counters.reclaimed += 1
        } else if evictionsEnabled {
            counters.evictions += 1
            if !victim.fetched { counters.evictedUnfetched += 1 }
        } else {
            return false
        }
        unlinkAndFree(victim)
        return true
    }

    /// Empties one page of the class holding the most pages (other than `id`, and not counting the
    /// page of the item being spared), choosing the page that holds that class's coldest item, and
    /// puts it on the free-page list.
    private mutating func reclaimPage(for id: UInt8?, sparing: ItemPointer?, now: UInt32, flushDeadline: UInt32) -> Bool
    {
        var donor: Int?
        var donorPages = 0
        let sparedClass = sparing.map { Int($0.classID) }
        for (index, state) in classStates.enumerated() where UInt8(index) != id {
            let pages = state.pages - (index == sparedClass ? 1 : 0)
            if pages > donorPages {
                donor = index
                donorPages = pages
            }
        }
        guard let donor else { return false }
        let pageSize = classes.pageSize
        func contains(_ page: Page, _ item: ItemPointer?) -> Bool {
            guard let item else { return false }
            return item.raw >= page.base && item.raw < page.base + pageSize
        }
        let coldest = classStates[donor].oldest
        let candidates = pages.indices.filter { pages[$0].classID == UInt8(donor) && !contains(pages[$0], sparing) }
        guard let chosen = candidates.first(where: { contains(pages[$0], coldest) }) ?? candidates.first else {
            return false
        }
        let page = pages[chosen]
        let chunkSize = classes.chunkSizes[donor]
        for chunk in 0..<(pageSize / chunkSize) {
            let item = ItemPointer(page.base + chunk * chunkSize)
            if item.isLinked {
                if item.isExpired(now: now) || Self.hiddenByFlush(item, now: now, flushDeadline: flushDeadline) {
                    counters.reclaimed += 1
                } else {
                    counters.evictions += 1
                    if !item.fetched { counters.evictedUnfetched += 1 }
                }
                unlinkAndFree(item)
            }
        }
        // Forget the page's chunks in the class's free list and bump region.
        var kept: UnsafeMutableRawPointer?
        var cursor = classStates[donor].freeList
        while let chunk = cursor {
            cursor = chunk.load(as: UnsafeMutableRawPointer?.self)
            if !(chunk >= page.base && chunk < page.base + pageSize) {
                chunk.storeBytes(of: kept, as: UnsafeMutableRawPointer?.self)
                kept = chunk
            }
        }
        classStates[donor].freeList = kept
        if classStates[donor].bumpPage == page.base {
            classStates[donor].bumpPage = nil
            classStates[donor].bumpOffset = 0
        }
        classStates[donor].pages -= 1
        pages.remove(at: chosen)
        crawlPage = 0
        crawlChunk = 0
        freePages.append(page.base)
        return true
    }
}

// Items never leave their shard and a shard is only reached through its lock (see `Cache`), so handing
// the state to the lock is safe even though it holds raw pointers.
extension SlabShard: @unchecked Sendable {}
