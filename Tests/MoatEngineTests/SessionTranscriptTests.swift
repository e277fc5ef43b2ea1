import MoatEngine
import MoatProtocol
import MoatStorage
import MoatTestSupport
import NIOCore
import Synchronization
import Testing

/// Drives one session with bytes and returns what it would send, as text.
struct Transcript {
    var session: Session
    let engine: Engine

    init(
        settings: EngineSettings = EngineSettings(), memoryLimit: Int = 8 * 1024 * 1024, evictions: Bool = true,
        clock: ManualClock = ManualClock()
    ) {
        let cache = Cache(
            configuration: CacheConfiguration(
                memoryLimit: memoryLimit, maxItemSize: settings.limits.maxItemSize, evictionsEnabled: evictions),
            clock: clock)
        engine = Engine(cache: cache, settings: settings)
        session = engine.makeSession()
    }

    /// Sends `text` in chunks of `chunk` bytes (0: all at once); returns the replies and the last action.
    mutating func send(_ text: String, chunk: Int = 0) -> (String, SessionAction) {
        send(Array(text.utf8), chunk: chunk)
    }

    mutating func send(_ bytes: [UInt8], chunk: Int = 0) -> (String, SessionAction) {
        let result = drive(&session, bytes, chunk: chunk)
        largestBatch = max(largestBatch, result.largestBatch)
        return (String(decoding: result.replies, as: UTF8.self), result.action)
    }

    /// The most reply bytes a single `process` call left for the connection to flush.
    var largestBatch = 0

    mutating func reply(_ text: String, chunk: Int = 0) -> String { send(text, chunk: chunk).0 }
}

@Suite struct SessionTranscriptTests {
    @Test func storageCommandsAnswerAsMemcached() {
        var t = Transcript()
        #expect(t.reply("set k 7 0 3\r\nabc\r\n") == "STORED\r\n")
        #expect(t.reply("add k 0 0 1\r\nx\r\n") == "NOT_STORED\r\n")
        #expect(t.reply("replace missing 0 0 1\r\nx\r\n") == "NOT_STORED\r\n")
        #expect(t.reply("append k 0 0 2\r\nde\r\n") == "STORED\r\n")
        #expect(t.reply("prepend k 0 0 2\r\nzz\r\n") == "STORED\r\n")
        #expect(t.reply("get k\r\n") == "VALUE k 7 7\r\nzzabcde\r\nEND\r\n")
        #expect(t.reply("append missing 0 0 1\r\nx\r\n") == "NOT_STORED\r\n")
    }

    @Test func casSucceedsOnceThenReportsExists() {
        var t = Transcript()
        _ = t.reply("set k 0 0 1\r\na\r\n")
        let gets = t.reply("gets k\r\n")
        let unique = gets.split(separator: "\r\n")[0].split(separator: " ")[4]
        #expect(t.reply("cas k 0 0 1 \(unique)\r\nb\r\n") == "STORED\r\n")
        #expect(t.reply("cas k 0 0 1 \(unique)\r\nc\r\n") == "EXISTS\r\n")
        #expect(t.reply("cas nope 0 0 1 1\r\nc\r\n") == "NOT_FOUND\r\n")
        #expect(t.reply("get k\r\n") == "VALUE k 0 1\r\nb\r\nEND\r\n")
    }

    @Test func multiGetReturnsHitsInOrderAndSkipsMisses() {
        var t = Transcript()
        _ = t.reply("set a 1 0 1\r\nA\r\nset c 3 0 1\r\nC\r\n")
        #expect(t.reply("get a b c\r\n") == "VALUE a 1 1\r\nA\r\nVALUE c 3 1\r\nC\r\nEND\r\n")
    }

