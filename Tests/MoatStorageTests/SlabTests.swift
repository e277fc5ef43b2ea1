import MoatStorage
import MoatTestSupport
import Testing

/// Slab memory: pages handed between size classes, items larger than a page, the crawler walking
/// pages, and pages kept across `flush_all`.
@Suite struct SlabTests {
    static let pageSize = 1024

    func value(_ count: Int, _ byte: UInt8 = 0x61) -> [UInt8] { Array(repeating: byte, count: count) }

    /// Keys of one length ("k00".."k99") so that items of one value length share a class.
    func key(_ prefix: String, _ index: Int) -> [UInt8] {
        b(prefix + (index < 10 ? "0\(index)" : "\(index)"))
    }

    @Test func classWithNoItemsTakesAPageFromTheClassWithMostPages() throws {
        let cache = makeCache(memoryLimit: 2 * Self.pageSize, maxItemSize: 1024, shards: 1, pageSize: Self.pageSize)
        let small = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 100))
        let big = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 300))
        #expect(small != big)
        let perPage = Self.pageSize / small
        let bigPerPage = Self.pageSize / big
        #expect(bigPerPage >= 2)

        // Two pages of small items spend the whole budget.
        for i in 0..<(2 * perPage) {
            #expect(cache.store(.set, key: key("a", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == 2 * Self.pageSize)
        #expect(cache.counters().evictions == 0)
        // Reading the first page's items makes the second page hold the coldest item.
        for i in 0..<perPage { #expect(cache.get(key("a", i)) != nil) }

        // The big class has no item to evict: the coldest page of the small class is emptied and handed over.
        #expect(cache.store(.set, key: key("b", 0), value: value(300, 0x62), flags: 0, exptime: 0) == .stored)
        #expect(cache.get(key("b", 0))?.value == value(300, 0x62))
        var counters = cache.counters()
        #expect(counters.evictions == UInt64(perPage))
        #expect(counters.evictedUnfetched == UInt64(perPage))
        #expect(counters.mallocedBytes == 2 * Self.pageSize)
        for i in 0..<perPage { #expect(cache.get(key("a", i)) != nil, "a\(i) was recently read") }
        for i in perPage..<(2 * perPage) { #expect(cache.get(key("a", i)) == nil, "a\(i) was on the reclaimed page") }

        // The handed-over page now serves its new class without further evictions...
        for i in 1..<bigPerPage {
            #expect(cache.store(.set, key: key("b", i), value: value(300), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().evictions == UInt64(perPage))
        // ...and once full, that class evicts its own least recently used item, not the other class's.
        #expect(cache.store(.set, key: key("b", bigPerPage), value: value(300), flags: 0, exptime: 0) == .stored)
        counters = cache.counters()
        #expect(counters.evictions == UInt64(perPage) + 1)
        #expect(cache.get(key("b", 0)) == nil)
        for i in 0..<perPage { #expect(cache.get(key("a", i)) != nil) }
        #expect(counters.currentItems == perPage + bigPerPage)
        #expect(counters.mallocedBytes == 2 * Self.pageSize)
    }

    @Test func noRebalancingWithoutEvictions() throws {
        let cache = makeCache(
            memoryLimit: 2 * Self.pageSize, maxItemSize: 1024, evictions: false, shards: 1, pageSize: Self.pageSize)
        let small = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 100))
        let perPage = Self.pageSize / small
        for i in 0..<(2 * perPage) {
            #expect(cache.store(.set, key: key("a", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.store(.set, key: key("b", 0), value: value(300), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.counters().evictions == 0)
        #expect(cache.counters().currentItems == 2 * perPage)
    }

    @Test func itemLargerThanAPageIsStoredAndChargedWithinBudget() throws {
        let limit = 4 * Self.pageSize
        let cache = makeCache(memoryLimit: limit, maxItemSize: 4096, shards: 1, pageSize: Self.pageSize)
        #expect(cache.configuration.chunkSize(keyCount: 3, valueCount: 1500) == nil)
        let bigValue = (0..<1500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bigCharge = (charge(key: 3, value: 1500) + 63) / 64 * 64

        // Alone: charged its size rounded up to 64 bytes.
        #expect(cache.store(.set, key: b("big"), value: bigValue, flags: 5, exptime: 0) == .stored)
        #expect(cache.counters().mallocedBytes == bigCharge)
        #expect(cache.counters().bytes == charge(key: 3, value: 1500))
        #expect(cache.get(b("big"))?.value == bigValue)
        #expect(cache.get(b("big"))?.flags == 5)
        #expect(cache.delete(b("big")) == .deleted)
        #expect(cache.counters().mallocedBytes == 0)

        // Four pages of small items spend the budget; the large item empties the two coldest pages.
        let small = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 100))
        let perPage = Self.pageSize / small
        for i in 0..<(4 * perPage) {
            #expect(cache.store(.set, key: key("k", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == limit)
        #expect(cache.store(.set, key: b("big"), value: bigValue, flags: 0, exptime: 0) == .stored)
        var counters = cache.counters()
        #expect(counters.evictions == UInt64(2 * perPage))
        #expect(counters.mallocedBytes == 2 * Self.pageSize + bigCharge)
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes == 2 * perPage * charge(key: 3, value: 100) + charge(key: 3, value: 1500))
        #expect(cache.get(b("big"))?.value == bigValue)
        for i in 0..<(2 * perPage) { #expect(cache.get(key("k", i)) == nil) }
        for i in (2 * perPage)..<(4 * perPage) { #expect(cache.get(key("k", i)) != nil) }

        // A second large item that does not fit beside it: memory stays within the budget.
        let otherValue = value(2000, 0x7A)
        #expect(cache.store(.set, key: b("big2"), value: otherValue, flags: 0, exptime: 0) == .stored)
        #expect(cache.get(b("big2"))?.value == otherValue)
        counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes <= counters.mallocedBytes)

        // A class with no items needs a page and the budget is spent: the large item gives way.
        #expect(cache.store(.set, key: b("t00"), value: value(300), flags: 0, exptime: 0) == .stored)
        #expect(cache.get(b("big2")) == nil)
        #expect(cache.get(b("t00"))?.value == value(300))
        counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.bytes <= counters.mallocedBytes)
    }

    @Test func largeItemThatFitsOnlyBeforeRoundingIsTooLarge() {
        // A budget that is not a multiple of 64: an item whose size fits but whose rounded charge does not.
        let limit = 4 * Self.pageSize - 40
        let cache = makeCache(memoryLimit: limit, maxItemSize: 8192, shards: 1, pageSize: Self.pageSize)
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
        let limit = 4 * Self.pageSize
        let cache = makeCache(
            memoryLimit: limit, maxItemSize: 4096, evictions: false, shards: 1, pageSize: Self.pageSize)
        #expect(cache.store(.set, key: b("b1"), value: value(1500), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("b2"), value: value(1500), flags: 0, exptime: 0) == .stored)
        #expect(cache.store(.set, key: b("b3"), value: value(1500), flags: 0, exptime: 0) == .noMemory)
        #expect(cache.counters().evictions == 0)
        #expect(cache.get(b("b1"))?.value.count == 1500)
        #expect(cache.get(b("b2"))?.value.count == 1500)
        #expect(cache.counters().mallocedBytes <= limit)
    }

    @Test func crawlerReclaimsExpiredItemsAcrossPages() throws {
        let clock = ManualClock()
        let cache = makeCache(
            memoryLimit: 64 * 1024, maxItemSize: 1024, shards: 1, pageSize: Self.pageSize, clock: clock)
        let small = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 100))
        let big = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 300))
        // Items of two classes spread over many pages; every other small item and every big one expire.
        for i in 0..<60 {
            cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: i % 2 == 0 ? 10 : 0)
        }
        for i in 0..<10 { cache.store(.set, key: key("t", i), value: value(300), flags: 0, exptime: 10) }
        let pages =
            (60 + Self.pageSize / small - 1) / (Self.pageSize / small) + (10 + Self.pageSize / big - 1)
            / (Self.pageSize / big)
        #expect(pages >= 10)
        let malloced = cache.counters().mallocedBytes
        #expect(malloced == pages * Self.pageSize)
        #expect(cache.reclaimExpired() == 0)

        clock.advance(by: 10)
        // A bounded walk, smaller than a page, resumes where it stopped until all pages were seen.
        var total = 0
        for _ in 0..<40 {
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
        for i in stride(from: 1, to: 60, by: 2) { #expect(cache.get(key("s", i)) != nil) }
        #expect(cache.reclaimExpired() == 0)

        // The freed chunks are reused: new items take no new pages.
        for i in 0..<30 {
            #expect(cache.store(.set, key: key("u", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        for i in 0..<10 {
            #expect(cache.store(.set, key: key("v", i), value: value(300), flags: 0, exptime: 0) == .stored)
        }
        counters = cache.counters()
        #expect(counters.mallocedBytes == malloced)
        #expect(counters.currentItems == 70)
    }

    @Test func flushKeepsPagesForReuse() throws {
        let limit = 8 * Self.pageSize
        let cache = makeCache(memoryLimit: limit, maxItemSize: 4096, shards: 1, pageSize: Self.pageSize)
        let small = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 100))
        let big = try #require(cache.configuration.chunkSize(keyCount: 3, valueCount: 300))
        // Fill the budget (with evictions) with small items, plus a large item that gives way.
        cache.store(.set, key: b("big"), value: value(1500), flags: 0, exptime: 0)
        for i in 0..<100 { cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: 0) }
        var counters = cache.counters()
        #expect(counters.mallocedBytes <= limit)
        #expect(counters.mallocedBytes > limit - 2 * Self.pageSize)
        #expect(counters.evictions > 0)
        let evictions = counters.evictions

        cache.flushAll(delay: 0)
        counters = cache.counters()
        #expect(counters.currentItems == 0)
        #expect(counters.bytes == 0)
        #expect(counters.mallocedBytes <= limit)
        let afterFlush = counters.mallocedBytes
        #expect(afterFlush % Self.pageSize == 0)  // only pages remain; large items are freed
        for i in 0..<100 { #expect(cache.get(key("s", i)) == nil) }

        // The kept pages serve any class: a different class fills them without evicting anything.
        let bigPerPage = Self.pageSize / big
        let pages = afterFlush / Self.pageSize
        for i in 0..<(pages * bigPerPage) {
            #expect(cache.store(.set, key: key("t", i), value: value(300), flags: 0, exptime: 0) == .stored)
            #expect(cache.counters().mallocedBytes == afterFlush)
        }
        counters = cache.counters()
        #expect(counters.evictions == evictions)
        #expect(counters.currentItems == pages * bigPerPage)
        for i in 0..<(pages * bigPerPage) { #expect(cache.get(key("t", i))?.value == value(300)) }

        // Flushing again and storing the first class again: still no growth and no evictions.
        cache.flushAll(delay: 0)
        let perPage = Self.pageSize / small
        for i in 0..<(pages * perPage) {
            #expect(cache.store(.set, key: key("s", i), value: value(100), flags: 0, exptime: 0) == .stored)
        }
        counters = cache.counters()
        #expect(counters.mallocedBytes == afterFlush)
        #expect(counters.evictions == evictions)
        #expect(counters.currentItems == pages * perPage)
    }
}

