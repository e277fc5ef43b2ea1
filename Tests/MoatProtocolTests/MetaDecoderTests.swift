import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

@Suite struct MetaDecoderTests {
    func meta(_ text: String, limits: ProtocolLimits = ProtocolLimits()) -> OwnedRequest? {
        guard let request = decode(text, limits: limits).first, case .meta = request.reply else { return nil }
        return request
    }

    func form(_ request: OwnedRequest?) -> MetaReturn<[UInt8]>? {
        guard case .meta(let form)? = request?.reply else { return nil }
        return form
    }

    func error(_ text: String) -> String? {
        guard case .error(let reply)? = decode(text).first?.operation else { return nil }
        return reply.message
    }

    @Test func getWithFlagsAndNumbers() throws {
        let r = try #require(meta("mg foo v c T30 N-1 R5 Oab k q\r\n"))
        #expect(r.verb == .mg)
        #expect(
            r.operation
                == .get(key: b("foo"), GetOptions(touchTTL: 30, vivifyTTL: -1, recacheTTL: 5, grantsTokens: true)))
        let returned = try #require(form(r))
        #expect(returned.tokens == b("v c T30 N-1 R5 Oab k q"))
        #expect(returned.letters.has("v") && returned.quiet && !returned.letters.has("s"))
        // u: no bump; E: the CAS of an item created on a miss.
        #expect(
            meta("mg foo u E9\r\n")?.operation
                == .get(key: b("foo"), GetOptions(newCAS: 9, bump: false, grantsTokens: true)))
    }

    @Test func setWaitsForItsDataBlock() throws {
        #expect(decode("ms k 5 T10 F7 MA\r\nhel").isEmpty)
        let r = try #require(meta("ms k 5 T10 F7 MA C12 E13 I\r\nhello\r\n"))
        #expect(r.verb == .ms)
        #expect(
            r.operation
                == .store(
                    key: b("k"), value: b("hello"),
                    StoreOptions(verb: .append, flags: 7, ttl: 10, compareCAS: 12, newCAS: 13, invalidate: true)))
        // Drip-fed, byte by byte.
        let dripped = dripFeed(b("ms k 2 q\r\nhi\r\nmn\r\n"))
        #expect(dripped.count == 2)
        #expect(dripped.first?.operation == .store(key: b("k"), value: b("hi"), StoreOptions(verb: .set)))
    }

    @Test func setModesAndCAS() {
        func options(_ flags: String) -> StoreOptions? {
            guard case .store(_, _, let options)? = meta("ms k 1 \(flags)\r\nx\r\n")?.operation else { return nil }
            return options
        }
        // As memcached: a CAS makes set and replace a compare-and-swap, append checks it, add ignores it.
        #expect(options("C5") == StoreOptions(verb: .cas, compareCAS: 5))
        #expect(options("MS C5") == StoreOptions(verb: .cas, compareCAS: 5))
        #expect(options("MR C5") == StoreOptions(verb: .cas, compareCAS: 5))
        #expect(options("MR") == StoreOptions(verb: .replace))
        #expect(options("ME C5") == StoreOptions(verb: .add))
        #expect(options("MP C5") == StoreOptions(verb: .prepend, compareCAS: 5))
    }

    @Test func arithmeticDeleteNoopDebug() throws {
        #expect(
            meta("ma n D5 J7 N0 MD v\r\n")?.operation
                == .arithmetic(key: b("n"), ArithmeticOptions(increment: false, delta: 5, initial: 7, vivifyTTL: 0)))
        #expect(meta("ma n\r\n")?.operation == .arithmetic(key: b("n"), ArithmeticOptions(increment: true, delta: 1)))
        #expect(
            meta("md k I T5 x C3\r\n")?.operation
                == .delete(key: b("k"), DeleteOptions(compareCAS: 3, invalidate: true, removeValue: true, ttl: 5)))
        // T is the stale item's TTL: without I nothing stays to take it.
        #expect(meta("md k T5\r\n")?.operation == .delete(key: b("k"), DeleteOptions()))
        let noop = try #require(meta("mn\r\n"))
        #expect(noop.verb == .mn && noop.operation == .noop)
        #expect(meta("me k\r\n")?.operation == .inspect(key: b("k")))
        let debug = try #require(meta("me Zm9v b\r\n"))
        #expect(debug.operation == .inspect(key: b("foo")) && form(debug)?.base64Key == true)
    }

    @Test func base64KeysAreDecodedForTheOperation() throws {
        let r = try #require(meta("mg Zm9vYmFy b v\r\n"))
        #expect(r.operation == .get(key: b("foobar"), GetOptions(grantsTokens: true)))
        #expect(form(r)?.base64Key == true)
        // Any byte, spaces and control bytes included, once decoded.
        #expect(meta("md IAEK b\r\n")?.operation == .delete(key: [0x20, 0x01, 0x0A], DeleteOptions()))
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
        #expect(requests.first == failure(.metaInvalidFlag))
        // Without a length the data cannot be found: the connection is closed (memcached reads it as commands).
        #expect(decode("ms k x\r\nmn\r\n").first == failure(.badCommandLineFraming))
        #expect(decode("ms k -1\r\nmn\r\n").first == failure(.badCommandLineFraming))
        // The length is read before the key is checked: a refused key's block is swallowed too.
        let long = String(repeating: "k", count: 251)
        let refused = decode("ms \(long) 18\r\nset injected 0 0 1\r\nX\r\nmn\r\n")
        // The swallowed block was "set injected 0 0 1": no store is decoded ("X" is an unknown command).
        #expect(refused.count == 3)
        #expect(refused.first == failure(.badCommandLine))
        #expect(!refused.contains { if case .store = $0.operation { return true } else { return false } })
        #expect(refused.last?.verb == .mn, "no mn after the block: \(refused)")
    }

    @Test func tooLargeSetIsRefusedUnbuffered() throws {
        var limits = ProtocolLimits()
        limits.maxItemSize = 10
        let requests = decode(
            chunks: [b("ms k 20 T5\r\n"), b("0123456789"), b("0123456789\r\nmn\r\n")], limits: limits)
        #expect(requests.count == 2)
        #expect(requests.first?.operation == .storeTooLarge(key: b("k"), StoreOptions(verb: .set, ttl: 5)))
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
