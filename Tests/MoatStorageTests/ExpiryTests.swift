import MoatStorage
import MoatTestSupport
import Testing

@Suite struct ExpiryRuleTests {
    let now: Int64 = 1_700_000_000

    @Test func deadlineRules() {
        #expect(Expiry.deadline(for: 0, now: now) == 0)
        #expect(Expiry.deadline(for: 1, now: now) == now + 1)
        #expect(Expiry.deadline(for: Expiry.relativeLimit, now: now) == now + Expiry.relativeLimit)
        #expect(Expiry.deadline(for: Expiry.relativeLimit + 1, now: now) == Expiry.relativeLimit + 1)
        #expect(Expiry.deadline(for: now + 500, now: now) == now + 500)
        #expect(Expiry.deadline(for: -1, now: now) <= now)
        #expect(Expiry.deadline(for: -1, now: now) > 0)
        #expect(Expiry.relativeLimit == 2_592_000)
    }

    @Test func zeroNeverExpires() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("k", "v", exptime: 0)
        clock.advance(by: 10 * 365 * 86400)
        #expect(cache.value("k") == "v")
    }

    @Test func relativeExpiry() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("short", "v", exptime: 10)
        cache.set("month", "v", exptime: Expiry.relativeLimit)
        clock.advance(by: 9)
        #expect(cache.value("short") == "v")
        clock.advance(by: 1)
        #expect(cache.value("short") == nil)
        clock.set(now + Expiry.relativeLimit - 1)
        #expect(cache.value("month") == "v")
        clock.set(now + Expiry.relativeLimit)
        #expect(cache.value("month") == nil)
    }

    @Test func absoluteExpiry() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("abs", "v", exptime: now + 100)
        clock.advance(by: 99)
        #expect(cache.value("abs") == "v")
        clock.advance(by: 1)
        #expect(cache.value("abs") == nil)
    }

    @Test func absoluteInThePastIsAlreadyExpired() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        #expect(cache.set("a", "v", exptime: Expiry.relativeLimit + 1) == .stored)
        #expect(cache.value("a") == nil)
        #expect(cache.set("b", "v", exptime: now - 1) == .stored)
        #expect(cache.value("b") == nil)
        #expect(cache.set("c", "v", exptime: now) == .stored)
        #expect(cache.value("c") == nil)
    }

    @Test func negativeIsAlreadyExpired() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("k", "v")
        #expect(cache.set("k", "w", exptime: -1) == .stored)
        #expect(cache.get(b("k")) == nil)
        #expect(cache.store(.add, key: b("k"), value: b("x"), flags: 0, exptime: 0) == .stored)
        #expect(cache.value("k") == "x")
    }

    @Test func expiredItemsAreInvisibleToEveryCommand() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("k", "1", exptime: 1)
        clock.advance(by: 1)
        #expect(cache.delete(b("k")) == .notFound)
        cache.set("k", "1", exptime: 1)
        clock.advance(by: 1)
        #expect(cache.touch(b("k"), exptime: 0) == .notFound)
        #expect(cache.getAndTouch(b("k"), exptime: 0) == nil)
        #expect(cache.increment(b("k"), by: 1) == .notFound)
        #expect(cache.store(.replace, key: b("k"), value: b("x"), flags: 0, exptime: 0) == .notStored)
        #expect(cache.store(.append, key: b("k"), value: b("x"), flags: 0, exptime: 0) == .notStored)
    }

    @Test func getCountsExpiredHits() {
        let clock = ManualClock(now)
        let cache = makeCache(clock: clock)
        cache.set("k", "v", exptime: 1)
        clock.advance(by: 1)
        #expect(cache.get(b("k")) == nil)
        let counters = cache.counters()
        #expect(counters.getExpired == 1)
        #expect(counters.expiredUnfetched == 1)
        #expect(counters.currentItems == 0)
        #expect(counters.bytes == 0)
    }
}

@Suite struct TouchTests {
    @Test func touchExtendsExpiry() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v", exptime: 10)
        #expect(cache.touch(b("k"), exptime: 100) == .touched)
        clock.advance(by: 50)
        #expect(cache.value("k") == "v")
        clock.advance(by: 50)
        #expect(cache.value("k") == nil)
    }

    @Test func touchCanShortenAndExpire() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v")
        #expect(cache.touch(b("k"), exptime: 5) == .touched)
        clock.advance(by: 5)
        #expect(cache.value("k") == nil)
        cache.set("j", "v")
        #expect(cache.touch(b("j"), exptime: -1) == .touched)
        #expect(cache.value("j") == nil)
    }

    @Test func touchMissing() {
        let cache = makeCache()
        #expect(cache.touch(b("none"), exptime: 10) == .notFound)
    }

    @Test func getAndTouchReturnsValueAndChangesExpiry() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v", flags: 4, exptime: 10)
        let hit = cache.getAndTouch(b("k"), exptime: 0)
        #expect(hit?.value == b("v"))
        #expect(hit?.flags == 4)
        clock.advance(by: 1000)
        #expect(cache.value("k") == "v")
        #expect(cache.getAndTouch(b("k"), exptime: 20)?.value == b("v"))
        clock.advance(by: 20)
        #expect(cache.getAndTouch(b("k"), exptime: 20) == nil)
        #expect(cache.getAndTouch(b("none"), exptime: 20) == nil)
    }
}

