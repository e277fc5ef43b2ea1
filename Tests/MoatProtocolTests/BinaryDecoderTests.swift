import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

/// A binary request: header, then extras, key and value.
func binaryRequest(
    _ opcode: UInt8, key: [UInt8] = [], extras: [UInt8] = [], value: [UInt8] = [], opaque: UInt32 = 0xdead_beef,
    cas: UInt64 = 0,
    bodyLength: UInt32? = nil, keyLength: UInt16? = nil, magic: UInt8 = 0x80
) -> [UInt8] {
    var out: [UInt8] = [magic, opcode]
    let k = keyLength ?? UInt16(key.count)
    out += [UInt8(k >> 8), UInt8(k & 0xff), UInt8(extras.count), 0, 0, 0]
    let body = bodyLength ?? UInt32(extras.count + key.count + value.count)
    out += withUnsafeBytes(of: body.bigEndian, Array.init)
    out += withUnsafeBytes(of: opaque.bigEndian, Array.init)
    out += withUnsafeBytes(of: cas.bigEndian, Array.init)
    return out + extras + key + value
}

func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
func be64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }

func binaryDecode(chunks: [[UInt8]], limits: ProtocolLimits = ProtocolLimits()) -> [OwnedRequest] {
    var decoder = BinaryDecoder(limits: limits)
    var buffer = ByteBuffer()
    var requests: [OwnedRequest] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while let request = decoder.next(&buffer) { requests.append(request) }
    }
    return requests
}

/// What the binary decoder made of a request, without its header.
struct BinaryDecoded: Equatable {
    var verb: Verb
    var operation: Operation<[UInt8]>
    var quiet = false
    var includeKey = false
}

func op(_ verb: Verb, _ operation: Operation<[UInt8]>, quiet: Bool = false, includeKey: Bool = false) -> BinaryDecoded {
    BinaryDecoded(verb: verb, operation: operation, quiet: quiet, includeKey: includeKey)
}

func header(_ request: OwnedRequest) -> BinaryHeader? {
    guard case .binary(let form) = request.reply else { return nil }
    return form.header
}

func binaryOps(_ bytes: [UInt8], dripFed: Bool = false, limits: ProtocolLimits = ProtocolLimits()) -> [BinaryDecoded] {
    binaryDecode(chunks: dripFed ? bytes.map { [$0] } : [bytes], limits: limits).map { request in
        guard case .binary(let form) = request.reply else { return op(.none, .error(ErrorReply("not binary"))) }
        return op(request.verb, request.operation, quiet: form.quiet, includeKey: form.includeKey)
    }
}