    @Test func incrementWrapsAndDecrementFloorsAtZero() {
        var t = Transcript()
        _ = t.reply("set n 0 0 20\r\n18446744073709551615\r\n")
        #expect(t.reply("incr n 2\r\n") == "1\r\n")
        #expect(t.reply("decr n 5\r\n") == "0\r\n")
        #expect(t.reply("incr missing 1\r\n") == "NOT_FOUND\r\n")
        _ = t.reply("set s 0 0 3\r\nabc\r\n")
        #expect(t.reply("incr s 1\r\n") == "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        #expect(t.reply("incr n abc\r\n") == "CLIENT_ERROR invalid numeric delta argument\r\n")
        #expect(t.reply("incr n -1\r\n") == "CLIENT_ERROR invalid numeric delta argument\r\n")
    }

    @Test func noreplySuppressesEveryReply() {
        var t = Transcript()
        let (text, _) = t.send(
            "set k 0 0 1 noreply\r\na\r\nadd k 0 0 1 noreply\r\nb\r\nincr k 1 noreply\r\ndelete k noreply\r\n"
                + "touch k 10 noreply\r\nflush_all noreply\r\nverbosity 1 noreply\r\n")
        #expect(text == "")
    }

    @Test func expiryFollowsTheClock() {
        let clock = ManualClock()
        var t = Transcript(clock: clock)
        _ = t.reply("set short 0 2 1\r\na\r\nset never 0 0 1\r\nb\r\nset gone 0 -1 1\r\nc\r\n")
        #expect(t.reply("get gone\r\n") == "END\r\n")
        clock.advance(by: 1)
        #expect(t.reply("get short\r\n") == "VALUE short 0 1\r\na\r\nEND\r\n")
        clock.advance(by: 1)
        #expect(t.reply("get short never\r\n") == "VALUE never 0 1\r\nb\r\nEND\r\n")
        let absolute = clock.now() + 10
        _ = t.reply("set abs 0 \(absolute) 1\r\nd\r\n")
        clock.advance(by: 9)
        #expect(t.reply("get abs\r\n") == "VALUE abs 0 1\r\nd\r\nEND\r\n")
        clock.advance(by: 1)
        #expect(t.reply("get abs\r\n") == "END\r\n")
    }

    @Test func touchAndGatExtendLife() {
        let clock = ManualClock()
        var t = Transcript(clock: clock)
        _ = t.reply("set k 0 2 1\r\na\r\n")
        #expect(t.reply("touch k 100\r\n") == "TOUCHED\r\n")
        clock.advance(by: 50)
        #expect(t.reply("gat 1 k\r\n") == "VALUE k 0 1\r\na\r\nEND\r\n")
        clock.advance(by: 1)
        #expect(t.reply("gats 10 k\r\n") == "END\r\n")
        #expect(t.reply("touch k 10\r\n") == "NOT_FOUND\r\n")
    }

    @Test func delayedFlushHidesOlderItemsWhenItArrives() {
        let clock = ManualClock()
        var t = Transcript(clock: clock)
        _ = t.reply("set old 0 0 1\r\na\r\n")
        #expect(t.reply("flush_all 5\r\n") == "OK\r\n")
        #expect(t.reply("get old\r\n") == "VALUE old 0 1\r\na\r\nEND\r\n")
        clock.advance(by: 5)
        _ = t.reply("set new 0 0 1\r\nb\r\n")
        #expect(t.reply("get old new\r\n") == "VALUE new 0 1\r\nb\r\nEND\r\n")
        #expect(t.reply("flush_all\r\n") == "OK\r\n")
        #expect(t.reply("get new\r\n") == "END\r\n")
    }

