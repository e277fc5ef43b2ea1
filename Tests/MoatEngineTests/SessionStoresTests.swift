import MoatStorage
import Testing

@testable import MoatEngine

/// Stores refused for size or memory are accounted once, the same way in every dialect, as memcached
/// 1.6.18 does (tests/integration/test_limits_flags.py checks the same against it).
@Suite struct SessionStoresTests {
    func engine(memoryLimit: Int = 8 << 20, evictions: Bool = true) -> Engine {
        var settings = EngineSettings()
        settings.limits.maxItemSize = 1024
        let cache = Cache(
            configuration: CacheConfiguration(
                memoryLimit: memoryLimit, maxItemSize: 1024, evictionsEnabled: evictions, shardCount: 1))
        return Engine(cache: cache, settings: settings)
    }

    func text(_ session: inout Session, _ text: String) -> String {
        String(decoding: drive(&session, Array(text.utf8)).replies, as: UTF8.self)
    }

    /// The bucket's totals, once `session` has published what it counted.
    func counters(_ engine: Engine, _ session: inout Session) -> CommandCounters {
        session.publishCounters()
        return engine.statsSnapshot().commands
    }

    @Test func aStoreRefusedForSizeIsNotACmdSetInAnyDialect() {
        let engine = engine()
        var t = engine.makeSession()
        let big = String(repeating: "x", count: 2000)
        for key in ["s", "a", "m", "b"] { #expect(text(&t, "set \(key) 0 0 3\r\nold\r\n") == "STORED\r\n") }
        #expect(counters(engine, &t).cmdSet == 4)
        #expect(text(&t, "set s 0 0 2000\r\n\(big)\r\n") == "SERVER_ERROR object too large for cache\r\n")
        #expect(text(&t, "append a 0 0 2000\r\n\(big)\r\n") == "SERVER_ERROR object too large for cache\r\n")
        #expect(text(&t, "ms m 2000 MA\r\n\(big)\r\n") == "SERVER_ERROR object too large for cache\r\n")
        var binary = engine.makeSession()
        let replies = parse(
            drive(&binary, request(0x01, key: "b", extras: setExtras(), value: Array(big.utf8))).replies)
        #expect(replies.map(\.status) == [0x03])  // too large
        binary.publishCounters()
        let after = counters(engine, &t)
        #expect(after.cmdSet == 4 && after.storeTooLarge == 4)
        // A refused set (text, binary) and any refused ms take the old value out; a refused append does not.
        #expect(text(&t, "get s m b a\r\n") == "VALUE a 0 3\r\nold\r\nEND\r\n")
    }

    @Test func aSetRefusedForMemoryTakesTheOldValueOut() {
        let engine = engine(memoryLimit: 1 << 20, evictions: false)
        var t = engine.makeSession()
        let value = String(repeating: "v", count: 1000)
        var stored = 0
        while stored < 5000, text(&t, "set k\(stored) 0 0 1000\r\n\(value)\r\n") == "STORED\r\n" { stored += 1 }
        #expect(stored > 100 && stored < 5000)
        let before = counters(engine, &t)
        // The cache is full and may not evict: a set of a bigger value for an existing key fails (the
        // old value's bytes are not enough room).
        let bigger = String(repeating: "w", count: 1024)
        #expect(text(&t, "set k0 0 0 1024\r\n\(bigger)\r\n") == "SERVER_ERROR out of memory storing object\r\n")
        #expect(counters(engine, &t).storeNoMemory == before.storeNoMemory + 1)
        #expect(counters(engine, &t).cmdSet == before.cmdSet)
        #expect(text(&t, "get k0\r\n") == "END\r\n")
        #expect(text(&t, "get k1\r\n") == "VALUE k1 0 1000\r\n\(value)\r\nEND\r\n")
    }
}
