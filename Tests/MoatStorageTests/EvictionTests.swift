import MoatStorage
import MoatTestSupport
import Testing

@Suite struct EvictionTests {
    /// Three items of key 2 + value 100 bytes fill the one segment of a one-shard cache.
    static let itemCharge = charge(key: 2, value: 100)
    static let value100 = String(repeating: "x", count: 100)

    func threeSlotCache(evictions: Bool = true, clock: ManualClock = ManualClock()) -> Cache {
        slotCache(slots: 3, key: 2, value: 100, evictions: evictions, clock: clock)
    }

    /// Three items fill the cache's one segment: the pass over it keeps what was read since the last
    /// pass (up to half the segment) and evicts the rest.
    @Test func itemsReadSinceTheLastPassSurviveIt() {
        let cache = threeSlotCache()
        cache.set("k1", Self.value100)
        cache.set("k2", Self.value100)
        cache.set("k3", Self.value100)
        #expect(cache.counters().bytes == 3 * Self.itemCharge)
        #expect(cache.get(b("k1")) != nil)
        #expect(cache.set("k4", Self.value100) == .stored)
        var counters = cache.counters()
        #expect(counters.evictions == 2)
        #expect(counters.evictedUnfetched == 2)
        #expect(counters.currentItems == 2)
        #expect(counters.bytes == 2 * Self.itemCharge)
        #expect(cache.get(b("k2")) == nil)
        #expect(cache.get(b("k3")) == nil)
        // Both read now; the next pass keeps one (half a segment holds one), the first in the segment.
        #expect(cache.get(b("k4")) != nil)
        #expect(cache.get(b("k1")) != nil)
        #expect(cache.set("k5", Self.value100) == .stored)
        #expect(cache.set("k6", Self.value100) == .stored)
        counters = cache.counters()
        #expect(counters.evictions == 4)
        #expect(counters.evictedUnfetched == 3)  // k4 had been read
        #expect(cache.get(b("k1")) != nil)
        #expect(cache.get(b("k4")) == nil)
        #expect(cache.get(b("k5")) == nil)
        #expect(cache.get(b("k6")) != nil)
    }

    @Test func touchEarnsASecondChanceAndDeadBytesComeFirst() {
        let cache = threeSlotCache()
        cache.set("k1", Self.value100)
        cache.set("k2", Self.value100)
        cache.set("k3", Self.value100)
        #expect(cache.touch(b("k1"), exptime: 0) == .touched)
        // The overwrite leaves the old k2 dead: that makes the room, and nothing live is evicted.
        cache.set("k2", Self.value100)
        #expect(cache.counters().evictions == 0)
        // The next pass keeps the touched k1 and evicts the rest (one segment: the new k2 too).
        cache.set("k4", Self.value100)
        #expect(cache.get(b("k3")) == nil)
        #expect(cache.value("k1") != nil)
        #expect(cache.value("k4") != nil)
        #expect(cache.counters().evictions == 2)
    }

    @Test func failedAddRefreshesRecency() {
        let cache = threeSlotCache()
        cache.set("k1", Self.value100)
        cache.set("k2", Self.value100)
        cache.set("k3", Self.value100)
        #expect(cache.store(.add, key: b("k1"), value: b(Self.value100), flags: 0, exptime: 0) == .notStored)
        cache.set("k4", Self.value100)
        #expect(cache.get(b("k2")) == nil)
        #expect(cache.get(b("k1")) != nil)
    }

    @Test func growingAnItemNeverEvictsItself() {
        // The grown copy needs room in the full segment: the pass over it evicts the items not read,
        // never the item being grown.
        let cache = threeSlotCache()
        cache.set("k1", Self.value100)
        cache.set("k2", Self.value100)
        cache.set("k3", Self.value100)
        let extra = String(repeating: "y", count: 10)
        #expect(cache.store(.append, key: b("k1"), value: b(extra), flags: 0, exptime: 0) == .stored)
        #expect(cache.value("k1") == Self.value100 + extra)
        #expect(cache.get(b("k2")) == nil)
        #expect(cache.get(b("k3")) == nil)
        #expect(cache.counters().evictions == 2)
        #expect(cache.counters().bytes <= cache.counters().mallocedBytes)
        #expect(cache.counters().mallocedBytes <= cache.configuration.memoryLimit)
    }

