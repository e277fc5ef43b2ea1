import MoatStorage
import MoatTestSupport
import Testing

/// Segment memory: items of every size packed into one log, the eviction pass at the old end of the
/// FIFO (compaction, second chances for items read since the last pass, at most half a segment kept),
/// dead bytes coming back under `-M`, items larger than a segment, the crawler, and segments kept across
/// `flush_all`.
@Suite struct SegmentTests {
    static let segmentSize = 1024

    func value(_ count: Int, _ byte: UInt8 = 0x61) -> [UInt8] { Array(repeating: byte, count: count) }

    /// Keys of one length ("k00".."k99").
    func key(_ prefix: String, _ index: Int) -> [UInt8] {
        b(prefix + (index < 10 ? "0\(index)" : "\(index)"))
    }

    func cache(segments: Int, evictions: Bool = true, maxItemSize: Int = 1024, clock: ManualClock = ManualClock())
        -> Cache
    {
        makeCache(
            memoryLimit: segments * Self.segmentSize, maxItemSize: maxItemSize, evictions: evictions, shards: 1,
            segmentSize: Self.segmentSize, clock: clock)
    }

    /// 7 items of a 3-byte key and a 100-byte value fill a 1 KiB segment.
    var small: Int { footprint(key: 3, value: 100, segmentSize: Self.segmentSize)! }
    var perSegment: Int { Self.segmentSize / small }

    @Test func itemsOfEverySizeShareASegment() throws {
        let cache = cache(segments: 4)
        #expect(small == 134)  // 30 + 3 + 100, rounded up to an even size
        let big = try #require(footprint(key: 3, value: 300, segmentSize: Self.segmentSize))
        #expect(2 * small + 2 * big <= Self.segmentSize)
        for i in 0..<2 {
            #expect(cache.store(.set, key: key("a", i), value: value(100), flags: 0, exptime: 0) == .stored)
            #expect(cache.store(.set, key: key("b", i), value: value(300), flags: 0, exptime: 0) == .stored)
        }
        let counters = cache.counters()
        #expect(counters.mallocedBytes == Self.segmentSize)
        #expect(counters.bytes == 2 * charge(key: 3, value: 100) + 2 * charge(key: 3, value: 300))
        for i in 0..<2 {
            #expect(cache.get(key("a", i))?.value == value(100))
            #expect(cache.get(key("b", i))?.value == value(300))
        }
    }

