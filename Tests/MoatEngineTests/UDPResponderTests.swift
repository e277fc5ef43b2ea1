import MoatAccess
import MoatEngine
import MoatProtocol
import MoatStorage
import MoatTestSupport
import Testing

struct UDPFixture {
    let engine: Engine
    let responder: UDPResponder
    let clock = ManualSeconds()

    init(amplification: Int = 3, datagramsPerSecond: Double = 1000, allowsWrites: Bool = true) {
        let cache = Cache(configuration: CacheConfiguration(memoryLimit: 16 << 20, maxItemSize: 1 << 20))
        engine = Engine(cache: cache, settings: EngineSettings())
        let clock = self.clock
        let limiter = SourceRateLimiter(
            limits: .init(datagramsPerSecond: datagramsPerSecond, bytesPerSecond: 1e9), now: { clock.now() })
        responder = UDPResponder(
            engine: engine, policy: .init(amplification: amplification, allowsWrites: allowsWrites),
            filter: AddressFilter(allow: [AddressBlock("127.0.0.1")!]),
            limiter: limiter)
    }

    func send(_ payload: String, id: UInt16 = 7, header: UDPFrameHeader? = nil, from source: String = "127.0.0.1")
        -> [UInt8]?
    {
        send(Array(payload.utf8), id: id, header: header, from: source)
    }

    func send(_ payload: [UInt8], id: UInt16 = 7, header: UDPFrameHeader? = nil, from source: String = "127.0.0.1")
        -> [UInt8]?
    {
        let datagram = (header ?? UDPFrameHeader(requestID: id)).bytes + payload
        let reply = datagram.withUnsafeBytes { responder.respond(to: $0, from: PeerAddress(source)) }
        if let reply { #expect(reply.count <= responder.policy.amplification * datagram.count && reply.count <= 1400) }
        return reply
    }

    static func text(_ reply: [UInt8]?) -> String? { reply.map { String(decoding: $0.dropFirst(8), as: UTF8.self) } }
}

@Suite struct UDPResponderTests {
    @Test func writesAreRefusedUnlessAllowed() {
        // A forged source address must not be able to change the cache (-o udp_writes turns writes on).
        let f = UDPFixture(allowsWrites: false)
        let refused = "CLIENT_ERROR not allowed over UDP\r\n"
        for request in [
            "set k 0 0 1\r\nx\r\n", "add k 0 0 1\r\nx\r\n", "cas k 0 0 1 1\r\nx\r\n", "ms k 1\r\nx\r\n",
            "delete k\r\n", "incr k 1\r\n", "decr k 1\r\n", "touch k 10\r\n", "gat 10 k\r\n", "md some-key\r\n",
            "ma some-key\r\n", "mg k v T10\r\n", "mg k N30 v\r\n",
        ] {
            #expect(UDPFixture.text(f.send(request)) == refused, "\(request)")
        }
        #expect(UDPFixture.text(f.send("get k\r\n")) == "END\r\n")
        #expect(UDPFixture.text(f.send("mg k v t\r\n")) == "EN\r\n")
        #expect(f.engine.cache.counters().currentItems == 0)
    }

    @Test func smallRequestsAreServedWithTheRequestID() {
        let f = UDPFixture()
        let stored = f.send("set k 0 0 5\r\nhello\r\n", id: 0x1234)
        #expect(stored.map { Array($0.prefix(8)) } == [0x12, 0x34, 0, 0, 0, 1, 0, 0])
        #expect(UDPFixture.text(stored) == "STORED\r\n")
        #expect(UDPFixture.text(f.send("get k\r\n")) == "VALUE k 0 5\r\nhello\r\nEND\r\n")
        #expect(UDPFixture.text(f.send("mg k v\r\n")) == "VA 5\r\nhello\r\n")
        #expect(f.send("set q 0 0 1 noreply\r\nx\r\n") == nil)  // noreply: nothing, but stored
        #expect(UDPFixture.text(f.send("get q\r\n")) == "VALUE q 0 1\r\nx\r\nEND\r\n")
        #expect(UDPFixture.text(f.send("incr n 1\r\n")) == "NOT_FOUND\r\n")
    }

    @Test func refusedSourcesGetNothing() {
        let f = UDPFixture()
        #expect(f.send("version\r\n", from: "127.0.0.2") == nil)
        #expect(f.send("get k\r\n", from: "10.0.0.1") == nil)
        #expect(f.engine.udp.refusedSource.load(ordering: .relaxed) == 2)
    }

    @Test func malformedFramesAreDropped() {
        let f = UDPFixture()
        let bad: [[UInt8]] = [[], [0, 1, 0], Array("get k\r\n".utf8)]
        for datagram in bad {
            #expect(datagram.withUnsafeBytes { f.responder.respond(to: $0, from: PeerAddress("127.0.0.1")) } == nil)
        }
        #expect(f.send("get k\r\n", header: UDPFrameHeader(requestID: 1, sequence: 1, count: 2)) == nil)
        #expect(f.send("get k\r\n", header: UDPFrameHeader(requestID: 1, sequence: 0, count: 2)) == nil)
        // Ignored, as memcached.
        #expect(f.send("version\r\n", header: UDPFrameHeader(requestID: 1, reserved: 0x100)) != nil)
        #expect(f.send([0x80, 0, 0, 0] + [UInt8](repeating: 0, count: 20)) == nil)  // binary protocol
        #expect(f.send("get k") == nil)  // no newline
        #expect(f.send("set k 0 0 zz\r\nx\r\n") == nil)
        #expect(f.send("\u{1}\u{2}garbage here\r\n") == nil)  // not a command: no answer, not even a refusal
        #expect(f.engine.udp.malformed.load(ordering: .relaxed) == 9)
    }

