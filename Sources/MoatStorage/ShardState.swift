/// One shard of the cache: a hash table, an LRU list and a byte budget.
/// Not thread-safe on its own; `Cache` keeps each one behind a lock.
struct ShardState {
    private var table: [[UInt8]: Item] = [:]
    /// Most recently used.
    private unowned(unsafe) var head: Item?
    /// Least recently used: the next eviction candidate.
    private unowned(unsafe) var tail: Item?
    private(set) var usedBytes = 0
    let budget: Int
    let evictionsEnabled: Bool
    private(set) var counters = ShardCounters()
    /// Where the expired-item walker stopped last time (it walks from old to new).
    private var crawlCursor: Item?

    init(budget: Int, evictionsEnabled: Bool) {
        self.budget = budget
        self.evictionsEnabled = evictionsEnabled
    }

    var count: Int { table.count }

    // MARK: lookups

    /// The live item for `key`, or nil. Expired or flushed items found here are removed (lazy expiry).
    private mutating func liveItem(_ key: [UInt8], now: Int64, flushDeadline: Int64, counting: Bool) -> Item? {
        guard let item = table[key] else { return nil }
        if item.isExpired(now: now) {
            if counting { counters.getExpired += 1 }
            if !item.fetched { counters.expiredUnfetched += 1 }
            remove(item)
            return nil
        }
        if flushDeadline != 0, now >= flushDeadline, item.storedAt < flushDeadline {
            if counting { counters.getFlushed += 1 }
            remove(item)
            return nil
        }
        return item
    }

    mutating func get(_ key: [UInt8], now: Int64, flushDeadline: Int64) -> ItemSnapshot? {
        guard let item = liveItem(key, now: now, flushDeadline: flushDeadline, counting: true) else { return nil }
        item.fetched = true
        moveToHead(item)
        return ItemSnapshot(value: item.value, flags: item.flags, cas: item.cas)
    }

    mutating func getAndTouch(_ key: [UInt8], expiresAt: Int64, now: Int64, flushDeadline: Int64) -> ItemSnapshot? {
        guard let item = liveItem(key, now: now, flushDeadline: flushDeadline, counting: true) else { return nil }
        item.fetched = true
        item.expiresAt = expiresAt
        moveToHead(item)
        return ItemSnapshot(value: item.value, flags: item.flags, cas: item.cas)
    }

    mutating func touch(_ key: [UInt8], expiresAt: Int64, now: Int64, flushDeadline: Int64) -> TouchOutcome {
        guard let item = liveItem(key, now: now, flushDeadline: flushDeadline, counting: false) else { return .notFound }
        item.expiresAt = expiresAt
        moveToHead(item)
        return .touched
    }

    // MARK: updates

    mutating func store(
        mode: StoreMode, key: [UInt8], value: [UInt8], flags: UInt32, expiresAt: Int64, maxItemSize: Int,
        now: Int64, flushDeadline: Int64, nextCAS: () -> UInt64
    ) -> StoreOutcome {
        let existing = liveItem(key, now: now, flushDeadline: flushDeadline, counting: false)
        var newValue = value
        var newFlags = flags
        var newExpiry = expiresAt
        switch mode {
        case .set:
            break
        case .add:
            if let existing {
                // memcached bumps the item on a failed add, so a hot key that clients keep adding survives.
                moveToHead(existing)
                return .notStored
            }
        case .replace:
            if existing == nil { return .notStored }
        case .append, .prepend:
            guard let existing else { return .notStored }
            // The combined value obeys -I like any other.
            if existing.value.count + value.count > maxItemSize { return .tooLarge }
            newValue = mode == .append ? existing.value + value : value + existing.value
            newFlags = existing.flags
            newExpiry = existing.expiresAt
        case .cas(let unique):
            guard let existing else { return .notFound }
            if existing.cas != unique { return .exists }
        }

        let newSize = Item.size(keyCount: key.count, valueCount: newValue.count)
        if newSize > budget { return .tooLarge }
        let oldSize = existing?.accountedSize ?? 0
        if let existing { moveToHead(existing) }
        guard makeRoom(for: newSize - oldSize, sparing: existing, now: now, flushDeadline: flushDeadline) else {
            counters.outOfMemory += 1
            return .noMemory
        }

        if let existing {
            existing.value = newValue
            existing.flags = newFlags
            existing.expiresAt = newExpiry
            existing.cas = nextCAS()
            existing.storedAt = now
            existing.fetched = false
            usedBytes += newSize - oldSize
        } else {
            let item = Item(key: key, value: newValue, flags: newFlags, expiresAt: newExpiry, cas: nextCAS(), storedAt: now)
            table[key] = item
            link(item)
            usedBytes += newSize
        }
        counters.totalItems += 1
        return .stored
    }

