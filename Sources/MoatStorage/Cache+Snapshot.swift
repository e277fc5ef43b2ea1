/// One item as a snapshot carries it: its times on the wall clock (Unix seconds), so that it means the
/// same in another process, whose cache counts from another epoch. Valid only inside the call that
/// hands it over (its bytes are the item's own, or the reader's).
public struct SnapshotItem {
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    public let flags: UInt32
    public let cas: UInt64
    /// When it expires; 0: never.
    public let expiresAt: Int64
    /// Its last store, fetch or touch.
    public let lastAccess: Int64
    public let fetched: Bool
    public let stale: Bool

    public init(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: UInt32, cas: UInt64, expiresAt: Int64,
        lastAccess: Int64, fetched: Bool, stale: Bool
    ) {
        self.key = key
        self.value = value
        self.flags = flags
        self.cas = cas
        self.expiresAt = expiresAt
        self.lastAccess = lastAccess
        self.fetched = fetched
        self.stale = stale
    }
}

/// What became of an item put back from a snapshot.
public enum RestoreOutcome: Sendable, Equatable {
    case restored
    /// Its time ran out while the server was down.
    case expired
    /// The memory limit is reached (the items already restored are the more recent ones).
    case noRoom
    /// Over this cache's item size limit.
    case tooLarge
    /// The key was restored already.
    case duplicate
}

extension Cache {
    /// Calls `body` with every live item, most recently written or kept first, while every shard is
    /// locked: the walk sees one consistent cache, which nothing changes (or reads) until it ends. Each
    /// shard's segments go from the new end of its FIFO to the old (items read since the last eviction
    /// pass were moved to the new end), the newest item of a segment first, one segment of each shard
    /// in turn, so that a smaller cache restores the hottest items. `body` returns false to stop.
    public func forEachItemMostRecentFirst(_ body: (SnapshotItem) -> Bool) {
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        withEveryShardLocked { states in
            let orders = states.map { $0.pointee.segmentsNewestFirst }
            let rounds = orders.map(\.count).max() ?? 0
            var items: [ItemPointer] = []
            for round in 0..<rounds {
                for (shard, order) in zip(states, orders) where round < order.count {
                    items.removeAll(keepingCapacity: true)
                    shard.pointee.forEachLinkedItem(in: order[round]) { items.append($0) }
                    for item in items.reversed() {
                        if item.isExpired(now: now)
                            || SegmentShard.hiddenByFlush(item, now: now, flushDeadline: deadline)
                        {
                            continue
                        }
                        let view = SnapshotItem(
                            key: item.keyBytes, value: item.valueBytes, flags: item.flags, cas: item.cas,
                            expiresAt: item.expiresAt == 0 ? 0 : epoch + Int64(item.expiresAt),
                            lastAccess: epoch + Int64(item.lastAccess), fetched: item.fetched, stale: item.stale)
                        guard body(view) else { return }
                    }
                }
            }
        }
    }

    /// Puts back one item from a snapshot, at the old end of its shard's FIFO, never evicting.
    public func restore(_ item: SnapshotItem) -> RestoreOutcome {
        let nowUnix = clock.now()
        if item.expiresAt != 0, item.expiresAt <= nowUnix { return .expired }
        let hash = Self.hash(item.key)
        let now = relativeNow()
        let deadline = flushDeadline.load(ordering: .relaxed)
        // Times before this cache's epoch are kept as its first second (0 means never for expiries); the
        // clamps come first, so that no time a file holds can overflow the arithmetic.
        let expiresAt = item.expiresAt == 0 ? 0 : UInt32(clamping: max(1, item.expiresAt - epoch))
        let lastAccess = UInt32(clamping: min(max(item.lastAccess, epoch), nowUnix) - epoch)
        return shard(for: hash).withLock {
            $0.restore(
                item, hash: hash, expiresAt: expiresAt, lastAccess: lastAccess, now: now, flushDeadline: deadline)
        }
    }

    /// Makes room in the hash tables for `items` more items (spread over the shards), before a restore;
    /// bounded by what the memory limit can hold, so that a forged count cannot make it allocate more.
    public func reserve(items: Int) {
        let most = memoryLimit / 64
        let perShard = min(max(0, items), most) / max(1, allShards.count) + 1
        for shard in allShards { shard.withLock { $0.reserve(items: perShard) } }
    }

    /// After a restore: every CAS unique given out from now on is greater than `cas`, the largest
    /// restored, so that an old unique never matches a new item.
    public func raiseCAS(above cas: UInt64) {
        for shard in allShards { shard.withLock { $0.raiseCAS(above: cas) } }
    }

    /// A pending `flush_all <delay>` as Unix time (0: none), for a snapshot to carry.
    public var pendingFlush: Int64 {
        let deadline = flushDeadline.load(ordering: .relaxed)
        return deadline == 0 || deadline <= relativeNow() ? 0 : epoch + Int64(deadline)
    }

    /// Restores a pending delayed flush from a snapshot (one already past does nothing).
    public func restorePendingFlush(at unixTime: Int64) {
        guard unixTime > clock.now() else { return }
        flushDeadline.store(UInt32(clamping: unixTime - epoch), ordering: .relaxed)
    }
}