@Suite struct FlushTests {
    @Test func immediateFlushRemovesEverything() {
        let cache = makeCache(shards: 4)
        for i in 0..<100 { cache.set("k\(i)", "v") }
        #expect(cache.counters().currentItems == 100)
        cache.flushAll(delay: 0)
        for i in 0..<100 { #expect(cache.get(b("k\(i)")) == nil) }
        let counters = cache.counters()
        #expect(counters.currentItems == 0)
        #expect(counters.bytes == 0)
        cache.set("after", "v")
        #expect(cache.value("after") == "v")
    }

    @Test func delayedFlush() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("before", "v")
        cache.flushAll(delay: 10)
        #expect(cache.value("before") == "v")
        clock.advance(by: 5)
        cache.set("pending", "v")
        clock.advance(by: 4)
        #expect(cache.value("before") == "v")
        #expect(cache.value("pending") == "v")
        clock.advance(by: 1)  // the deadline
        #expect(cache.value("before") == nil)
        #expect(cache.value("pending") == nil)
        #expect(cache.counters().getFlushed == 2)
        cache.set("after", "v")
        clock.advance(by: 100)
        #expect(cache.value("after") == "v")
    }

    @Test func delayedFlushHidesItemsFromAllCommands() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        for key in ["a", "b", "c", "d", "e"] { cache.set(key, "1") }
        cache.flushAll(delay: 1)
        clock.advance(by: 1)
        #expect(cache.delete(b("a")) == .notFound)
        #expect(cache.touch(b("b"), exptime: 0) == .notFound)
        #expect(cache.increment(b("c"), by: 1) == .notFound)
        #expect(cache.store(.add, key: b("d"), value: b("2"), flags: 0, exptime: 0) == .stored)
        #expect(cache.value("d") == "2")
        #expect(cache.store(.replace, key: b("e"), value: b("2"), flags: 0, exptime: 0) == .notStored)
    }

    @Test func immediateFlushCancelsPendingDelayedFlush() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.flushAll(delay: 10)
        cache.flushAll(delay: 0)
        cache.set("k", "v")
        clock.advance(by: 20)
        #expect(cache.value("k") == "v")
    }

    @Test func reclaimRemovesFlushedItems() {
        let clock = ManualClock()
        let cache = makeCache(shards: 1, clock: clock)
        for i in 0..<10 { cache.set("k\(i)", "v") }
        cache.flushAll(delay: 2)
        #expect(cache.reclaimExpired() == 0)
        clock.advance(by: 2)
        #expect(cache.reclaimExpired() == 10)
        #expect(cache.counters().currentItems == 0)
        #expect(cache.counters().bytes == 0)
    }
}

@Suite struct ReclaimTests {
    @Test func reclaimRemovesOnlyExpired() {
        let clock = ManualClock()
        let cache = makeCache(shards: 2, clock: clock)
        for i in 0..<5 { cache.set("ttl\(i)", "v", exptime: 10) }
        for i in 0..<3 { cache.set("keep\(i)", "vv") }
        #expect(cache.reclaimExpired() == 0)
        clock.advance(by: 10)
        #expect(cache.reclaimExpired() == 5)
        let counters = cache.counters()
        #expect(counters.reclaimed == 5)
        #expect(counters.crawlerReclaimed == 5)
        #expect(counters.expiredUnfetched == 5)
        #expect(counters.currentItems == 3)
        #expect(counters.bytes == 3 * charge(key: 5, value: 2))
        #expect(cache.reclaimExpired() == 0)
        for i in 0..<3 { #expect(cache.value("keep\(i)") == "vv") }
    }

    @Test func boundedWalkResumes() {
        let clock = ManualClock()
        let cache = makeCache(shards: 1, clock: clock)
        for i in 0..<10 { cache.set("k\(i)", "v", exptime: 1) }
        clock.advance(by: 1)
        var total = 0
        for _ in 0..<10 {
            let got = cache.reclaimExpired(perShardLimit: 3)
            #expect(got <= 3)
            total += got
        }
        #expect(total == 10)
        #expect(cache.counters().currentItems == 0)
    }

    @Test func resetCountersKeepsGauges() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("a", "v", exptime: 1)
        cache.set("b", "v")
        clock.advance(by: 1)
        cache.reclaimExpired()
        cache.resetCounters()
        let counters = cache.counters()
        #expect(counters.reclaimed == 0)
        #expect(counters.totalItems == 0)
        #expect(counters.currentItems == 1)
        #expect(counters.bytes == charge(key: 1, value: 1))
    }
}