    /// The datagram is judged by the operation the text decoder reads, as TCP's sessions read it.
    @Test func theDecodedOperationDecides() {
        let f = UDPFixture(allowsWrites: true)
        let refused = "CLIENT_ERROR not allowed over UDP\r\n"
        #expect(UDPFixture.text(f.send("get k\r\nget")) == refused)  // something after the command
        #expect(UDPFixture.text(f.send("set k 0 0 1\r\nxy\r\n")) == nil)  // its data block is not where it says
        #expect(UDPFixture.text(f.send("me some-key-long-enough\r\n")) == refused)  // the refusal must fit 3x
        #expect(UDPFixture.text(f.send("gets a b\r\n")) == refused)
        #expect(UDPFixture.text(f.send("mn\r\n")) == "MN\r\n")
        #expect(UDPFixture.text(f.send("ms k 2 T0\r\nab\r\n")) == "HD\r\n")
        #expect(UDPFixture.text(f.send("mg k v\r\n")) == "VA 2\r\nab\r\n")
        let before = f.engine.udp.malformed.load(ordering: .relaxed)
        // Not a command Moat serves, or a command with an error: no answer at all, not even an error.
        for garbage in ["slabs reassign 1 2\r\n", "get \(String(repeating: "k", count: 251))\r\n", "incr k x\r\n"] {
            #expect(f.send(garbage) == nil, "\(garbage)")
        }
        #expect(f.engine.udp.malformed.load(ordering: .relaxed) == before + 3)
    }

    @Test func largeRepliesAreRefusedWithinTheBound() {
        let f = UDPFixture()
        #expect(
            f.engine.cache.store(
                .set, key: Array("big".utf8), value: [UInt8](repeating: 1, count: 100_000), flags: 0, exptime: 0)
                == .stored)
        #expect(UDPFixture.text(f.send("get big\r\n")) == "SERVER_ERROR reply too large for UDP\r\n")
        #expect(UDPFixture.text(f.send("gets big\r\n")) == "SERVER_ERROR reply too large for UDP\r\n")
        #expect(UDPFixture.text(f.send("stats\r\n")) == "CLIENT_ERROR not allowed over UDP\r\n")
        #expect(UDPFixture.text(f.send("get a a a a a a a a a a\r\n")) == "CLIENT_ERROR not allowed over UDP\r\n")
        #expect(UDPFixture.text(f.send("flush_all\r\n")) == "CLIENT_ERROR not allowed over UDP\r\n")
        #expect(
            f.send("get a\r\nget a\r\nget a\r\n").map { UDPFixture.text($0) } == "CLIENT_ERROR not allowed over UDP\r\n"
        )
        #expect(f.engine.udp.oversized.load(ordering: .relaxed) == 2)
        let strict = UDPFixture(amplification: 1)
        #expect(strict.send("stats\r\n") == nil)  // the error does not fit 1 x the request
        _ = strict.engine.cache.store(
            .set, key: Array("big".utf8), value: [UInt8](repeating: 1, count: 100_000), flags: 0, exptime: 0)
        #expect(strict.send("get big\r\n") == nil)
    }

    @Test func everyReplyStaysWithinTheBound() {
        // Random short commands over a few keys of varied sizes: `send` checks the bound on each reply.
        let f = UDPFixture()
        var generator = SystemRandomNumberGenerator()
        for (index, size) in [1, 10, 40, 100, 400, 1000, 5000].enumerated() {
            _ = f.engine.cache.store(
                .set, key: Array("k\(index)".utf8), value: [UInt8](repeating: 65, count: size), flags: 0, exptime: 0)
        }
        let verbs = ["get", "gets", "mg", "delete", "incr", "touch", "stats", "version", "gat 0"]
        for _ in 0..<2000 {
            let verb = verbs.randomElement(using: &generator)!
            let key = "k\(Int.random(in: 0..<7, using: &generator))"
            let suffix = verb == "mg" ? " v c t f k" : (verb == "incr" ? " 1" : (verb == "touch" ? " 10" : ""))
            _ = f.send("\(verb) \(key)\(suffix)\r\n")
        }
    }

    @Test func aSourceIsRateLimited() {
        let f = UDPFixture(datagramsPerSecond: 10)
        let answered = (0..<25).filter { _ in f.send("version\r\n") != nil }.count
        #expect(answered == 10)
        #expect(f.engine.udp.rateLimited.load(ordering: .relaxed) == 15)
        f.clock.advance(0.5)
        #expect((0..<10).filter { _ in f.send("version\r\n") != nil }.count == 5)
    }
}
