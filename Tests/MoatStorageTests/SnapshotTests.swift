import MoatStorage
import MoatTestSupport
import Testing

/// The storage side of warm restarts: the walk a snapshot writes and the restore that reads it back.
@Suite struct SnapshotStorageTests {
    /// What a walk saw, copied out.
    struct Seen: Equatable {
        var key: String, value: String, flags: UInt32, cas: UInt64, expiresAt: Int64, lastAccess: Int64
        var fetched: Bool, stale: Bool
    }

    func walk(_ cache: Cache) -> [Seen] {
        var seen: [Seen] = []
        cache.forEachItemMostRecentFirst { item in
            seen.append(
                Seen(
                    key: String(decoding: item.key, as: UTF8.self), value: String(decoding: item.value, as: UTF8.self),
                    flags: item.flags, cas: item.cas, expiresAt: item.expiresAt, lastAccess: item.lastAccess,
                    fetched: item.fetched, stale: item.stale))
            return true
        }
        return seen
    }

    /// Restores `seen` into `cache` in the order given.
    func restore(_ seen: [Seen], into cache: Cache) -> [RestoreOutcome] {
        seen.map { item in
            b(item.key).withUnsafeBytes { k in
                b(item.value).withUnsafeBytes { v in
                    cache.restore(
                        SnapshotItem(
                            key: k, value: v, flags: item.flags, cas: item.cas, expiresAt: item.expiresAt,
                            lastAccess: item.lastAccess, fetched: item.fetched, stale: item.stale))
                }
            }
        }
    }

    /// The walk lists items in the order the cache keeps them: the newest segment first, the newest
    /// item of a segment first; an item read before its segment's eviction pass moved to the new end.
    @Test func theWalkListsItemsInTheOrderTheCacheKeepsThem() {
        let cache = makeCache(memoryLimit: 3 * 1024, maxItemSize: 1024, shards: 1, segmentSize: 1024)
        let value = String(repeating: "x", count: 100)
        func key(_ i: Int) -> String { i < 10 ? "k0\(i)" : "k\(i)" }
        for i in 0..<21 { cache.set(key(i), value) }
        _ = cache.get(b("k01"))
        cache.set("n00", value)
        #expect(walk(cache).map(\.key) == ["n00", "k01"] + (7..<21).reversed().map(key))
    }

    @Test func theWalkTakesEveryShardInTurn() {
        let cache = makeCache(shards: 4)
        for i in 0..<200 { cache.set("k\(i)", "v") }
        let seen = walk(cache)
        #expect(seen.count == 200)
        #expect(Set(seen.map(\.key)).count == 200)
    }

    @Test func theWalkCarriesWallClockTimesAndSkipsWhatIsGone() {
        let clock = ManualClock(1_700_000_000)
        let cache = makeCache(clock: clock)
        cache.set("forever", "1", flags: 7)
        cache.set("soon", "2", exptime: 10)
        cache.set("later", "3", exptime: 100)
        clock.advance(by: 20)
        let seen = walk(cache)
        // "soon" expired; the other two were stored in the same second, in no particular order.
        #expect(Set(seen.map(\.key)) == ["later", "forever"] && seen.count == 2)
        let later = seen.first { $0.key == "later" }
        #expect(later?.expiresAt == 1_700_000_100 && later?.lastAccess == 1_700_000_000)
        #expect(seen.first { $0.key == "forever" }?.expiresAt == 0)
        #expect(seen.first { $0.key == "forever" }?.flags == 7)
        // A flush hides everything stored before it.
        cache.flushAll(delay: 5)
        clock.advance(by: 5)
        #expect(walk(cache).isEmpty)
    }