    @Test func oversizedValueIsSwallowedAndRefused() {
        var settings = EngineSettings()
        settings.limits = ProtocolLimits(maxItemSize: 1024)
        var t = Transcript(settings: settings)
        _ = t.reply("set k 0 0 1\r\na\r\n")
        let big = String(repeating: "x", count: 2000)
        #expect(
            t.reply("set k 0 0 2000\r\n\(big)\r\nget k\r\n", chunk: 100)
                == "SERVER_ERROR object too large for cache\r\nEND\r\n")
    }

    @Test func malformedInputGetsMemcachedErrors() {
        var t = Transcript()
        #expect(t.reply("bogus\r\n") == "ERROR\r\n")
        #expect(t.reply("\r\n") == "ERROR\r\n")
        #expect(t.reply("get\r\n") == "ERROR\r\n")
        #expect(t.reply("get \(String(repeating: "k", count: 251))\r\n") == "CLIENT_ERROR bad command line format\r\n")
        // Where the data block cannot be located, or does not end where it said, the connection closes.
        var closing = Transcript()
        #expect(closing.send("set k 0 0 -1\r\n") == ("CLIENT_ERROR bad command line format\r\n", .close))
        closing = Transcript()
        #expect(closing.send("set k 0 0 3\r\nabcde\r\n") == ("CLIENT_ERROR bad data chunk\r\n", .close))
        #expect(t.reply("set k notanumber 0 1\r\nx\r\nget k\r\n") == "CLIENT_ERROR bad command line format\r\nEND\r\n")
        #expect(t.reply("delete k 5\r\n") == "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
        // With noreply the error is silent too, so the next reply is still the next request's.
        #expect(t.reply("delete k 5 noreply\r\nversion\r\n").hasPrefix("VERSION "))
        #expect(t.reply("flush_all soon\r\n") == "CLIENT_ERROR invalid exptime argument\r\n")
        #expect(t.reply("flush_all soon noreply\r\nversion\r\n").hasPrefix("VERSION "))
        #expect(t.reply("version\r\n") == "VERSION \(MoatVersion.wire)\r\n")
    }

    @Test func dataBlockCarryingCommandsIsNeverExecuted() {
        var t = Transcript()
        _ = t.reply("set keep 0 0 1\r\nk\r\n")
        // The key is invalid, but the data block (which looks like a command) must be discarded, not run.
        let bad = "set \(String(repeating: "a", count: 300)) 0 0 11\r\nflush_all\r\n\r\nget keep\r\n"
        #expect(t.reply(bad) == "CLIENT_ERROR bad command line format\r\nVALUE keep 0 1\r\nk\r\nEND\r\n")
    }

    @Test func longLineWithoutNewlineClosesTheConnection() {
        var t = Transcript()
        let (text, action) = t.send(String(repeating: "a", count: 3000))
        #expect(text == "CLIENT_ERROR line too long\r\n")
        #expect(action == .close)
    }

    @Test func forgedHTTPRequestClosesSilently() {
        var t = Transcript()
        let (text, action) = t.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(text == "")
        #expect(action == .close)
    }

    @Test func binaryFirstByteSwitchesToTheBinaryProtocol() {
        var t = Transcript()
        // A binary noop: 24-byte header, opaque 7.
        let (text, action) = t.send(
            [0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] + [UInt8](repeating: 0, count: 8))
        #expect(action == .needInput)
        let expected: [UInt8] =
            [0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] + [UInt8](repeating: 0, count: 8)
        #expect(text == String(decoding: expected, as: UTF8.self))
    }

    @Test func quitClosesAndShutdownNeedsTheFlag() {
        var t = Transcript()
        #expect(t.send("quit\r\n").1 == .close)
        var refused = Transcript()
        #expect(refused.send("shutdown\r\n") == ("ERROR: shutdown not enabled\r\n", .needInput))
        var settings = EngineSettings()
        settings.shutdownEnabled = true
        var allowed = Transcript(settings: settings)
        #expect(allowed.send("shutdown\r\n").1 == .shutdown)
    }

    @Test func dangerousCommandsAreRefusedByDefault() {
        var settings = EngineSettings()
        settings.flushEnabled = false
        var t = Transcript(settings: settings)
        #expect(t.reply("flush_all\r\n") == "CLIENT_ERROR flush_all not allowed\r\n")
        #expect(t.reply("stats cachedump 1 100\r\n") == "CLIENT_ERROR stats cachedump not allowed\r\n")
        #expect(t.reply("lru_crawler metadump all\r\n") == "ERROR key dumping not allowed\r\n")
        #expect(t.reply("stats detail dump\r\n") == "CLIENT_ERROR stats detail not allowed\r\n")
        // What client libraries send at connect is accepted (and changes nothing).
        #expect(t.reply("stats detail on\r\n") == "OK\r\n")
        #expect(t.reply("stats detail off\r\n") == "OK\r\n")
        #expect(t.reply("stats detail\r\n") == "CLIENT_ERROR stats detail not allowed\r\n")
        #expect(t.reply("stats conns\r\n") == "CLIENT_ERROR stats conns not allowed\r\n")
    }

    @Test func pipelinedRequestsAnswerInOrderWhateverTheChunking() {
        let script = "set a 0 0 1\r\n1\r\nget a\r\nincr a 5\r\ndelete a\r\nget a\r\nversion\r\n"
        let expected = "STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n6\r\nDELETED\r\nEND\r\nVERSION \(MoatVersion.wire)\r\n"
        for chunk in [0, 1, 2, 3, 7] {
            var t = Transcript()
            #expect(t.reply(script, chunk: chunk) == expected, "chunk \(chunk)")
        }
    }

    @Test func multiGetOfOneLargeValueManyTimesIsAnsweredInBoundedBatches() {
        var t = Transcript(memoryLimit: 64 * 1024 * 1024)
        let value = String(repeating: "v", count: 100_000)
        #expect(t.reply("set big 0 0 100000\r\n\(value)\r\n") == "STORED\r\n")
        t.largestBatch = 0
        let keys = Array(repeating: "big", count: 200).joined(separator: " ")
        let reply = t.reply("get \(keys) missing\r\nversion\r\n")
        let one = "VALUE big 0 100000\r\n\(value)\r\n"
        #expect(reply == String(repeating: one, count: 200) + "END\r\nVERSION \(MoatVersion.wire)\r\n")
        // 20 MB of replies, never more than the high-water mark plus one value at a time.
        #expect(t.largestBatch <= t.session.outputHighWater + one.utf8.count)
        let stats = t.reply("stats\r\n")
        #expect(stats.contains("STAT cmd_get 201\r\n"))
        #expect(stats.contains("STAT get_hits 200\r\n"))
    }

    @Test func statsCountHitsMissesAndItems() {
        var t = Transcript()
        _ = t.reply("set a 0 0 1\r\n1\r\nget a\r\nget b\r\ndelete b\r\n")
        let stats = t.reply("stats\r\n")
        #expect(stats.contains("STAT get_hits 1\r\n"))
        #expect(stats.contains("STAT get_misses 1\r\n"))
        #expect(stats.contains("STAT cmd_set 1\r\n"))
        #expect(stats.contains("STAT curr_items 1\r\n"))
        #expect(stats.contains("STAT delete_misses 1\r\n"))
        #expect(stats.hasSuffix("END\r\n"))
        #expect(t.reply("stats reset\r\n") == "RESET\r\n")
        #expect(t.reply("stats\r\n").contains("STAT get_hits 0\r\n"))
        #expect(t.reply("stats nonsense\r\n") == "ERROR\r\n")
    }

    @Test func fullCacheWithoutEvictionsReportsOutOfMemory() {
        var settings = EngineSettings()
        settings.limits = ProtocolLimits(maxItemSize: 1024)
        var t = Transcript(settings: settings, memoryLimit: 64 * 1024, evictions: false)
        let value = String(repeating: "v", count: 1000)
        var sawOOM = false
        for i in 0..<200 {
            let reply = t.reply("set k\(i) 0 0 1000\r\n\(value)\r\n")
            if reply == "SERVER_ERROR out of memory storing object\r\n" {
                sawOOM = true
                break
            }
            #expect(reply == "STORED\r\n")
        }
        #expect(sawOOM)
    }
}
