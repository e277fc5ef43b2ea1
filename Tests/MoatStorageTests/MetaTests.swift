import MoatStorage
import MoatTestSupport
import Testing

/// The storage side of the meta commands.
@Suite struct MetaStorageTests {
    struct Seen: Equatable {
        var value: String, ttl: Int64, idle: Int64, fetchedBefore: Bool, stale: Bool, tokenSentBefore: Bool, won: Bool
    }

    func metaGet(_ cache: Cache, _ key: String, _ configure: (inout LookupOptions) -> Void = { _ in }) -> Seen? {
        var options = LookupOptions()
        options.grantsTokens = true
        configure(&options)
        return b(key).withUnsafeBytes { k in
            cache.lookup(k, options) {
                Seen(
                    value: String(decoding: $0.value, as: UTF8.self), ttl: $0.ttl, idle: $0.idle,
                    fetchedBefore: $0.fetchedBefore,
                    stale: $0.stale, tokenSentBefore: $0.tokenSentBefore, won: $0.won)
            }
        }
    }

    func debug(_ cache: Cache, _ key: String) -> ItemInfo? { b(key).withUnsafeBytes { cache.inspect($0) } }

    @Test func hitBeforeAndIdleDescribeTheItemBeforeTheRequest() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v", exptime: 100)
        clock.advance(by: 7)
        #expect(
            metaGet(cache, "k")
                == Seen(
                    value: "v", ttl: 93, idle: 7, fetchedBefore: false, stale: false, tokenSentBefore: false, won: false
                ))
        clock.advance(by: 2)
        #expect(metaGet(cache, "k")?.idle == 2)
        #expect(metaGet(cache, "k")?.fetchedBefore == true)
    }

    @Test func noBumpLeavesHitAndAccessTimeAlone() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v")
        clock.advance(by: 5)
        #expect(metaGet(cache, "k") { $0.bump = false }?.fetchedBefore == false)
        #expect(debug(cache, "k")?.fetched == false)
        #expect(debug(cache, "k")?.idle == 5)
        #expect(debug(cache, "k")?.ttl == -1)
    }

    @Test func vivifyCreatesAnEmptyItemAndOneWinner() {
        let cache = makeCache()
        let first = metaGet(cache, "k") { $0.vivifyExptime = 30 }
        #expect(first?.won == true && first?.value == "" && first?.ttl == 30)
        let second = metaGet(cache, "k") { $0.vivifyExptime = 30 }
        #expect(second?.won == false && second?.tokenSentBefore == true)
    }

    @Test func recacheWinsOnceWhenTheTTLIsLow() {
        let cache = makeCache()
        cache.set("k", "v", exptime: 100)
        #expect(metaGet(cache, "k") { $0.recacheExptime = 30 }?.won == false)
        #expect(metaGet(cache, "k") { $0.recacheExptime = 200 }?.won == true)
        #expect(metaGet(cache, "k") { $0.recacheExptime = 200 }?.tokenSentBefore == true)
    }

    @Test func invalidatedItemIsStaleAndItsFirstReaderWins() {
        let cache = makeCache()
        cache.set("k", "v", exptime: 100)
        let before = cache.get(b("k"))!.cas
        let outcome = b("k").withUnsafeBytes {
            cache.delete($0, compareCAS: nil, invalidate: true, removeValue: false, newExptime: 30, newCAS: 0)
        }
        #expect(outcome == .deleted)
        #expect(cache.get(b("k"))!.cas != before)
        let first = metaGet(cache, "k")
        #expect(first?.stale == true && first?.won == true && first?.ttl == 30)
        #expect(metaGet(cache, "k")?.tokenSentBefore == true)
    }

    @Test func aLookupThatGrantsNoTokensLeavesThemForTheNextMetaReader() {
        let cache = makeCache()
        cache.set("k", "v", exptime: 100)
        _ = b("k").withUnsafeBytes {
            cache.delete($0, compareCAS: nil, invalidate: true, removeValue: false, newExptime: nil, newCAS: 0)
        }
        // A classic get (or binary get) cannot tell its client it won: it must not take the token.
        let plain = metaGet(cache, "k") { $0.grantsTokens = false }
        #expect(plain?.stale == true && plain?.won == false)
        let meta = metaGet(cache, "k")
        #expect(meta?.won == true && meta?.tokenSentBefore == false)
    }

    @Test func deleteChecksCASAndCanKeepAnEmptyItem() {
        let cache = makeCache()
        cache.set("k", "value", flags: 9)
        let cas = cache.get(b("k"))!.cas
        b("k").withUnsafeBytes { k in
            #expect(
                cache.delete(
                    k, compareCAS: cas + 1, invalidate: false, removeValue: false, newExptime: nil, newCAS: 0)
                    == .exists)
            #expect(
                cache.delete(k, compareCAS: cas, invalidate: false, removeValue: true, newExptime: nil, newCAS: 77)
                    == .deleted)
        }
        let emptied = cache.get(b("k"))
        #expect(emptied?.value == [] && emptied?.flags == 9 && emptied?.cas == 77)
        b("k").withUnsafeBytes { k in
            #expect(
                cache.delete(k, compareCAS: nil, invalidate: false, removeValue: false, newExptime: nil, newCAS: 0)
                    == .deleted)
            #expect(
                cache.delete(k, compareCAS: nil, invalidate: false, removeValue: false, newExptime: nil, newCAS: 0)
                    == .notFound)
        }
    }

    @Test func storeWithCompareExplicitCASAndInvalidate() {
        let cache = makeCache()
        func store(
            _ mode: StoreMode, _ value: String, compare: UInt64? = nil, newCAS: UInt64 = 0, invalidate: Bool = false
        )
            -> (StoreOutcome, cas: UInt64)
        {
            b("k").withUnsafeBytes { k in
                b(value).withUnsafeBytes { v in
                    cache.store(
                        mode, key: k, value: v, flags: 0, exptime: 0, compareCAS: compare, newCAS: newCAS,
                        invalidate: invalidate)
                }
            }
        }
        #expect(store(.set, "a", compare: 5).0 == .notFound)
        #expect(store(.set, "a", newCAS: 100) == (.stored, 100))
        #expect(store(.set, "b", compare: 99).0 == .exists)
        #expect(store(.append, "x", compare: 99).0 == .exists)
        #expect(store(.add, "x", compare: 99).0 == .notStored)
        // An older CAS with invalidate stores, but stale.
        let stale = store(.set, "old", compare: 50, invalidate: true)
        #expect(stale.0 == .stored && stale.cas != 0)
        #expect(metaGet(cache, "k")?.stale == true)
        #expect(store(.replace, "new", compare: stale.cas).0 == .stored)
        #expect(metaGet(cache, "k")?.stale == false)
    }

    @Test func arithmeticVivifiesChecksCASAndSetsTTL() {
        let cache = makeCache()
        func ma(
            _ delta: UInt64 = 1, increment: Bool = true, compare: UInt64? = nil, newCAS: UInt64 = 0,
            vivify: Int64? = nil,
            initial: UInt64 = 0, touch: Int64? = nil
        ) -> ArithmeticResult {
            b("n").withUnsafeBytes {
                cache.arithmetic(
                    $0, delta: delta, increment: increment, compareCAS: compare, newCAS: newCAS, vivifyExptime: vivify,
                    initial: initial,
                    touchExptime: touch)
            }
        }
        #expect(ma().outcome == .notFound)
        let created = ma(vivify: 60, initial: 9)
        #expect(created.outcome == .created(9) && created.ttl == 60)
        #expect(ma(compare: created.cas + 1).outcome == .exists)
        let next = ma(5, compare: created.cas, newCAS: 1234, touch: 0)
        #expect(next.outcome == .value(14) && next.cas == 1234 && next.ttl == -1)
        #expect(ma(100, increment: false).outcome == .value(0))
        cache.set("n", "text")
        #expect(ma().outcome == .nonNumeric)
    }

    @Test func delayedFlushStillHidesItemsReadBeforeTheDeadline() {
        let clock = ManualClock()
        let cache = makeCache(clock: clock)
        cache.set("k", "v")
        cache.flushAll(delay: 10)
        clock.advance(by: 5)
        #expect(cache.value("k") == "v")  // the read moves the access time, still before the deadline
        clock.advance(by: 6)
        #expect(cache.value("k") == nil)
        cache.set("k", "w")
        #expect(cache.value("k") == "w")
    }
}