    @Test func growingTheOnlyItemRefusesRatherThanEvictingItself() {
        // One segment with room for one item of either length, not both.
        let size = footprint(key: 2, value: 102)!
        let cache = makeCache(memoryLimit: size, maxItemSize: 1024, shards: 1, segmentSize: size)
        cache.set("k1", Self.value100)
        #expect(cache.store(.append, key: b("k1"), value: b("yy"), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.store(.prepend, key: b("k1"), value: b("yy"), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.value("k1") == Self.value100)
        #expect(cache.counters().evictions == 0)
        #expect(cache.counters().outOfMemory == 2)
    }

    @Test func expiredTailIsReclaimedNotEvicted() {
        let clock = ManualClock()
        let cache = threeSlotCache(clock: clock)
        cache.set("k1", Self.value100, exptime: 5)
        cache.set("k2", Self.value100)
        cache.set("k3", Self.value100)
        clock.advance(by: 5)
        cache.set("k4", Self.value100)
        let counters = cache.counters()
        #expect(counters.evictions == 0)
        #expect(counters.reclaimed == 1)
        #expect(counters.expiredUnfetched == 1)
        #expect(cache.value("k2") != nil)
    }

    @Test func evictionsDisabledRefusesWhenFull() {
        let clock = ManualClock()
        let cache = threeSlotCache(evictions: false, clock: clock)
        cache.set("k1", Self.value100)
        cache.set("k2", Self.value100, exptime: 10)
        cache.set("k3", Self.value100)
        #expect(cache.set("k4", Self.value100) == .noMemory)
        #expect(cache.counters().outOfMemory == 1)
        #expect(cache.counters().evictions == 0)
        #expect(cache.get(b("k4")) == nil)
        #expect(cache.value("k1") != nil)
        // Same-size overwrite needs no room.
        #expect(cache.set("k1", String(repeating: "z", count: 100)) == .stored)
        // Growing needs room.
        #expect(cache.store(.append, key: b("k1"), value: b("more"), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.get(b("k1"))?.value.count == 100)
        // Expired items still make room.
        clock.advance(by: 10)
        #expect(cache.set("k4", Self.value100) == .stored)
        #expect(cache.counters().reclaimed == 1)
        // A delete frees room too.
        #expect(cache.set("k5", Self.value100) == .noMemory)
        #expect(cache.delete(b("k3")) == .deleted)
        #expect(cache.set("k5", Self.value100) == .stored)
    }

    @Test func incrementThatCannotGrowDoesNotReportUnstoredValue() {
        // Two slots; "100" needs a place of its own before the old "99" goes.
        let cache = slotCache(slots: 2, key: 1, value: 2, evictions: false)
        cache.set("a", "99")
        cache.set("b", "99")
        let outcome = cache.increment(b("a"), by: 1)
        #expect(outcome == .noMemory)
        #expect(cache.value("a") == "99")
        #expect(cache.value("b") == "99")
        #expect(cache.counters().outOfMemory == 1)
    }

    @Test func oldestItemAge() {
        let clock = ManualClock()
        let cache = makeCache(shards: 1, clock: clock)
        #expect(cache.counters().oldestItemAge == 0)
        cache.set("a", "v")
        clock.advance(by: 30)
        cache.set("b", "v")
        #expect(cache.counters().oldestItemAge == 30)
    }

