import MoatStorage
import MoatTestSupport
import Testing

@Suite struct StoreCommandTests {
    @Test func setThenGetReturnsValueAndFlags() {
        let cache = makeCache()
        #expect(cache.set("k", "hello", flags: 42) == .stored)
        let hit = cache.get(b("k"))
        #expect(hit?.value == b("hello"))
        #expect(hit?.flags == 42)
        #expect(cache.get(b("missing")) == nil)
    }

    @Test func setOverwrites() {
        let cache = makeCache()
        cache.set("k", "one", flags: 1)
        cache.set("k", "two", flags: 2)
        #expect(cache.value("k") == "two")
        #expect(cache.get(b("k"))?.flags == 2)
        #expect(cache.counters().currentItems == 1)
    }

    @Test func emptyValueIsStored() {
        let cache = makeCache()
        #expect(cache.set("k", "") == .stored)
        #expect(cache.get(b("k"))?.value == [])
    }

    @Test func addOnlyWhenAbsent() {
        let cache = makeCache()
        #expect(cache.store(.add, key: b("k"), value: b("a"), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.add, key: b("k"), value: b("b"), flags: 0, exptime: 0) == .notStored)
        #expect(cache.value("k") == "a")
    }

    @Test func addSucceedsOverExpiredItem() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "old", exptime: 5)
        clock.advance(by: 5)
        #expect(cache.store(.add, key: b("k"), value: b("new"), flags: 0, exptime: 0) == .stored)
        #expect(cache.value("k") == "new")
    }

    @Test func replaceOnlyWhenPresent() {
        let cache = makeCache()
        #expect(cache.store(.replace, key: b("k"), value: b("a"), flags: 0, exptime: 0) == .notStored)
        #expect(cache.get(b("k")) == nil)
        cache.set("k", "a")
        #expect(cache.store(.replace, key: b("k"), value: b("b"), flags: 7, exptime: 0) == .stored)
        #expect(cache.value("k") == "b")
        #expect(cache.get(b("k"))?.flags == 7)
    }

    @Test func appendAndPrependKeepFlagsAndExpiry() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        #expect(cache.store(.append, key: b("k"), value: b("x"), flags: 0, exptime: 0) == .notStored)
        #expect(cache.store(.prepend, key: b("k"), value: b("x"), flags: 0, exptime: 0) == .notStored)
        cache.set("k", "mid", flags: 9, exptime: 100)
        #expect(cache.store(.append, key: b("k"), value: b("-end"), flags: 1, exptime: 0) == .stored)
        #expect(cache.store(.prepend, key: b("k"), value: b("start-"), flags: 2, exptime: 0) == .stored)
        #expect(cache.value("k") == "start-mid-end")
        #expect(cache.get(b("k"))?.flags == 9)
        // The original 100 s expiry still applies: append's exptime 0 did not make it permanent.
        clock.advance(by: 100)
        #expect(cache.get(b("k")) == nil)
    }

    @Test func casOutcomes() {
        let cache = makeCache()
        #expect(cache.store(.cas(1), key: b("k"), value: b("v"), flags: 0, exptime: 0) == .notFound)
        cache.set("k", "v1")
        let unique = cache.get(b("k"))!.cas
        #expect(cache.store(.cas(unique &+ 1000), key: b("k"), value: b("bad"), flags: 0, exptime: 0) == .exists)
        #expect(cache.value("k") == "v1")
        #expect(cache.store(.cas(unique), key: b("k"), value: b("v2"), flags: 3, exptime: 0) == .stored)
        #expect(cache.value("k") == "v2")
        #expect(cache.get(b("k"))?.flags == 3)
        // The unique changed, so the same CAS no longer matches.
        #expect(cache.store(.cas(unique), key: b("k"), value: b("v3"), flags: 0, exptime: 0) == .exists)
    }

    @Test func casOnExpiredItemIsNotFound() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v", exptime: 10)
        let unique = cache.get(b("k"))!.cas
        clock.advance(by: 10)
        #expect(cache.store(.cas(unique), key: b("k"), value: b("w"), flags: 0, exptime: 0) == .notFound)
    }

    @Test func casUniqueChangesOnEveryStoreAndDiffersBetweenKeys() {
        let cache = makeCache()
        var seen = Set<UInt64>()
        cache.set("a", "1")
        seen.insert(cache.get(b("a"))!.cas)
        cache.set("b", "1")
        seen.insert(cache.get(b("b"))!.cas)
        #expect(seen.count == 2)
        cache.set("a", "2")
        seen.insert(cache.get(b("a"))!.cas)
        _ = cache.store(.append, key: b("a"), value: b("x"), flags: 0, exptime: 0)
        seen.insert(cache.get(b("a"))!.cas)
        _ = cache.store(.prepend, key: b("a"), value: b("x"), flags: 0, exptime: 0)
        seen.insert(cache.get(b("a"))!.cas)
        _ = cache.store(.replace, key: b("a"), value: b("5"), flags: 0, exptime: 0)
        seen.insert(cache.get(b("a"))!.cas)
        _ = cache.increment(b("a"), by: 1)
        seen.insert(cache.get(b("a"))!.cas)
        _ = cache.decrement(b("a"), by: 1)
        seen.insert(cache.get(b("a"))!.cas)
        let current = cache.get(b("a"))!.cas
        _ = cache.store(.cas(current), key: b("a"), value: b("z"), flags: 0, exptime: 0)
        seen.insert(cache.get(b("a"))!.cas)
        #expect(seen.count == 9)
        #expect(!seen.contains(0))
    }

    @Test func readsDoNotChangeCAS() {
        let cache = makeCache()
        cache.set("k", "v")
        let first = cache.get(b("k"))!.cas
        _ = cache.touch(b("k"), exptime: 100)
        _ = cache.getAndTouch(b("k"), exptime: 200)
        #expect(cache.get(b("k"))!.cas == first)
    }

    @Test func deleteOutcomes() {
        let cache = makeCache()
        #expect(cache.delete(b("k")) == .notFound)
        cache.set("k", "v")
        #expect(cache.delete(b("k")) == .deleted)
        #expect(cache.get(b("k")) == nil)
        #expect(cache.delete(b("k")) == .notFound)
        #expect(cache.counters().currentItems == 0)
        #expect(cache.counters().bytes == 0)
    }

    @Test func valueLargerThanMaxItemSizeIsTooLarge() {
        let cache = makeCache(maxItemSize: 100)
        #expect(
            cache.store(.set, key: b("k"), value: Array(repeating: 0x61, count: 101), flags: 0, exptime: 0) == .tooLarge
        )
        #expect(
            cache.store(.set, key: b("k"), value: Array(repeating: 0x61, count: 100), flags: 0, exptime: 0) == .stored)
        #expect(
            cache.store(.add, key: b("j"), value: Array(repeating: 0x61, count: 101), flags: 0, exptime: 0) == .tooLarge
        )
    }

    @Test func appendThatWouldPassMaxItemSizeIsTooLarge() {
        let cache = makeCache(maxItemSize: 100)
        #expect(
            cache.store(.set, key: b("k"), value: Array(repeating: 0x61, count: 60), flags: 0, exptime: 0) == .stored)
        #expect(
            cache.store(.append, key: b("k"), value: Array(repeating: 0x62, count: 41), flags: 0, exptime: 0)
                == .tooLarge)
        #expect(
            cache.store(.prepend, key: b("k"), value: Array(repeating: 0x62, count: 40), flags: 0, exptime: 0)
                == .stored)
        #expect(cache.get(b("k"))?.value.count == 100)
    }

    @Test func valueLargerThanShardBudgetIsTooLarge() {
        let cache = makeCache(memoryLimit: 1000, maxItemSize: 4096, shards: 1)
        #expect(
            cache.store(.set, key: b("k"), value: Array(repeating: 0x61, count: 2000), flags: 0, exptime: 0)
                == .tooLarge)
        #expect(cache.counters().currentItems == 0)
    }

    @Test func binarySafeKeysAndValues() {
        let cache = makeCache()
        let value: [UInt8] = [0, 13, 10, 255, 32, 0]
        #expect(cache.store(.set, key: [0xC3, 0xA9], value: value, flags: 0, exptime: 0) == .stored)
        #expect(cache.get([0xC3, 0xA9])?.value == value)
    }
}

