/// The shard side of warm restarts: items put back from a snapshot without evicting anything.
extension SegmentShard {
    /// Puts back an item from a snapshot at the old end of the FIFO (a snapshot lists the most recently
    /// used first), with its CAS unique, flags and times. Nothing is evicted to make room: the items
    /// already restored are the more recent ones.
    mutating func restore(
        _ item: SnapshotItem, hash: Int, expiresAt: UInt32, lastAccess: UInt32, now: UInt32, flushDeadline: UInt32
    ) -> RestoreOutcome {
        if find(item.key, hash: hash) != nil { return .duplicate }
        if item.value.count > maxItemSize || item.key.count > 250
            || charge(keyCount: item.key.count, valueCount: item.value.count) > budget
        {
            return .tooLarge
        }
        guard let restored = allocateForRestore(keyCount: item.key.count, valueCount: item.value.count) else {
            return .noRoom
        }
        restored.flags = item.flags
        restored.expiresAt = expiresAt
        restored.lastAccess = lastAccess
        restored.cas = item.cas
        if let base = item.key.baseAddress {
            (restored.raw + ItemPointer.headerSize).copyMemory(from: base, byteCount: item.key.count)
        }
        if let base = item.value.baseAddress {
            (restored.raw + ItemPointer.headerSize + item.key.count).copyMemory(from: base, byteCount: item.value.count)
        }
        link(restored, hash: hash)
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