    @Test func itemsReadSinceTheLastPassGetASecondChance() {
        let cache = cache(segments: 2)
        #expect(perSegment == 7)
        for i in 0..<(2 * perSegment) {
            #expect(cache.store(.set, key: key("k", i), value: value(100, UInt8(i)), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == 2 * Self.segmentSize)
        // Three items of the oldest segment are read; the pass over it keeps them and evicts its other four.
        for i in 0..<3 { #expect(cache.get(key("k", i)) != nil) }
        #expect(cache.store(.set, key: b("n00"), value: value(100), flags: 0, exptime: 0) == .stored)
        let counters = cache.counters()
        #expect(counters.evictions == 4)
        #expect(counters.evictedUnfetched == 4)
        #expect(counters.mallocedBytes == 2 * Self.segmentSize)
        // The kept items slid to the segment's start: each still reads back its own value.
        for i in 0..<3 { #expect(cache.get(key("k", i))?.value == value(100, UInt8(i)), "k\(i) was read") }
        for i in 3..<perSegment { #expect(cache.get(key("k", i)) == nil, "k\(i) was not read") }
        for i in perSegment..<(2 * perSegment) { #expect(cache.get(key("k", i))?.value == value(100, UInt8(i))) }
        #expect(cache.get(b("n00")) != nil)
    }

    @Test func aPassKeepsAtMostHalfASegment() {
        let cache = cache(segments: 2)
        for i in 0..<(2 * perSegment) {
            cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0)
        }
        // Every item of the oldest segment was read: only the first three (408 of 1024 bytes) stay, so
        // that the pass frees room for more than one new item.
        for i in 0..<perSegment { #expect(cache.get(key("k", i)) != nil) }
        #expect(cache.store(.set, key: b("n00"), value: value(100), flags: 0, exptime: 0) == .stored)
        #expect(cache.counters().evictions == 4)
        #expect(cache.counters().evictedUnfetched == 0)
        for i in 0..<3 { #expect(cache.get(key("k", i)) != nil) }
        for i in 3..<perSegment { #expect(cache.get(key("k", i)) == nil) }
        // The pass took their one use: the next pass over that segment evicts them unless read again.
        for i in 0..<4 { cache.store(.set, key: key("m", i), value: value(100), flags: 0, exptime: 0) }
        #expect(cache.counters().currentItems <= 2 * perSegment)
        #expect(cache.counters().mallocedBytes == 2 * Self.segmentSize)
    }

    /// An item read three times survives three passes without being read again; one read once, one.
    @Test func itemsReadOftenSurviveMorePasses() {
        let size = footprint(key: 3, value: 100)!
        let cache = makeCache(memoryLimit: 7 * size, maxItemSize: 1024, shards: 1, segmentSize: 7 * size)
        var stored = 0
        func storeNew() {
            cache.store(.set, key: key("n", stored), value: value(100), flags: 0, exptime: 0)
            stored += 1
        }
        func present(_ name: String) -> Bool { b(name).withUnsafeBytes { cache.inspect($0) } != nil }
        for i in 0..<7 { cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0) }
        for _ in 0..<3 { _ = cache.get(key("k", 0)) }
        _ = cache.get(key("k", 1))
        // Each pass over the one segment happens when it is full; `inspect` (`me`) reads without a use.
        var passes = 0
        var evictions = cache.counters().evictions
        var k1Gone = 0
        var k0Gone = 0
        while passes < 6 {
            storeNew()
            if cache.counters().evictions != evictions {
                passes += 1
                evictions = cache.counters().evictions
                if k1Gone == 0, !present("k01") { k1Gone = passes }
                if k0Gone == 0, !present("k00") { k0Gone = passes }
            }
        }
        #expect(k1Gone == 2)
        #expect(k0Gone == 4)
    }

    @Test func deadBytesComeBackWithoutEvictions() {
        let cache = cache(segments: 2, evictions: false)
        for i in 0..<(2 * perSegment) {
            #expect(cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.store(.set, key: b("n00"), value: value(100), flags: 0, exptime: 0) == .noMemory)
        // Deleted and replaced items leave dead bytes; compacting their segment gives them back.
        #expect(cache.delete(key("k", 1)) == .deleted)
        #expect(cache.store(.set, key: key("k", 3), value: value(100, 0x62), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("n00"), value: value(100), flags: 0, exptime: 0) == .stored)
        let counters = cache.counters()
        #expect(counters.evictions == 0)
        #expect(counters.currentItems == 2 * perSegment)
        #expect(counters.mallocedBytes == 2 * Self.segmentSize)
        for i in 0..<(2 * perSegment) where i != 1 { #expect(cache.get(key("k", i)) != nil, "k\(i) is live") }
        #expect(cache.get(key("k", 3))?.value == value(100, 0x62))
        #expect(cache.store(.set, key: b("n01"), value: value(100), flags: 0, exptime: 0) == .noMemory)
    }

    @Test func aSegmentWhoseItemsAllGoIsReusedAtOnce() {
        let cache = cache(segments: 2, evictions: false)
        for i in 0..<(2 * perSegment) {
            cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0)
        }
        for i in 0..<perSegment { #expect(cache.delete(key("k", i)) == .deleted) }
        for i in 0..<perSegment {
            #expect(cache.store(.set, key: key("n", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == 2 * Self.segmentSize)
        #expect(cache.counters().currentItems == 2 * perSegment)
    }

    @Test func anItemBeingAppendedToStaysWhenItsSegmentIsCompacted() {
        let cache = cache(segments: 2)
        cache.set("f00", "unread")
        cache.set("f01", "unread")
        cache.set("app", "start")
        #expect(cache.value("app") == "start")
        for i in 0..<(2 * perSegment - 3) {
            cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0)
        }
        // Appending needs room; the pass over the oldest segment moves "app" to its start meanwhile.
        for round in 0..<20 {
            #expect(cache.store(.append, key: b("app"), value: b(String(round % 10)), flags: 0, exptime: 0) == .stored)
            for i in 0..<3 { cache.store(.set, key: key("z", round * 3 + i), value: value(100), flags: 0, exptime: 0) }
        }
        #expect(cache.value("app") == "start" + (0..<20).map { String($0 % 10) }.joined())
        #expect(cache.counters().mallocedBytes <= 2 * Self.segmentSize)
    }

    @Test func itemLargerThanASegmentIsStoredAndChargedWithinBudget() {
        let limit = 4 * Self.segmentSize
        let cache = cache(segments: 4, maxItemSize: 4096)
        #expect(cache.configuration.footprint(keyCount: 3, valueCount: 1500) == nil)
        let bigValue = (0..<1500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bigCharge = (charge(key: 3, value: 1500) + 63) / 64 * 64

        // Alone: charged its size rounded up to 64 bytes, and freed when deleted.
        #expect(cache.store(.set, key: b("big"), value: bigValue, flags: 5, exptime: 0) == .stored)
        #expect(cache.counters().mallocedBytes == bigCharge)
        #expect(cache.counters().bytes == charge(key: 3, value: 1500))
        #expect(cache.get(b("big"))?.value == bigValue)
        #expect(cache.get(b("big"))?.flags == 5)
        #expect(cache.delete(b("big")) == .deleted)
        #expect(cache.counters().mallocedBytes == 0)

        // Four segments of small items spend the budget; the large item empties the two oldest.
        for i in 0..<(4 * perSegment) {
            #expect(cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == limit)
        #expect(cache.store(.set, key: b("big"), value: bigValue, flags: 0, exptime: 0) == .stored)
        var counters = cache.counters()
        #expect(counters.evictions == UInt64(2 * perSegment))
        #expect(counters.mallocedBytes == 2 * Self.segmentSize + bigCharge)
        #expect(counters.bytes == 2 * perSegment * charge(key: 3, value: 100) + charge(key: 3, value: 1500))
        #expect(cache.get(b("big"))?.value == bigValue)
        for i in 0..<(2 * perSegment) { #expect(cache.get(key("k", i)) == nil) }
        for i in (2 * perSegment)..<(4 * perSegment) { #expect(cache.get(key("k", i)) != nil) }

        // A second large item that does not fit beside the first: memory stays within the budget.
        let otherValue = value(2000, 0x7A)
        #expect(cache.store(.set, key: b("big2"), value: otherValue, flags: 0, exptime: 0) == .stored)
        #expect(cache.get(b("big2"))?.value == otherValue)
        #expect(cache.get(b("big"))?.value == bigValue)
        counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes <= counters.mallocedBytes)

        // A small item needs a segment: both large items were read, "big" twice and "big2" once, so the
        // passes take a use off each until "big2" has none left, and it goes.
        #expect(cache.store(.set, key: b("t00"), value: value(300), flags: 0, exptime: 0) == .stored)
        #expect(cache.get(b("big2")) == nil)
        #expect(cache.get(b("big"))?.value == bigValue)
        #expect(cache.get(b("t00"))?.value == value(300))
        counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes <= counters.mallocedBytes)
    }

    @Test func largeItemThatFitsOnlyBeforeRoundingIsTooLarge() {
        // A budget that is not a multiple of 64: an item whose size fits but whose rounded charge does not.
        let limit = 4 * Self.segmentSize - 40
        let cache = makeCache(
            memoryLimit: limit, maxItemSize: 8192, shards: 1, segmentSize: Self.segmentSize)
        cache.set("keep", "v")
        let valueCount = limit - charge(key: 3, value: 0) - 10
        #expect(charge(key: 3, value: valueCount) <= limit)
        #expect((charge(key: 3, value: valueCount) + 63) / 64 * 64 > limit)
        #expect(cache.store(.set, key: b("big"), value: value(valueCount), flags: 0, exptime: 0) == .tooLarge)
        #expect(cache.value("keep") == "v")
        #expect(cache.counters().evictions == 0)
        // The largest item whose charge fits is stored.
        let fitting = limit / 64 * 64 - charge(key: 3, value: 0)
        #expect(cache.store(.set, key: b("big"), value: value(fitting), flags: 0, exptime: 0) == .stored)
        #expect(cache.counters().mallocedBytes <= limit)
    }

    @Test func largeItemsWithoutEvictionsRefuseWhenFull() {
        let cache = cache(segments: 4, evictions: false, maxItemSize: 4096)
        #expect(cache.store(.set, key: b("b1"), value: value(1500), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("b2"), value: value(1500), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("b3"), value: value(1500), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.store(.set, key: b("s00"), value: value(100), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("b3"), value: value(1500), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.counters().evictions == 0)
        #expect(cache.get(b("b1"))?.value.count == 1500)
        #expect(cache.get(b("b2"))?.value.count == 1500)
        #expect(cache.counters().mallocedBytes <= 4 * Self.segmentSize)
    }

    @Test func crawlerReclaimsExpiredItemsAcrossSegments() {
        let clock = ManualClock()
        let cache = makeCache(
            memoryLimit: 64 * 1024, maxItemSize: 1024, shards: 1, segmentSize: Self.segmentSize, clock: clock)
        // Items of two sizes over many segments; every other small item and every big one expire.
        for i in 0..<60 {
            cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: i % 2 == 0 ? 10 : 0)
        }
        for i in 0..<10 { cache.store(.set, key: key("t", i), value: value(300), flags: 0, exptime: 10) }
        let malloced = cache.counters().mallocedBytes
        #expect(malloced >= 10 * Self.segmentSize)
        #expect(cache.reclaimExpired() == 0)

        clock.advance(by: 10)
        // A bounded walk, smaller than a segment, resumes where it stopped until all segments were seen.
        var total = 0
        for _ in 0..<60 {
            let got = cache.reclaimExpired(perShardLimit: 3)
            #expect(got <= 3)
            total += got
        }
        #expect(total == 40)
        var counters = cache.counters()
        #expect(counters.crawlerReclaimed == 40)
        #expect(counters.reclaimed == 40)
        #expect(counters.expiredUnfetched == 40)
        #expect(counters.evictions == 0)
        #expect(counters.currentItems == 30)
        #expect(counters.bytes == 30 * charge(key: 3, value: 100))
        #expect(counters.mallocedBytes == malloced)
        for i in stride(from: 1, to: 60, by: 2) { #expect(cache.get(key("s", i)) != nil) }
        #expect(cache.reclaimExpired() == 0)

        // Segments the crawler emptied are reused before new ones are taken.
        for i in 0..<9 {
            #expect(cache.store(.set, key: key("v", i), value: value(300), flags: 0, exptime: 0) == .stored)
        }
        counters = cache.counters()
        #expect(counters.mallocedBytes <= malloced + Self.segmentSize)
        #expect(counters.currentItems == 39)
    }

    @Test func flushKeepsSegmentsForReuse() throws {
        let limit = 8 * Self.segmentSize
        let cache = cache(segments: 8, maxItemSize: 4096)
        let big = try #require(footprint(key: 3, value: 300, segmentSize: Self.segmentSize))
        // Fill the budget (with evictions) with small items, plus a large item that gives way.
        cache.store(.set, key: b("big"), value: value(1500), flags: 0, exptime: 0)
        for i in 0..<100 { cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: 0) }
        var counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.mallocedBytes > limit - 2 * Self.segmentSize)
        #expect(counters.evictions > 0)
        let evictions = counters.evictions

        cache.flushAll(delay: 0)
        counters = cache.counters()
        #expect(counters.currentItems == 0)
        #expect(counters.bytes == 0)
        let afterFlush = counters.mallocedBytes
        #expect(afterFlush % Self.segmentSize == 0)  // only segments remain; large items are freed
        #expect(afterFlush >= 6 * Self.segmentSize)
        for i in 0..<100 { #expect(cache.get(key("s", i)) == nil) }

        // The kept segments take items of another size without growing or evicting.
        let segments = afterFlush / Self.segmentSize
        let bigPerSegment = Self.segmentSize / big
        for i in 0..<(segments * bigPerSegment) {
            #expect(cache.store(.set, key: key("t", i), value: value(300), flags: 0, exptime: 0) == .stored)
            #expect(cache.counters().mallocedBytes == afterFlush)
        }
        counters = cache.counters()
        #expect(counters.evictions == evictions)
        #expect(counters.currentItems == segments * bigPerSegment)
        for i in 0..<(segments * bigPerSegment) { #expect(cache.get(key("t", i))?.value == value(300)) }

        cache.flushAll(delay: 0)
        for i in 0..<(segments * perSegment) {
            #expect(cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        counters = cache.counters()
        #expect(counters.mallocedBytes == afterFlush)
        #expect(counters.evictions == evictions)
        #expect(counters.currentItems == segments * perSegment)
    }
}

@Suite struct SegmentEdgeTests {
    @Test(arguments: [1000, 1100, 312, 4100])
    func oddSegmentSizesStoreEverySize(segmentSize: Int) {
        let cache = makeCache(
            memoryLimit: 8 * segmentSize, maxItemSize: 2 * segmentSize, shards: 1, segmentSize: segmentSize)
        for length in stride(from: 0, through: 2 * segmentSize - 60, by: 7) {
            let key = b("k\(length)")
            let value = Array(repeating: UInt8(truncatingIfNeeded: length), count: length)
            #expect(cache.store(.set, key: key, value: value, flags: UInt32(length), exptime: 0) == .stored)
            #expect(cache.get(key)?.value == value)
            #expect(cache.get(key)?.flags == UInt32(length))
            #expect(cache.counters().mallocedBytes <= 8 * segmentSize)
        }
    }

    /// Growing a counter by a digit when memory is spent: the counter is kept (and may move) while room
    /// is made for its longer copy.
    @Test func counterGrowthWhenMemoryIsSpent() {
        let segmentSize = 1024
        let cache = makeCache(memoryLimit: 2 * segmentSize, maxItemSize: 1024, shards: 1, segmentSize: segmentSize)
        cache.set("o00", "x")
        cache.set("count1", "99")
        for i in 1..<14 {
            #expect(
                cache.store(
                    .set, key: b("o\(i < 10 ? "0" : "")\(i)"), value: Array(repeating: 1, count: 100), flags: 0,
                    exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == 2 * segmentSize)
        #expect(cache.increment(b("count1"), by: 1) == .value(100))
        #expect(cache.value("count1") == "100")
        #expect(cache.counters().mallocedBytes <= 2 * segmentSize)
    }
}