    mutating func delete(_ key: [UInt8], now: Int64, flushDeadline: Int64) -> DeleteOutcome {
        guard let item = liveItem(key, now: now, flushDeadline: flushDeadline, counting: false) else { return .notFound }
        remove(item)
        return .deleted
    }

    mutating func arithmetic(
        _ key: [UInt8], delta: UInt64, increment: Bool, now: Int64, flushDeadline: Int64, nextCAS: () -> UInt64
    ) -> ArithmeticOutcome {
        guard let item = liveItem(key, now: now, flushDeadline: flushDeadline, counting: false) else { return .notFound }
        guard let current = Self.parseCounter(item.value) else { return .nonNumeric }
        let result = increment ? current &+ delta : (delta > current ? 0 : current - delta)
        let digits = Array(String(result).utf8)
        let oldSize = item.accountedSize
        let newSize = Item.size(keyCount: item.key.count, valueCount: digits.count)
        moveToHead(item)
        // A counter grows by at most 19 bytes; if even that does not fit, keep the old value and say so.
        guard makeRoom(for: newSize - oldSize, sparing: item, now: now, flushDeadline: flushDeadline) else {
            counters.outOfMemory += 1
            return .noMemory
        }
        item.value = digits
        item.cas = nextCAS()
        usedBytes += newSize - oldSize
        return .value(result)
    }

    /// A counter is a decimal unsigned 64-bit number; memcached tolerates trailing spaces.
    static func parseCounter(_ bytes: [UInt8]) -> UInt64? {
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

    mutating func removeAll() {
        // Unlink explicitly: the list links do not retain, so they must never outlive the table's references.
        var cursor = head
        while let item = cursor {
            cursor = item.older
            item.linked = false
            item.newer = nil
            item.older = nil
        }
        head = nil
        tail = nil
        crawlCursor = nil
        table.removeAll()
        usedBytes = 0
    }

    /// Walks up to `limit` items from the old end, dropping expired ones; resumes where it stopped.
    mutating func reclaimExpired(now: Int64, flushDeadline: Int64, limit: Int) -> Int {
        var cursor: Item? = (crawlCursor?.linked == true) ? crawlCursor : tail
        var visited = 0
        var reclaimedNow = 0
        while let item = cursor, visited < limit {
            visited += 1
            let next = item.newer
            let flushed = flushDeadline != 0 && now >= flushDeadline && item.storedAt < flushDeadline
            if item.isExpired(now: now) || flushed {
                if !item.fetched, !flushed { counters.expiredUnfetched += 1 }
                remove(item)
                counters.reclaimed += 1
                counters.crawlerReclaimed += 1
                reclaimedNow += 1
            }
            cursor = next
        }
        crawlCursor = cursor
        return reclaimedNow
    }

    func snapshotCounters(now: Int64) -> ShardCounters {
        var copy = counters
        copy.currentItems = table.count
        copy.bytes = usedBytes
        copy.oldestItemAge = tail.map { max(0, now - $0.storedAt) } ?? 0
        return copy
    }

    mutating func resetCounters() {
        counters = ShardCounters()
    }

    // MARK: LRU and budget

    /// Frees at least `needed` bytes of budget, reclaiming expired items first and then (when allowed)
    /// evicting the least recently used. Never evicts `sparing`.
    private mutating func makeRoom(for needed: Int, sparing: Item?, now: Int64, flushDeadline: Int64) -> Bool {
        guard needed > 0 else { return true }
        while usedBytes + needed > budget {
            guard let victim = tail, victim !== sparing else { return false }
            if flushDeadline != 0, now >= flushDeadline, victim.storedAt < flushDeadline {
                // Already invisible after a delayed flush: reclaiming it is not an eviction.
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
            remove(victim)
        }
        return true
    }

    private mutating func remove(_ item: Item) {
        unlink(item)
        usedBytes -= item.accountedSize
        table[item.key] = nil
    }

    private mutating func link(_ item: Item) {
        item.newer = nil
        item.older = head
        head?.newer = item
        head = item
        if tail == nil { tail = item }
        item.linked = true
    }

    private mutating func unlink(_ item: Item) {
        guard item.linked else { return }
        if let newer = item.newer { newer.older = item.older } else { head = item.older }
        if let older = item.older { older.newer = item.newer } else { tail = item.newer }
        item.newer = nil
        item.older = nil
        item.linked = false
    }

    private mutating func moveToHead(_ item: Item) {
        guard head !== item else { return }
        unlink(item)
        link(item)
    }
}

// Items never leave their shard and a shard is only reached through its lock (see `Shard`), so handing
// the state to the lock is safe even though its items are plain classes.
extension ShardState: @unchecked Sendable {}