@Suite struct SlabEdgeTests {
    @Test(arguments: [1000, 1100, 312, 4100])
    func oddPageSizesStoreEverySize(pageSize: Int) {
        let cache = makeCache(memoryLimit: 8 * pageSize, maxItemSize: 2 * pageSize, shards: 1, pageSize: pageSize)
        for length in stride(from: 0, through: 2 * pageSize - 60, by: 7) {
            let key = b("k\(length)")
            let value = Array(repeating: UInt8(truncatingIfNeeded: length), count: length)
            #expect(cache.store(.set, key: key, value: value, flags: UInt32(length), exptime: 0) == .stored)
            #expect(cache.get(key)?.value == value)
            #expect(cache.get(key)?.flags == UInt32(length))
            #expect(cache.counters().mallocedBytes <= 8 * pageSize)
        }
    }

    /// Growing a counter into a class with no items when the class with the most pages holds only the
    /// counter's own page: another class's page is taken.
    @Test func counterGrowthTakesAPageFromAClassOtherThanItsOwn() throws {
        let pageSize = 1024
        let cache = makeCache(memoryLimit: 2 * pageSize, maxItemSize: 1024, shards: 1, pageSize: pageSize)
        let config = cache.configuration
        // A 6-byte key: "99" is in the first class, "100" in the next one.
        #expect(config.chunkSize(keyCount: 6, valueCount: 2) != config.chunkSize(keyCount: 6, valueCount: 3))
        cache.set("count1", "99")
        // One page of another class: the budget is spent with one page each.
        let other = try #require(config.chunkSize(keyCount: 3, valueCount: 100))
        for i in 0..<(pageSize / other) {
            #expect(
                cache.store(
                    .set, key: b("o\(i < 10 ? "0" : "")\(i)"), value: Array(repeating: 1, count: 100), flags: 0,
                    exptime: 0) == .stored)
        }
        #expect(cache.counters().mallocedBytes == 2 * pageSize)
        #expect(cache.increment(b("count1"), by: 1) == .value(100))
        #expect(cache.value("count1") == "100")
        #expect(cache.counters().mallocedBytes <= 2 * pageSize)
    }
}