@Suite struct BinaryDecoderTests {
    static let goldens: [([UInt8], BinaryDecoded)] = [
        (binaryRequest(0x00, key: b("k")), op(.get, .get(key: b("k"), GetOptions()))),
        (binaryRequest(0x09, key: b("k")), op(.get, .get(key: b("k"), GetOptions()), quiet: true)),
        (binaryRequest(0x0c, key: b("k")), op(.get, .get(key: b("k"), GetOptions()), includeKey: true)),
        (binaryRequest(0x0d, key: b("k")), op(.get, .get(key: b("k"), GetOptions()), quiet: true, includeKey: true)),
        (
            binaryRequest(0x01, key: b("k"), extras: be32(7) + be32(100), value: b("abc")),
            op(.set, .store(key: b("k"), value: b("abc"), StoreOptions(verb: .set, flags: 7, ttl: 100)))
        ),
        (
            binaryRequest(0x12, key: b("k"), extras: be32(0) + be32(0), value: []),
            op(.add, .store(key: b("k"), value: [], StoreOptions(verb: .add)), quiet: true)
        ),
        (
            binaryRequest(0x03, key: b("k"), extras: be32(1) + be32(2), value: b("v")),
            op(.replace, .store(key: b("k"), value: b("v"), StoreOptions(verb: .replace, flags: 1, ttl: 2)))
        ),
        (
            binaryRequest(0x0e, key: b("k"), value: b("++")),
            op(.append, .store(key: b("k"), value: b("++"), StoreOptions(verb: .append)))
        ),
        (
            binaryRequest(0x1a, key: b("k"), value: b("--")),
            op(.prepend, .store(key: b("k"), value: b("--"), StoreOptions(verb: .prepend)), quiet: true)
        ),
        (binaryRequest(0x04, key: b("k")), op(.delete, .delete(key: b("k"), DeleteOptions()))),
        (binaryRequest(0x14, key: b("k")), op(.delete, .delete(key: b("k"), DeleteOptions()), quiet: true)),
        (
            binaryRequest(0x05, key: b("n"), extras: be64(5) + be64(10) + be32(0xffff_ffff)),
            op(.incr, .arithmetic(key: b("n"), ArithmeticOptions(increment: true, delta: 5, initial: 10)))
        ),
        (
            binaryRequest(0x16, key: b("n"), extras: be64(1) + be64(0) + be32(60)),
            op(
                .decr,
                .arithmetic(key: b("n"), ArithmeticOptions(increment: false, delta: 1, initial: 0, vivifyTTL: 60)),
                quiet: true)
        ),
        (binaryRequest(0x07), op(.quit, .quit)),
        (binaryRequest(0x17), op(.quit, .quit, quiet: true)),
        (binaryRequest(0x08), op(.flushAll, .flushAll(delay: 0))),
        (binaryRequest(0x18, extras: be32(30)), op(.flushAll, .flushAll(delay: 30), quiet: true)),
        (binaryRequest(0x0a), op(.noop, .noop)),
        (binaryRequest(0x0b), op(.version, .version)),
        (binaryRequest(0x10), op(.stats, .stats(arguments: []))),
        (binaryRequest(0x10, key: b("settings")), op(.stats, .stats(arguments: b("settings")))),
        (binaryRequest(0x1b, extras: be32(1)), op(.verbosity, .verbosity(level: 1))),
        (binaryRequest(0x1c, key: b("k"), extras: be32(10)), op(.touch, .touch(key: b("k"), ttl: 10))),
        (
            binaryRequest(0x1d, key: b("k"), extras: be32(10)),
            op(.gat, .get(key: b("k"), GetOptions(touchTTL: 10)))
        ),
        (
            binaryRequest(0x1e, key: b("k"), extras: be32(10)),
            op(.gat, .get(key: b("k"), GetOptions(touchTTL: 10)), quiet: true)
        ),
        (
            binaryRequest(0x23, key: b("k"), extras: be32(10)),
            op(.gat, .get(key: b("k"), GetOptions(touchTTL: 10)), includeKey: true)
        ),
        (
            binaryRequest(0x24, key: b("k"), extras: be32(10)),
            op(.gat, .get(key: b("k"), GetOptions(touchTTL: 10)), quiet: true, includeKey: true)
        ),
        (binaryRequest(0x20), op(.saslListMechanisms, .saslListMechanisms)),
        (
            binaryRequest(0x21, key: b("PLAIN"), value: b("\0u\0p")),
            op(.saslAuth, .saslStart(mechanism: b("PLAIN"), data: b("\0u\0p")))
        ),
        (
            binaryRequest(0x22, key: b("SCRAM-SHA-256"), value: []),
            op(.saslStep, .saslStep(data: []))
        ),
        (binaryRequest(0x7f, value: b("whatever")), op(.none, .error(.unknownOpcode))),
    ]

    @Test func goldenRequestsDecodeWholeAndDripFed() {
        for (bytes, expected) in Self.goldens {
            #expect(binaryOps(bytes) == [expected])
            #expect(binaryOps(bytes, dripFed: true) == [expected])
        }
        // All of them back to back, in one buffer and byte by byte.
        let stream = Self.goldens.flatMap(\.0)
        #expect(binaryOps(stream) == Self.goldens.map(\.1))
        #expect(binaryOps(stream, dripFed: true) == Self.goldens.map(\.1))
    }

    @Test func headerFieldsAreKept() {
        let requests = binaryDecode(chunks: [
            binaryRequest(0x01, key: b("k"), extras: be32(0) + be32(0), value: b("v"), opaque: 42, cas: 99)
        ])
        #expect(requests.count == 1)
        #expect(header(requests[0])?.opaque == 42)
        #expect(header(requests[0])?.cas == 99)
        #expect(header(requests[0])?.opcode == 0x01)
    }