@Suite struct ArithmeticTests {
    @Test func incrementAndDecrement() {
        let cache = makeCache()
        cache.set("n", "10")
        #expect(cache.increment(b("n"), by: 5) == .value(15))
        #expect(cache.value("n") == "15")
        #expect(cache.decrement(b("n"), by: 6) == .value(9))
        #expect(cache.value("n") == "9")
        #expect(cache.increment(b("n"), by: 1) == .value(10))
        #expect(cache.value("n") == "10")
    }

    @Test func incrementWrapsAt2To64() {
        let cache = makeCache()
        cache.set("n", "18446744073709551615")
        #expect(cache.increment(b("n"), by: 1) == .value(0))
        #expect(cache.value("n") == "0")
        cache.set("n", "18446744073709551610")
        #expect(cache.increment(b("n"), by: 10) == .value(4))
    }

    @Test func decrementFloorsAtZero() {
        let cache = makeCache()
        cache.set("n", "5")
        #expect(cache.decrement(b("n"), by: 6) == .value(0))
        #expect(cache.value("n") == "0")
        #expect(cache.decrement(b("n"), by: UInt64.max) == .value(0))
    }

    @Test func missingAndNonNumeric() {
        let cache = makeCache()
        #expect(cache.increment(b("none"), by: 1) == .notFound)
        #expect(cache.decrement(b("none"), by: 1) == .notFound)
        for bad in ["abc", "12a", "", "-1", " 1", "18446744073709551616", "1.5"] {
            cache.set("n", bad)
            #expect(cache.increment(b("n"), by: 1) == .nonNumeric, "value \(bad)")
            #expect(cache.decrement(b("n"), by: 1) == .nonNumeric, "value \(bad)")
        }
        #expect(cache.get(b("none")) == nil)
    }

    @Test func trailingSpacesTolerated() {
        let cache = makeCache()
        cache.set("n", "7  ")
        #expect(cache.increment(b("n"), by: 1) == .value(8))
        #expect(cache.value("n") == "8")
    }

    @Test func incrementKeepsFlagsAndExpiry() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("n", "1", flags: 77, exptime: 50)
        #expect(cache.increment(b("n"), by: 1) == .value(2))
        #expect(cache.get(b("n"))?.flags == 77)
        clock.advance(by: 49)
        #expect(cache.value("n") == "2")
        clock.advance(by: 1)
        #expect(cache.increment(b("n"), by: 1) == .notFound)
    }

    @Test func bytesTrackValueLength() {
        let cache = makeCache()
        cache.set("n", "99")
        #expect(cache.counters().bytes == charge(key: 1, value: 2))
        _ = cache.increment(b("n"), by: 1)
        #expect(cache.counters().bytes == charge(key: 1, value: 3))
        _ = cache.decrement(b("n"), by: 100)
        #expect(cache.counters().bytes == charge(key: 1, value: 1))
    }
}
