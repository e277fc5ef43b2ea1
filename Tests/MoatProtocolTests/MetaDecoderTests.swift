import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

@Suite struct MetaDecoderTests {
    func meta(_ text: String, limits: ProtocolLimits = ProtocolLimits()) -> MetaRequest? {
        guard case .meta(let request)? = decode(text, limits: limits).first else { return nil }
        return request
    }

    func error(_ text: String) -> String? {
        guard case .error(let reply, _)? = decode(text).first else { return nil }
        return reply.message
    }

    @Test func getWithFlagsAndNumbers() throws {
        let r = try #require(meta("mg foo v c T30 N-1 R5 Oab k q\r\n"))
        #expect(r.verb == .get && r.key == b("foo") && r.tokens == " v c T30 N-1 R5 Oab k q")
        #expect(r.flags.has("v") && r.flags.has("q") && !r.flags.has("s"))
        #expect(r.flags.ttl == 30 && r.flags.vivifyTTL == -1 && r.flags.recacheTTL == 5)
    }

    @Test func setWaitsForItsDataBlock() throws {
        #expect(decode("ms k 5 T10 F7 MA\r\nhel").isEmpty)
        let r = try #require(meta("ms k 5 T10 F7 MA C12 E13 I\r\nhello\r\n"))
        #expect(
            r.verb == .set && r.value == b("hello") && r.flags.clientFlags == 7 && r.flags.mode == UInt8(ascii: "A"))
        #expect(r.flags.compareCAS == 12 && r.flags.newCAS == 13 && r.flags.has("I"))
        // Drip-fed, byte by byte.
        let dripped = dripFeed(b("ms k 2 q\r\nhi\r\nmn\r\n"))
        #expect(dripped.count == 2)
        guard case .meta(let m)? = dripped.first else {
            Issue.record("no ms")
            return
        }
        #expect(m.value == b("hi"))
    }

    @Test func arithmeticDeleteNoopDebug() throws {
        let a = try #require(meta("ma n D5 J7 N0 MD v\r\n"))
        #expect(a.flags.delta == 5 && a.flags.initial == 7 && a.flags.mode == UInt8(ascii: "D"))
        #expect(try #require(meta("ma n\r\n")).flags.delta == 1)
        #expect(try #require(meta("md k I T5 x C3\r\n")).flags.has("x"))
        #expect(try #require(meta("mn\r\n")).verb == .noop)
        #expect(try #require(meta("me k\r\n")).verb == .debug)
        #expect(try #require(meta("me Zm9v b\r\n")).flags.has("b"))
    }

    @Test func memcachedsErrors() {
        #expect(error("mg\r\n") == "ERROR")
        #expect(error("mx foo\r\n") == "ERROR")
        #expect(error("me\r\n") == "CLIENT_ERROR bad command line format")
        #expect(error("mg foo v v\r\n") == "CLIENT_ERROR duplicate flag")
        #expect(error("mg foo z\r\n") == "CLIENT_ERROR invalid flag")
        #expect(error("md foo z\r\n") == "CLIENT_ERROR invalid or duplicate flag")
        #expect(error("mg foo Tx\r\n") == "CLIENT_ERROR bad token in command line format")
        #expect(error("mg foo T\r\n") == "CLIENT_ERROR bad token in command line format")
        #expect(error("mg foo T99999999999\r\n") == "CLIENT_ERROR bad token in command line format")
        #expect(error("ma foo Dx\r\n") == "CLIENT_ERROR invalid or duplicate flag")
        #expect(error("ma foo MX\r\n") == "CLIENT_ERROR invalid mode for ma M token")
        #expect(error("mg foo O" + String(repeating: "x", count: 32) + "\r\n") == "CLIENT_ERROR opaque token too long")
        #expect(meta("mg foo O" + String(repeating: "x", count: 31) + "\r\n") != nil)
        #expect(error("mg " + String(repeating: "k", count: 251) + " v\r\n") == "CLIENT_ERROR bad command line format")
        #expect(error("mg foo\u{1}x v\r\n") == "CLIENT_ERROR bad command line format")
        #expect(error("mg Zm9v= b\r\n") == "CLIENT_ERROR error decoding key")
        #expect(error("mg Zm9!v b\r\n") == "CLIENT_ERROR error decoding key")
        #expect(error("me Zm9 b\r\n") == "CLIENT_ERROR bad command line format")
    }

    @Test func tooManyFlags() {
        // 17 distinct known flags pass the count check; 18 tokens do not.
        let ok = "mg k b c f h k l O1 q s t u v P L I C1 N1"
        #expect(error(ok + "\r\n") != "CLIENT_ERROR options flags are too long")
        #expect(error(ok + " T1\r\n") == "CLIENT_ERROR options flags are too long")
        #expect(
            error("md k " + Array(repeating: "q", count: 18).joined(separator: " ") + "\r\n")
                == "CLIENT_ERROR options flags too long")
    }

    @Test func refusedSetSwallowsItsData() {
        let requests = decode("ms k 3 zz\r\nmn \r\nmn\r\n")
        #expect(requests.count == 2)
        #expect(requests.first == .error(.metaInvalidFlag, noreply: false))
        // Without a length the data cannot be found: the connection is closed (memcached reads it as commands).
        #expect(decode("ms k x\r\nmn\r\n").first == .error(.badCommandLineFraming, noreply: false))
        #expect(decode("ms k -1\r\nmn\r\n").first == .error(.badCommandLineFraming, noreply: false))
        // The length is read before the key is checked: a refused key's block is swallowed too.
        let long = String(repeating: "k", count: 251)
        let refused = decode("ms \(long) 18\r\nset injected 0 0 1\r\nX\r\nmn\r\n")
        // The swallowed block was "set injected 0 0 1": no store is decoded ("X" is an unknown command).
        #expect(refused.count == 3)
        #expect(refused.first == .error(.badCommandLine, noreply: false))
        #expect(!refused.contains { if case .store = $0 { return true } else { return false } })
        if case .meta(let noop)? = refused.last {
            #expect(noop.verb == .noop)
        } else {
            Issue.record("no mn after the block: \(refused)")
        }
    }

    @Test func tooLargeSetIsRefusedUnbuffered() throws {
        var limits = ProtocolLimits()
        limits.maxItemSize = 10
        let requests = decode(
            chunks: [b("ms k 20 T5\r\n"), b("0123456789"), b("0123456789\r\nmn\r\n")], limits: limits)
        #expect(requests.count == 2)
        guard case .meta(let r)? = requests.first else {
            Issue.record("no ms")
            return
        }
        #expect(r.valueTooLarge && r.value.isEmpty)
    }

    @Test func badDataChunk() {
        #expect(error("ms k 2\r\nabcd\r\n") == "CLIENT_ERROR bad data chunk")
    }

    @Test func base64RoundTrip() {
        for text in ["f", "fo", "foo", "foob", "fooba", "foobar"] {
            var out = ByteBuffer()
            b(text).withUnsafeBytes { Base64.encode($0, into: &out) }
            let encoded = Array(out.readableBytesView)
            let decoded = encoded.withUnsafeBytes { e -> [UInt8]? in
                guard Base64.decodedLength(e) == text.utf8.count else { return nil }
                return Base64.withDecoded(e) { Array($0) }
            }
            #expect(decoded == b(text))
        }
        #expect(b("Zm9vYg==").withUnsafeBytes { Base64.decodedLength($0) } == 4)
        #expect(b("Zm9vYg=").withUnsafeBytes { Base64.decodedLength($0) } == nil)
        #expect(b("Zm=v").withUnsafeBytes { Base64.decodedLength($0) } == nil)
        #expect(b("====").withUnsafeBytes { Base64.decodedLength($0) } == nil)
    }
}
