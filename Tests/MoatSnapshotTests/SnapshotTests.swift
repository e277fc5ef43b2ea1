import Foundation
import MoatSnapshot
import MoatStorage
import MoatTestSupport
import Testing

/// Snapshots written and read back through real files: round trips, refusals, and that a refused
/// file leaves nothing behind.
@Suite struct SnapshotTests {
    let directory: String
    let clock = ManualClock(1_700_000_000)

    init() throws {
        var template = Array("/tmp/moat-snapshot-XXXXXX".utf8CString)
        directory = String(cString: try #require(mkdtemp(&template)))
    }

    var path: String { directory + "/cache.snapshot" }

    func cache(memoryLimit: Int = 64 << 20, shards: Int? = nil) -> Cache {
        Cache(configuration: CacheConfiguration(memoryLimit: memoryLimit, shardCount: shards), clock: clock)
    }

    func set(_ cache: Cache, _ key: String, _ value: String, flags: UInt32 = 0, exptime: Int64 = 0) {
        _ = cache.store(.set, key: b(key), value: b(value), flags: flags, exptime: exptime)
    }

    func value(_ cache: Cache, _ key: String) -> String? {
        cache.get(b(key)).map { String(decoding: $0.value, as: UTF8.self) }
    }

    func write(_ buckets: [(name: String, cache: Cache)], key: SnapshotKey? = nil) throws -> SnapshotSummary {
        try SnapshotWriter.write(buckets, to: path, key: key, now: clock.now())
    }

    func restore(
        _ buckets: [String: Cache], key: SnapshotKey? = nil, maxAge: Int64 = 300
    ) throws(SnapshotError) -> RestoreSummary? {
        try SnapshotReader.restore(from: path, key: key, maxAge: maxAge, now: clock.now()) { buckets[$0] }
    }

    func fileBytes() throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    func replaceFile(_ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    static let key = try! SnapshotKey(bytes: Array(repeating: 0x42, count: 32))

    @Test func itemsOfEveryBucketComeBackWithFlagsCASAndExpiry() throws {
        let first = cache()
        let blog = cache(memoryLimit: 32 << 20)
        set(first, "k1", "v1", flags: 7, exptime: 600)
        // Two values of 900 KB: a record spans the first chunk's end.
        set(first, "k2", String(repeating: "x", count: 900_000))
        set(first, "k3", String(repeating: "y", count: 900_000))
        set(blog, "k1", "blog's own")
        let cas = first.get(b("k1"))!.cas
        let written = try write([("default", first), ("blog", blog)])
        #expect(written.items == 4)
        #expect(written.bytes == (try fileBytes()).count)
        clock.advance(by: 60)
        // Another layout: other shard counts, another epoch.
        let (again, blogAgain) = (cache(shards: 2), cache(memoryLimit: 32 << 20, shards: 1))
        let summary = try #require(try restore(["default": again, "blog": blogAgain]))
        #expect(summary.restored == 4 && summary.dropped == 0 && summary.created == 1_700_000_000)
        #expect(value(again, "k1") == "v1" && again.get(b("k1"))?.flags == 7 && again.get(b("k1"))?.cas == cas)
        #expect(value(again, "k2")?.count == 900_000 && value(again, "k3") == String(repeating: "y", count: 900_000))
        #expect(value(blogAgain, "k1") == "blog's own")
        // New CAS uniques never meet a restored one.
        set(again, "new", "v")
        #expect(again.get(b("new"))!.cas > cas)
        clock.advance(by: 541)
        #expect(value(again, "k1") == nil)  // 600 s after it was stored, as it would have
    }

    @Test func theFileIsPrivateAndReplacedWhole() throws {
        set(cache(), "unused", "x")
        let first = cache()
        set(first, "a", "1")
        _ = try write([("default", first)])
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600)
        set(first, "b", "2")
        _ = try write([("default", first)])
        #expect(access(path + ".tmp", F_OK) != 0)
        let again = cache()
        #expect(try restore(["default": again])?.restored == 2)
    }

    /// A crash while saving leaves a partial `.tmp` beside the previous snapshot: the next start reads
    /// the previous one, and the next save replaces the leftover rather than failing on it.
    @Test func aCrashWhileSavingLeavesThePreviousSnapshot() throws {
        let first = cache()
        set(first, "a", "1")
        _ = try write([("default", first)])
        let partial = Array((try fileBytes()).prefix(40))
        try Data(partial).write(to: URL(fileURLWithPath: path + ".tmp"))
        #expect(try restore(["default": cache()])?.restored == 1)
        set(first, "b", "2")
        _ = try write([("default", first)])
        #expect(access(path + ".tmp", F_OK) != 0)
        #expect(try restore(["default": cache()])?.restored == 2)
    }

    @Test func anEncryptedSnapshotHoldsNoValueInTheClear() throws {
        let first = cache()
        set(first, "secret-key", "the-cached-session-token")
        _ = try write([("default", first)], key: Self.key)
        let bytes = try fileBytes()
        for needle in ["the-cached-session-token", "secret-key", "default"] {
            #expect(!bytes.contains(subsequence: b(needle)), "\(needle) in the clear")
        }
        let again = cache()
        #expect(try restore(["default": again], key: Self.key)?.restored == 1)
        #expect(value(again, "secret-key") == "the-cached-session-token")
    }

    @Test func keysMustMatch() throws {
        let first = cache()
        set(first, "k", "v")
        _ = try write([("default", first)], key: Self.key)
        let other = try SnapshotKey(bytes: Array(repeating: 0x43, count: 32))
        #expect(throws: SnapshotError.tampered(chunk: 0)) { try restore(["default": cache()], key: other) }
        #expect(throws: SnapshotError.encryptedWithoutKey) { try restore(["default": cache()]) }
        _ = try write([("default", first)])
        #expect(throws: SnapshotError.notEncrypted) { try restore(["default": cache()], key: Self.key) }
    }

    @Test func anOldSnapshotIsNotRestored() throws {
        let first = cache()
        set(first, "k", "v")
        _ = try write([("default", first)])
        clock.advance(by: 301)
        let again = cache()
        #expect(throws: SnapshotError.tooOld(age: 301, maxAge: 300)) { try restore(["default": again]) }
        #expect(try restore(["default": again], maxAge: 3600)?.restored == 1)
    }

    @Test func noFileIsNoSnapshot() throws {
        #expect(try restore(["default": cache()]) == nil)
    }

    /// Every damaged form of a file is refused, and nothing of it stays in the cache.
    @Test(arguments: [false, true])
    func truncatedCorruptedAndAlteredFilesAreRefusedWhole(encrypted: Bool) throws {
        let key = encrypted ? Self.key : nil
        let first = cache()
        // Three chunks and more: 3000 records of about 1 KB.
        for index in 0..<3000 { set(first, "k\(index)", String(repeating: "v", count: 1000)) }
        _ = try write([("default", first)], key: key)
        let good = try fileBytes()
        var damaged: [(String, [UInt8])] = []
        for cut in [0, 10, 32, 36, 1 << 20, good.count - 40, good.count - 1] {
            damaged.append(("cut at \(cut)", Array(good[..<cut])))
        }
        for offset in [5, 15, 40, 1 << 19, good.count - 20, good.count - 1] {
            var bytes = good
            bytes[offset] ^= 0x01
            damaged.append(("bit flipped at \(offset)", bytes))
        }
        damaged.append(("appended bytes", good + [0]))
        // The first chunk moved after the second (chunk boundaries: the 1 MiB payload and its framing).
        let chunk = 5 + (1 << 20) + (encrypted ? 16 : 32)
        let header = Array(good[..<32])
        let reordered =
            header + Array(good[(32 + chunk)..<(32 + 2 * chunk)]) + Array(good[32..<(32 + chunk)])
            + Array(good[(32 + 2 * chunk)...])
        damaged.append(("chunks reordered", reordered))
        for (what, bytes) in damaged {
            try replaceFile(bytes)
            let again = cache()
            #expect(throws: SnapshotError.self, "\(what)") { try restore(["default": again], key: key) }
            #expect(again.counters().currentItems == 0, "\(what) left items")
        }
        try replaceFile(good)
        #expect(try restore(["default": cache()], key: key)?.restored == 3000)
    }

    @Test func aSmallerCacheKeepsTheMostRecentItems() throws {
        let first = cache()
        for index in 0..<200 {
            set(first, "k\(index)", String(repeating: "v", count: 100_000))
            clock.advance(by: 1)
        }
        _ = try write([("default", first)])
        // Room for fewer than 200 values of 100 KB.
        let small = cache(memoryLimit: 8 << 20, shards: 1)
        let summary = try #require(try restore(["default": small]))
        #expect(summary.restored > 0 && summary.dropped > 0 && summary.restored + summary.dropped == 200)
        #expect(value(small, "k199") != nil && value(small, "k0") == nil)
        #expect(small.counters().evictions == 0)
    }

    @Test func expiredItemsAndUnknownBucketsAreCountedNotRestored() throws {
        let first = cache()
        let gone = cache()
        set(first, "short", "x", exptime: 30)
        set(first, "long", "y", exptime: 3000)
        set(gone, "k", "z")
        _ = try write([("default", first), ("removed", gone)])
        clock.advance(by: 60)
        let again = cache()
        let summary = try #require(try restore(["default": again]))
        #expect(summary.restored == 1 && summary.expired == 1 && summary.unknownBucket == 1)
    }

    /// Records made by hand, sealed with the right checksums (what the fuzzer does): the parser takes
    /// what is well formed and refuses the rest whole.
    @Test func handMadeRecords() throws {
        func bucket(_ name: String, items: UInt64) -> [UInt8] {
            [1, UInt8(name.utf8.count)] + b(name) + Array(repeating: 0, count: 8) + be(items)
        }
        func item(_ bucket: UInt16, _ key: String, _ value: String, cas: UInt64) -> [UInt8] {
            [2] + be(bucket) + [UInt8(key.utf8.count)] + be(UInt32(value.utf8.count)) + be(UInt32(3)) + be(cas)
                + be(UInt64(0)) + be(UInt64(clock.now() - 5)) + [1] + b(key) + b(value)
        }
        func end(_ count: UInt64) -> [UInt8] { [3] + be(count) }
        func restore(_ chunks: [[UInt8]]) throws(SnapshotError) -> (RestoreSummary, Cache) {
            let target = cache()
            let bytes = SnapshotWriter.plainSnapshot(chunks: chunks, created: clock.now())
            let summary = try SnapshotReader.restore(bytes: bytes, key: nil, maxAge: 60, now: clock.now()) {
                $0 == "default" ? target : nil
            }
            return (summary, target)
        }
        let records = bucket("default", items: 2) + item(0, "a", "1", cas: 40) + item(0, "b", "22", cas: 41) + end(2)
        // Cut anywhere, even inside a record: the same restore.
        for cut in [0, 5, 30, records.count - 3] {
            let (summary, restored) = try restore([Array(records[..<cut]), Array(records[cut...])])
            #expect(summary.restored == 2 && value(restored, "b") == "22" && restored.get(b("a"))?.cas == 40)
        }
        let wrongCount = bucket("default", items: 1) + item(0, "a", "1", cas: 1) + end(2)
        #expect(throws: SnapshotError.corrupt("1 items where the end record counts 2")) { try restore([wrongCount]) }
        let noBucket = item(0, "a", "1", cas: 1) + end(1)
        #expect(throws: SnapshotError.self) { try restore([noBucket]) }
        #expect(throws: SnapshotError.self) { try restore([records + [3]]) }  // after the end
        #expect(throws: SnapshotError.self) { try restore([Array(records.dropLast())]) }  // no end
    }

    @Test func keysAreThirtyTwoBytesRawOrInHex() throws {
        #expect(throws: Never.self) { try SnapshotKey(bytes: Array(repeating: 7, count: 32)) }
        #expect(throws: Never.self) { try SnapshotKey(bytes: b(String(repeating: "ab", count: 32) + "\n")) }
        #expect(throws: SnapshotError.self) { try SnapshotKey(bytes: Array(repeating: 7, count: 31)) }
        #expect(throws: SnapshotError.self) { try SnapshotKey(bytes: b(String(repeating: "zz", count: 32))) }
        let keyPath = directory + "/key"
        try Data(Array(repeating: 9, count: 32)).write(to: URL(fileURLWithPath: keyPath))
        #expect(throws: Never.self) { try SnapshotKey(path: keyPath) }
        #expect(throws: SnapshotError.self) { try SnapshotKey(path: directory + "/none") }
    }
}

func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }

extension Array where Element == UInt8 {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