    @Test func countersTrackStores() {
        let cache = makeCache(shards: 4)
        for i in 0..<50 { cache.set("key\(i)", "value") }
        for i in 0..<10 { cache.set("key\(i)", "v") }
        let counters = cache.counters()
        #expect(counters.totalItems == 60)
        #expect(counters.currentItems == 50)
        #expect(
            counters.bytes
                == (0..<50).reduce(0) { total, i in
                    total + charge(key: "key\(i)".utf8.count, value: i < 10 ? 1 : 5)
                })
    }

    @Test func shardCountIsPowerOfTwoAndEachShardHasAtLeast16MiB() {
        let mib = 1024 * 1024
        #expect(makeCache(shards: 3).shardCount == 2)
        #expect(makeCache(shards: 1).shardCount == 1)
        #expect(makeCache(shards: 8).shardCount == 8)
        #expect(makeCache(memoryLimit: 1024 * mib).shardCount == 16)
        #expect(makeCache(memoryLimit: 256 * mib).shardCount == 16)
        #expect(makeCache(memoryLimit: 255 * mib).shardCount == 8)
        #expect(makeCache(memoryLimit: 128 * mib).shardCount == 8)
        #expect(makeCache(memoryLimit: 64 * mib).shardCount == 4)
        #expect(makeCache(memoryLimit: 32 * mib).shardCount == 2)
        #expect(makeCache(memoryLimit: 32 * mib - 1).shardCount == 1)
        #expect(makeCache(memoryLimit: mib).shardCount == 1)
        // A shard addresses at most 8 GiB of items.
        #expect(makeCache(memoryLimit: 128 << 30).shardCount == 16)
        #expect(makeCache(memoryLimit: 256 << 30).shardCount == 32)
        #expect(makeCache(memoryLimit: 20 << 30, shards: 1).shardCount == 4)
    }

    /// The segment size shows through `footprint`: an item of exactly one segment is written into one,
    /// four bytes more (the alignment) is allocated on its own.
    func segmentSize(of configuration: CacheConfiguration) -> Int? {
        var size = 1024
        while size <= 4 * 1024 * 1024 {
            let value = size - itemOverhead - 1
            if configuration.footprint(keyCount: 1, valueCount: value) == size,
                configuration.footprint(keyCount: 1, valueCount: value + 1) == nil
            {
                return size
            }
            size *= 2
        }
        return nil
    }

    @Test func segmentSizeIsOneMiBUnlessAShardWouldHoldFewerThan32() {
        let mib = 1024 * 1024
        func config(_ limit: Int, shards: Int? = nil, segment: Int? = nil) -> CacheConfiguration {
            CacheConfiguration(memoryLimit: limit, shardCount: shards, segmentSize: segment)
        }
        #expect(segmentSize(of: config(1024 * mib)) == mib)  // 16 shards of 64 MiB
        #expect(segmentSize(of: config(512 * mib)) == mib)  // 16 shards of 32 MiB
        #expect(segmentSize(of: config(256 * mib)) == mib / 2)  // 16 shards of 16 MiB
        #expect(segmentSize(of: config(64 * mib)) == mib / 2)  // 4 shards of 16 MiB
        #expect(segmentSize(of: config(16 * mib)) == mib / 2)  // 1 shard
        #expect(segmentSize(of: config(8 * mib)) == mib / 4)
        #expect(segmentSize(of: config(mib)) == 32 * 1024)
        #expect(segmentSize(of: config(mib / 2)) == 16 * 1024)
        #expect(segmentSize(of: config(64 * 1024)) == 16 * 1024)  // never below 16 KiB
        #expect(segmentSize(of: config(64 * mib, shards: 1)) == mib)
        #expect(segmentSize(of: config(64 * mib, segment: 64 * 1024)) == 64 * 1024)
    }
}

@Suite struct ShardPolicyTests {
    @Test func shardsFollowThreadsAndStayLargeEnough() {
        let gib = 1024 * 1024 * 1024
        #expect(CacheConfiguration.shardCount(forThreads: 1, memoryLimit: gib) == 4)
        #expect(CacheConfiguration.shardCount(forThreads: 2, memoryLimit: gib) == 8)
        #expect(CacheConfiguration.shardCount(forThreads: 4, memoryLimit: gib) == 16)
        #expect(CacheConfiguration.shardCount(forThreads: 64, memoryLimit: gib) == 16)
        #expect(CacheConfiguration.shardCount(forThreads: 4, memoryLimit: 256 * 1024 * 1024) == 4)
        #expect(CacheConfiguration.shardCount(forThreads: 4, memoryLimit: 64 * 1024 * 1024) == 1)
    }
}

@Suite struct ResizeTests {
    @Test func shrinkingEvictsDownToTheNewLimitAndGrowingKeepsItems() {
        let cache = Cache(configuration: CacheConfiguration(memoryLimit: 8 << 20, maxItemSize: 1 << 20, shardCount: 1))
        let value = [UInt8](repeating: 7, count: 1000)
        for i in 0..<6000 { _ = cache.store(.set, key: Array("k\(i)".utf8), value: value, flags: 0, exptime: 0) }
        let before = cache.counters()
        #expect(before.currentItems == 6000)
        cache.resize(memoryLimit: 2 << 20, evictionsEnabled: true)
        let after = cache.counters()
        #expect(after.mallocedBytes <= 2 << 20)
        #expect(after.currentItems < 2100 && after.currentItems > 1000)
        #expect(after.evictions == UInt64(6000 - after.currentItems))
        #expect(cache.get(Array("k5999".utf8)) != nil)  // the newest stay
        cache.resize(memoryLimit: 4 << 20, evictionsEnabled: false)
        #expect(cache.memoryLimit == 4 << 20)
        #expect(cache.counters().currentItems == after.currentItems)
        // With evictions off, a full cache refuses instead of evicting.
        var outcomes: [StoreOutcome] = []
        for i in 0..<6000 {
            outcomes.append(cache.store(.set, key: Array("n\(i)".utf8), value: value, flags: 0, exptime: 0))
        }
        #expect(outcomes.contains(.noMemory))
        #expect(cache.get(Array("k5999".utf8)) != nil)
    }
}
