import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

struct Golden: Sendable, CustomStringConvertible {
    var input: [UInt8]
    var expected: [OwnedRequest]
    init(_ input: String, _ expected: OwnedRequest...) {
        self.input = b(input)
        self.expected = expected
    }
    var description: String {
        String(decoding: input.prefix(60), as: UTF8.self).replacingOccurrences(of: "\r\n", with: "⏎")
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

let goldens: [Golden] = [
    // Retrieval.
    Golden("get k\r\n", get("k")),
    Golden("get a b c\r\n", get("a", "b", "c")),
    Golden("gets a b\r\n", get("a", "b", cas: true)),
    Golden("get   a  b  \r\n", get("a", "b")),
    Golden("get k\n", get("k")),
    Golden("gat 100 a b\r\n", gat(100, "a", "b")),
    Golden("gats -1 a\r\n", gat(-1, "a", cas: true)),
    Golden("gat 0 k\r\n", gat(0, "k")),
    Golden("get\r\n", failure(.error)),
    Golden("gat 10\r\n", failure(.error)),
    Golden("gat ten k\r\n", failure(.invalidExptime)),
    // Storage.
    Golden("set k 5 100 3\r\nabc\r\n", store(.set, "k", flags: 5, exptime: 100, "abc")),
    Golden("set k 0 0 3 noreply\r\nabc\r\n", store(.set, "k", "abc", noreply: true)),
    Golden("set k 0 0 0\r\n\r\n", store(.set, "k", "")),
    Golden("set k 0 0 4\r\na\r\nb\r\n", store(.set, "k", "a\r\nb")),
    Golden("set k 4294967295 -1 1\r\nx\r\n", store(.set, "k", flags: UInt32.max, exptime: -1, "x")),
    Golden("set k 0 2592001 1\r\nx\r\n", store(.set, "k", exptime: 2_592_001, "x")),
    Golden("add k 1 2 2\r\nab\r\n", store(.add, "k", flags: 1, exptime: 2, "ab")),
    Golden("add k 1 2 2 noreply\r\nab\r\n", store(.add, "k", flags: 1, exptime: 2, "ab", noreply: true)),
    Golden("replace k 0 0 1\r\nz\r\n", store(.replace, "k", "z")),
    Golden("replace k 0 0 1 noreply\r\nz\r\n", store(.replace, "k", "z", noreply: true)),
    Golden("append k 0 0 2\r\n++\r\n", store(.append, "k", "++")),
    Golden("append k 0 0 2 noreply\r\n++\r\n", store(.append, "k", "++", noreply: true)),
    Golden("prepend k 0 0 2\r\n--\r\n", store(.prepend, "k", "--")),
    Golden("prepend k 0 0 2 noreply\r\n--\r\n", store(.prepend, "k", "--", noreply: true)),
    Golden("cas k 1 2 3 99\r\nabc\r\n", store(.cas, "k", flags: 1, exptime: 2, "abc", cas: 99)),
    Golden("cas k 1 2 3 99 noreply\r\nabc\r\n", store(.cas, "k", flags: 1, exptime: 2, "abc", cas: 99, noreply: true)),
    Golden("set k 0 0\r\n", failure(.errorFraming)),
    Golden("cas k 0 0 1\r\nx\r\n", failure(.errorFraming), failure(.error)),
    Golden("set k 0 0 -1\r\n", failure(.badCommandLineFraming)),
    Golden("set k 4294967296 0 1\r\nx\r\n", failure(.badCommandLine)),
    Golden("set k 0 0 1\r\nxyz\r\n", failure(.badDataChunk), failure(.error)),
    // Delete.
    Golden("delete k\r\n", delete("k")),
    Golden("delete k 0\r\n", delete("k")),
    Golden("delete k noreply\r\n", delete("k", noreply: true)),
    Golden("delete k 0 noreply\r\n", delete("k", noreply: true)),
    Golden("delete k 5\r\n", failure(.badDeleteUsage)),
    Golden("delete k 5 noreply\r\n", failure(.badDeleteUsage, noreply: true)),  // silent, as memcached
    Golden("delete\r\n", failure(.error)),
    Golden("delete a b c d\r\n", failure(.error)),
    // Arithmetic.
    Golden("incr k 5\r\n", arithmetic("k", delta: 5, increment: true, noreply: false)),
    Golden(
        "decr k 18446744073709551615 noreply\r\n",
        arithmetic("k", delta: UInt64.max, increment: false, noreply: true)),
    Golden("incr k -1\r\n", failure(.invalidDelta)),
    Golden("incr k 18446744073709551616\r\n", failure(.invalidDelta)),
    Golden("decr k abc noreply\r\n", failure(.invalidDelta, noreply: true)),
    Golden("incr k\r\n", failure(.error)),
    // Touch.
    Golden("touch k 10\r\n", text(.touch, .touch(key: b("k"), ttl: 10), noreply: false)),
    Golden("touch k -1 noreply\r\n", text(.touch, .touch(key: b("k"), ttl: -1), noreply: true)),
    Golden("touch k soon\r\n", failure(.invalidExptime)),
    Golden("touch k\r\n", failure(.error)),
    // flush_all.
    Golden("flush_all\r\n", text(.flushAll, .flushAll(delay: 0), noreply: false)),
    Golden("flush_all 10\r\n", text(.flushAll, .flushAll(delay: 10), noreply: false)),
    Golden("flush_all noreply\r\n", text(.flushAll, .flushAll(delay: 0), noreply: true)),
    Golden("flush_all 10 noreply\r\n", text(.flushAll, .flushAll(delay: 10), noreply: true)),
    Golden("flush_all 0\r\n", text(.flushAll, .flushAll(delay: 0), noreply: false)),
    Golden("flush_all soon\r\n", failure(.invalidExptime)),
    Golden("flush_all soon noreply\r\n", failure(.invalidExptime, noreply: true)),
    Golden("flush_all 1 2 3\r\n", failure(.error)),
    // Misc.
    Golden("version\r\n", text(.version, .version)),
    Golden("verbosity 1\r\n", text(.verbosity, .verbosity(level: 1), noreply: false)),
    Golden("verbosity 2 noreply\r\n", text(.verbosity, .verbosity(level: 2), noreply: true)),
    Golden("verbosity\r\n", failure(.error)),
    Golden("quit\r\n", text(.quit, .quit)),
    Golden("stats\r\n", text(.stats, .stats(arguments: b("")))),
    Golden("stats items\r\n", text(.stats, .stats(arguments: b("items")))),
    Golden("stats detail on\r\n", text(.stats, .stats(arguments: b("detail on")))),
    Golden("stats reset\r\n", text(.stats, .stats(arguments: b("reset")))),
    Golden("shutdown\r\n", text(.shutdown, .shutdown)),
    Golden("shutdown graceful\r\n", text(.shutdown, .shutdown)),
    Golden("lru_crawler metadump all\r\n", text(.lruCrawler, .lruCrawler(arguments: b("metadump all")))),
    Golden("cache_memlimit 100\r\n", text(.cacheMemlimit, .cacheMemlimit(megabytes: 100), noreply: false)),
    Golden("cache_memlimit 100 noreply\r\n", text(.cacheMemlimit, .cacheMemlimit(megabytes: 100), noreply: true)),
    Golden("bogus\r\n", failure(.error)),
    Golden("GET k\r\n", failure(.error)),
    Golden("\r\n", failure(.error)),
    Golden("   \r\n", failure(.error)),
    Golden("GET / HTTP/1.1\r\n", failure(.forgedHTTP)),
    Golden("POST /cache HTTP/1.0\r\n", failure(.forgedHTTP)),
    // Keys that merely look like HTTP versions are still keys.
    Golden("get HTTP/1.1\r\n", get("HTTP/1.1")),
    Golden("get a HTTP/1.1\r\n", get("a", "HTTP/1.1")),
    Golden("delete HTTP/x\r\n", delete("HTTP/x")),
]

@Suite struct GoldenTests {
    @Test(arguments: goldens)
    func wholeInput(_ golden: Golden) {
        #expect(decode(golden.input) == golden.expected)
    }

    @Test(arguments: goldens)
    func dripFedOneByteAtATime(_ golden: Golden) {
        #expect(dripFeed(golden.input) == golden.expected)
    }

    @Test(arguments: goldens)
    func everyTwoWaySplit(_ golden: Golden) {
        for cut in 0...golden.input.count {
            let chunks = [Array(golden.input[..<cut]), Array(golden.input[cut...])]
            #expect(decode(chunks: chunks) == golden.expected, "split at \(cut)")
        }
    }

    @Test func randomSplitsOfAllGoldensPipelined() {
        // Every golden input back to back, cut at random places; decoded requests equal the concatenation.
        let all = goldens.flatMap(\.input)
        let expected = goldens.flatMap(\.expected)
        #expect(decode(all) == expected)
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<20 {
            var chunks: [[UInt8]] = []
            var index = 0
            while index < all.count {
                let size = Int.random(in: 1...64, using: &rng)
                chunks.append(Array(all[index..<min(all.count, index + size)]))
                index += size
            }
            #expect(decode(chunks: chunks) == expected)
        }
    }

    @Test func pipelinedCommandsDecodeInOrder() {
        let input =
            """
            set a 0 0 1\r\nx\r\nget a b\r\ndelete a\r\nincr n 1\r\nversion\r\nset b 1 0 2 noreply\r\nyz\r\ngets \
            b\r\nquit\r\n
            """
        #expect(
            decode(input) == [
                store(.set, "a", "x"),
                get("a", "b"),
                delete("a"),
                arithmetic("n", delta: 1, increment: true, noreply: false),
                text(.version, .version),
                store(.set, "b", flags: 1, "yz", noreply: true),
                get("b", cas: true),
                text(.quit, .quit),
            ])
    }

    @Test func decoderStopsAtIncompleteRequestsAndLeavesBytes() {
        var decoder = TextDecoder()
        var buffer = ByteBuffer(bytes: b("version\r\nset k 0 0 5\r\nab"))
        #expect(decoder.next(&buffer) == text(.version, .version))
        #expect(!decoder.isMidRequest)
        #expect(decoder.next(&buffer) == nil)
        // A storage command is consumed only with its whole data block: the header stays in the buffer.
        #expect(buffer.readableBytes == b("set k 0 0 5\r\nab").count)
        buffer.writeBytes(b("cde\r"))
        #expect(decoder.next(&buffer) == nil)
        buffer.writeBytes(b("\nget"))
        #expect(decoder.next(&buffer) == store(.set, "k", "abcde"))
        #expect(!decoder.isMidRequest)
        #expect(decoder.next(&buffer) == nil)
        #expect(buffer.readableBytes == 3)
        buffer.writeBytes(b(" k\r\n"))
        #expect(decoder.next(&buffer) == get("k"))
        #expect(buffer.readableBytes == 0)
    }
}