    @Test func aRestoredCacheServesTheSameItemsWithTheirCASAndExpiry() {
        let clock = ManualClock(1_700_000_000)
        let before = makeCache(clock: clock)
        before.set("k1", "v1", flags: 3, exptime: 300)
        before.set("k2", "v2")
        _ = before.get(b("k1"))
        let seen = walk(before)
        // Another process, a minute later, with another epoch and shard layout.
        clock.advance(by: 60)
        let after = makeCache(shards: 2, clock: clock)
        #expect(restore(seen, into: after) == [.restored, .restored])
        #expect(after.get(b("k1"))?.value == b("v1") && after.get(b("k1"))?.flags == 3)
        #expect(after.get(b("k1"))?.cas == before.get(b("k1"))?.cas)
        #expect(walk(after).first { $0.key == "k1" }?.expiresAt == 1_700_000_300)
        clock.advance(by: 241)
        #expect(after.get(b("k1")) == nil)  // it expires when it would have
        #expect(after.value("k2") == "v2")
        // A key already restored is not restored twice.
        #expect(restore(seen.filter { $0.key == "k2" }, into: after) == [.duplicate])
    }

    @Test func anItemThatExpiredWhileDownIsNotRestored() {
        let clock = ManualClock(1_700_000_000)
        let before = makeCache(clock: clock)
        before.set("short", "x", exptime: 30)
        let seen = walk(before)
        clock.advance(by: 31)
        let after = makeCache(clock: clock)
        #expect(restore(seen, into: after) == [.expired])
        #expect(after.get(b("short")) == nil)
    }

    @Test func aSmallerCacheKeepsTheMostRecentAndEvictsNothingToRestore() {
        let clock = ManualClock()
        let before = makeCache(shards: 1, clock: clock)
        for index in 0..<8 {
            before.set("k\(index)", "v")
            clock.advance(by: 1)
        }
        let seen = walk(before)
        #expect(seen.first?.key == "k7")
        // Room for four items, two segments of two: the four most recent are kept, the rest refused.
        let size = footprint(key: 2, value: 1)!
        let after = makeCache(
            memoryLimit: 4 * size, maxItemSize: 1024, shards: 1, segmentSize: 2 * size, clock: clock)
        let outcomes = restore(seen, into: after)
        #expect(outcomes == Array(repeating: .restored, count: 4) + Array(repeating: .noRoom, count: 4))
        #expect(after.counters().currentItems == 4)
        #expect(after.counters().evictions == 0)
        // The less recent segment (k5, k4) sits at the old end: a new item evicts it first.
        after.set("new", "v")
        #expect(after.value("k4") == nil && after.value("k5") == nil)
        #expect(after.value("k6") == "v" && after.value("k7") == "v" && after.value("new") == "v")
    }

    @Test func newCASUniquesComeAfterEveryRestoredOne() {
        let clock = ManualClock()
        let after = makeCache(shards: 4, clock: clock)
        let restored: UInt64 = 1 << 40
        _ = restore(
            [
                Seen(
                    key: "old", value: "v", flags: 0, cas: restored, expiresAt: 0, lastAccess: clock.now(),
                    fetched: true, stale: false)
            ], into: after)
        after.raiseCAS(above: restored)
        for index in 0..<20 { after.set("n\(index)", "v") }
        #expect((0..<20).allSatisfy { after.get(b("n\($0)"))!.cas > restored })
        #expect(after.get(b("old"))?.cas == restored)
    }

    @Test func aClientChosenUniqueAtTheTopLeavesTheCounterAsItIs() {
        // `ms k 1 E18446744073709551615` is a client's to send; restoring it must not stop the server.
        for shards in [1, 4] {
            let after = makeCache(shards: shards)
            after.raiseCAS(above: .max)
            after.set("k", "v")
            #expect(after.get(b("k"))!.cas < .max)
        }
    }

    @Test func aPendingDelayedFlushIsCarried() {
        let clock = ManualClock(1_700_000_000)
        let before = makeCache(clock: clock)
        #expect(before.pendingFlush == 0)
        before.flushAll(delay: 100)
        #expect(before.pendingFlush == 1_700_000_100)
        let after = makeCache(clock: clock)
        after.restorePendingFlush(at: before.pendingFlush)
        after.set("k", "v")
        clock.advance(by: 100)
        #expect(after.get(b("k")) == nil)
    }
}
