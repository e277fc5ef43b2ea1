import MoatProtocol
import MoatTestSupport
import NIOCore

/// Feeds `chunks` one after another into a single accumulating buffer (as a connection would),
/// draining every complete request after each chunk.
func decode(chunks: [[UInt8]], limits: ProtocolLimits = ProtocolLimits()) -> [OwnedRequest] {
    var decoder = TextDecoder(limits: limits)
    var buffer = ByteBuffer()
    var requests: [OwnedRequest] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while let request = decoder.next(&buffer) { requests.append(request) }
    }
    return requests
}

func decode(_ bytes: [UInt8], limits: ProtocolLimits = ProtocolLimits()) -> [OwnedRequest] {
    decode(chunks: [bytes], limits: limits)
}

func decode(_ text: String, limits: ProtocolLimits = ProtocolLimits()) -> [OwnedRequest] {
    decode(b(text), limits: limits)
}

func dripFeed(_ bytes: [UInt8], limits: ProtocolLimits = ProtocolLimits()) -> [OwnedRequest] {
    decode(chunks: bytes.map { [$0] }, limits: limits)
}

func text(_ buffer: ByteBuffer) -> String {
    String(decoding: buffer.readableBytesView, as: UTF8.self)
}

func encoded(_ body: (inout ByteBuffer) -> Void) -> String {
    var buffer = ByteBuffer()
    body(&buffer)
    return text(buffer)
}

// Shorthands for expected requests.
func get(_ keys: String..., cas: Bool = false) -> OwnedRequest {
    Request(
        cas ? .gets : .get, .getMany(keys: b(keys.joined(separator: " ")), GetOptions()),
        reply: .text(noreply: false, withCAS: cas))
}

func gat(_ ttl: Int64, _ keys: String..., cas: Bool = false) -> OwnedRequest {
    Request(
        cas ? .gats : .gat, .getMany(keys: b(keys.joined(separator: " ")), GetOptions(touchTTL: ttl)),
        reply: .text(noreply: false, withCAS: cas))
}

func store(
    _ verb: StoreVerb, _ key: String, flags: UInt32 = 0, exptime: Int64 = 0, _ value: String, cas: UInt64 = 0,
    noreply: Bool = false
) -> OwnedRequest {
    return Request(
        Verb(verb),
        .store(
            key: b(key), value: b(value),
            StoreOptions(verb: verb, flags: flags, ttl: exptime, compareCAS: verb == .cas ? cas : nil)),
        reply: .text(noreply: noreply, withCAS: false))
}

/// A classic command with nothing to echo.
func text(_ verb: Verb, _ operation: Operation<[UInt8]>, noreply: Bool = false) -> OwnedRequest {
    Request(verb, operation, reply: .text(noreply: noreply, withCAS: false))
}

func delete(_ key: String, noreply: Bool = false) -> OwnedRequest {
    text(.delete, .delete(key: b(key), DeleteOptions()), noreply: noreply)
}

func arithmetic(_ key: String, delta: UInt64, increment: Bool, noreply: Bool = false) -> OwnedRequest {
    text(
        increment ? .incr : .decr, .arithmetic(key: b(key), ArithmeticOptions(increment: increment, delta: delta)),
        noreply: noreply)
}

func failure(_ reply: ErrorReply, noreply: Bool = false) -> OwnedRequest {
    Request(.none, .error(reply), reply: .text(noreply: noreply, withCAS: false))
}

func tooLarge(_ verb: StoreVerb, _ key: String, cas: UInt64 = 0, noreply: Bool = false) -> OwnedRequest {
    return Request(
        Verb(verb), .storeTooLarge(key: b(key), StoreOptions(verb: verb, compareCAS: verb == .cas ? cas : nil)),
        reply: .text(noreply: noreply, withCAS: false))
}

let versionCommand = text(.version, .version)