    @Test func aCASInTheHeaderMakesAStoreACompareAndSwap() {
        func decoded(_ opcode: UInt8, extras: [UInt8] = []) -> Operation<[UInt8]>? {
            binaryDecode(chunks: [binaryRequest(opcode, key: b("k"), extras: extras, value: b("v"), cas: 99)]).first?
                .operation
        }
        let extras = be32(1) + be32(2)
        // As memcached (NREAD_CAS): set, add and replace become a CAS; append and prepend check it.
        for opcode: UInt8 in [0x01, 0x02, 0x03] {
            #expect(
                decoded(opcode, extras: extras)
                    == .store(key: b("k"), value: b("v"), StoreOptions(verb: .cas, flags: 1, ttl: 2, compareCAS: 99)))
        }
        #expect(decoded(0x0e) == .store(key: b("k"), value: b("v"), StoreOptions(verb: .append, compareCAS: 99)))
        #expect(
            binaryDecode(chunks: [binaryRequest(0x04, key: b("k"), cas: 99)]).first?.operation
                == .delete(key: b("k"), DeleteOptions(compareCAS: 99)))
    }

    @Test func incompleteRequestsWaitForMoreBytes() {
        var decoder = BinaryDecoder()
        var buffer = ByteBuffer(bytes: binaryRequest(0x00, key: b("key")).dropLast())
        #expect(decoder.next(&buffer) == nil)
        #expect(buffer.readableBytes == 26)
    }

    @Test func badMagicCloses() {
        #expect(binaryOps(binaryRequest(0x00, key: b("k"), magic: 0x81)) == [op(.none, .error(.badMagic))])
        #expect(binaryOps(b("get k\r\n")) == [op(.none, .error(.badMagic))])
        // After a good request, garbage in place of the next header.
        #expect(binaryOps(binaryRequest(0x0a) + [0x00, 0x01]) == [op(.noop, .noop), op(.none, .error(.badMagic))])
    }

    @Test func saslFramesAreBoundedBeforeBuffering() {
        // A huge declared body, extras, no mechanism: refused at once. A mechanism name past 32 bytes is
        // refused without closing (its body is skipped): the framing still holds.
        var decoder = BinaryDecoder()
        var huge = ByteBuffer(bytes: binaryRequest(0x21, key: b("PLAIN"), bodyLength: 0x7fff_fff0))
        #expect(decoder.next(&huge)?.operation == .error(.invalidArguments))
        #expect(
            binaryOps(
                binaryRequest(0x21, key: [UInt8](repeating: 0x41, count: 33), value: b("x")) + binaryRequest(0x0a))
                == [op(.saslAuth, .saslMechanismTooLong), op(.noop, .noop)])
        #expect(
            binaryOps(binaryRequest(0x21, key: b("PLAIN"), extras: be32(1))) == [op(.none, .error(.invalidArguments))])
        #expect(binaryOps(binaryRequest(0x22, value: b("x"))) == [op(.none, .error(.invalidArguments))])
        #expect(
            binaryOps(binaryRequest(0x21, key: b("PLAIN"), value: [UInt8](repeating: 0, count: 4097))) == [
                op(.none, .error(.invalidArguments))
            ])
        let largest = [UInt8](repeating: 0, count: 4096)
        #expect(
            binaryOps(binaryRequest(0x21, key: b("PLAIN"), value: largest)) == [
                op(.saslAuth, .saslStart(mechanism: b("PLAIN"), data: largest))
            ])
    }

    @Test func inconsistentLengthsAreInvalidArguments() {
        let invalid: [[UInt8]] = [
            binaryRequest(0x00, key: b("k"), bodyLength: 0),  // key longer than the body
            binaryRequest(0x00, key: b("k"), extras: be32(1)),  // get takes no extras
            binaryRequest(0x00),  // get needs a key
            binaryRequest(0x01, key: b("k"), value: b("v")),  // set needs 8 bytes of extras
            binaryRequest(0x05, key: b("k"), extras: be64(1)),  // incr needs 20
            binaryRequest(0x0a, value: b("x")),  // noop has no body
            binaryRequest(0x07, key: b("k")),  // quit neither
            binaryRequest(0x08, extras: [0, 0]),  // flush: 0 or 4 bytes of extras
            binaryRequest(0x1c, key: b("k")),  // touch needs its exptime
            binaryRequest(0x04, key: b("k"), value: b("x")),  // delete: body is the key
            binaryRequest(0x00, key: [UInt8](repeating: 0x61, count: 251)),  // key over 250 bytes
        ]
        for bytes in invalid {
            #expect(binaryOps(bytes) == [op(.none, .error(.invalidArguments))])
            // Drip-fed, the refusal comes as soon as the header is read (the session then closes).
            #expect(binaryOps(bytes, dripFed: true).first == op(.none, .error(.invalidArguments)))
        }
        // A 250-byte key is fine.
        let key = [UInt8](repeating: 0x61, count: 250)
        #expect(binaryOps(binaryRequest(0x00, key: key)) == [op(.get, .get(key: key, GetOptions()))])
    }

    @Test func invalidArgumentsAreReportedBeforeTheBodyArrives() {
        // A get declaring a 1 GiB body: refused from the header alone.
        let header = Array(binaryRequest(0x00, key: b("k"), bodyLength: 1 << 30).prefix(24))
        #expect(binaryOps(header) == [op(.none, .error(.invalidArguments))])
    }

    @Test func tooLargeValuesAreRefusedAndSwallowedUnbuffered() {
        var limits = ProtocolLimits()
        limits.maxItemSize = 1024
        let big = [UInt8](repeating: 0x78, count: 5000)
        let request = binaryRequest(0x11, key: b("k"), extras: be32(0) + be32(0), value: big)
        var decoder = BinaryDecoder(limits: limits)
        var buffer = ByteBuffer()
        // Header, extras and key are enough to refuse.
        buffer.writeBytes(request.prefix(24 + 8 + 1))
        #expect(decoder.next(&buffer)?.operation == .storeTooLarge(key: b("k"), StoreOptions(verb: .set)))
        #expect(decoder.isMidRequest)
        // The value is discarded as it arrives; never more than one chunk is held.
        for chunk in stride(from: 33, to: request.count, by: 700) {
            buffer.writeBytes(request[chunk..<min(request.count, chunk + 700)])
            #expect(decoder.next(&buffer) == nil)
            #expect(buffer.readableBytes == 0)
        }
        #expect(!decoder.isMidRequest)
        buffer.writeBytes(binaryRequest(0x0a))
        #expect(decoder.next(&buffer)?.operation == .noop)
        // A value of exactly -I is accepted.
        let fits = [UInt8](repeating: 0x79, count: 1024)
        #expect(
            binaryOps(binaryRequest(0x01, key: b("k"), extras: be32(0) + be32(0), value: fits), limits: limits)
                == [op(.set, .store(key: b("k"), value: fits, StoreOptions(verb: .set)))])
    }

    @Test func unknownOpcodesSkipTheirBody() {
        #expect(
            binaryOps(binaryRequest(0x55, value: b("abcdef")) + binaryRequest(0x0a), dripFed: true) == [
                op(.none, .error(.unknownOpcode)), op(.noop, .noop),
            ])
    }
}

