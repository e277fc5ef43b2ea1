/// The shard side of warm restarts: its items in recency order for a snapshot, and items put back
/// from one without evicting anything.
extension SlabShard {
    /// The newest item of every size class (and of the large items): the heads of the lists a snapshot
    /// merges by last access.
    var recencyHeads: [ItemPointer] {
        (classStates.compactMap(\.newest) + [large.newest].compactMap { $0 })
    }

    /// Puts back an item from a snapshot as the least recently used of its class (a snapshot lists the
    /// most recently used first), with its CAS unique, flags and times. Nothing is evicted to make room:
    /// the items already restored are the more recent ones.
    mutating func restore(
        _ item: SnapshotItem, hash: Int, expiresAt: UInt32, lastAccess: UInt32, now: UInt32, flushDeadline: UInt32
    ) -> RestoreOutcome {
        if find(item.key, hash: hash) != nil { return .duplicate }
        let size = ItemPointer.size(keyCount: item.key.count, valueCount: item.value.count)
        let charge = classes.classFor(size: size) == SizeClasses.large ? Self.largeAllocationSize(size) : size
        if item.value.count > maxItemSize || item.key.count > 250 || charge > budget { return .tooLarge }
        let evicting = evictionsEnabled
        evictionsEnabled = false
        defer { evictionsEnabled = evicting }
        guard let restored = allocate(size: size, sparing: nil, now: now, flushDeadline: flushDeadline) else {
            return .noRoom
        }
        restored.keyCount = item.key.count
        restored.valueCount = item.value.count
        restored.flags = item.flags
        restored.expiresAt = expiresAt
        restored.lastAccess = lastAccess
        restored.hash = UInt32(truncatingIfNeeded: hash)
        restored.cas = item.cas
        if let base = item.key.baseAddress {
            (restored.raw + ItemPointer.headerSize).copyMemory(from: base, byteCount: item.key.count)
        }
        if let base = item.value.baseAddress {
            (restored.raw + ItemPointer.headerSize + item.key.count).copyMemory(from: base, byteCount: item.value.count)
        }
        link(restored, hash: hash, asOldest: true)
        restored.fetched = item.fetched
        restored.stale = item.stale
        return .restored
    }

    /// New CAS uniques from this shard come after `cas` (restored items keep theirs, which another
    /// process with another shard layout gave out). A unique at the very top, which only a client can
    /// choose (`ms E`), leaves no room above it: the counter stays, as it does when a client picks any
    /// unique while serving (the fuzzer found the overflow, which stopped the server at start).
    mutating func raiseCAS(above cas: UInt64) {
        let (next, overflow) = (cas >> shardBits).addingReportingOverflow(1)
        if !overflow { casCounter = max(casCounter, next) }
    }
}