@Suite struct BinaryEncoderTests {
    @Test func responseHeaderLayout() {
        var out = ByteBuffer()
        BinaryEncoder.writeHeader(
            opcode: 0x01, status: .keyExists, keyLength: 3, extrasLength: 4, bodyLength: 10, opaque: 0x0102_0304,
            cas: 0x0a0b, into: &out)
        #expect(
            Array(out.readableBytesView) == [
                0x81, 0x01, 0, 3, 4, 0, 0, 2, 0, 0, 0, 10, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b,
            ])
    }

    @Test func errorsCarryMemcachedsMessage() {
        var out = ByteBuffer()
        BinaryEncoder.writeError(opcode: 0x00, status: .keyNotFound, opaque: 7, into: &out)
        let bytes = Array(out.readableBytesView)
        #expect(bytes.count == 24 + 9)
        #expect(bytes[7] == 1)
        #expect(bytes[11] == 9)
        #expect(Array(bytes[24...]) == b("Not found"))
    }

    @Test func itemResponsesHaveFlagsKeyAndValue() {
        var out = ByteBuffer()
        b("key").withUnsafeBytes { k in
            b("value").withUnsafeBytes { v in
                BinaryEncoder.writeItem(opcode: 0x0c, opaque: 1, cas: 5, flags: 0x11, key: k, value: v, into: &out)
            }
        }
        let bytes = Array(out.readableBytesView)
        #expect(bytes[2...3] == [0, 3])
        #expect(bytes[4] == 4)
        #expect(bytes[8...11] == [0, 0, 0, 12])
        #expect(Array(bytes[24...]) == [0, 0, 0, 0x11] + b("key") + b("value"))
    }
}
