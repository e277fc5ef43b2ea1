import MoatProtocol
import MoatTestSupport
import NIOCore

/// Feeds `chunks` one after another into a single accumulating buffer (as a connection would),
/// draining every complete request after each chunk.
func decode(chunks: [[UInt8]], limits: ProtocolLimits = ProtocolLimits()) -> [TextRequest] {
    var decoder = TextDecoder(limits: limits)
    var buffer = ByteBuffer()
    var requests: [TextRequest] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while let request = decoder.next(&buffer) { requests.append(request) }
    }
    return requests
}

func decode(_ bytes: [UInt8], limits: ProtocolLimits = ProtocolLimits()) -> [TextRequest] {
    decode(chunks: [bytes], limits: limits)
}

func decode(_ text: String, limits: ProtocolLimits = ProtocolLimits()) -> [TextRequest] {
    decode(b(text), limits: limits)
}

func dripFeed(_ bytes: [UInt8], limits: ProtocolLimits = ProtocolLimits()) -> [TextRequest] {
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
func get(_ keys: String..., cas: Bool = false) -> TextRequest {
    .retrieve(keys: keys.map(b), withCAS: cas, touchExptime: nil)
}

func store(
    _ verb: StoreVerb, _ key: String, flags: UInt32 = 0, exptime: Int64 = 0, _ value: String, cas: UInt64 = 0,
    noreply: Bool = false
) -> TextRequest {
    .store(
        StoreRequest(
            verb: verb, key: b(key), flags: flags, exptime: exptime, value: b(value), casUnique: cas, noreply: noreply))
}

func failure(_ reply: ErrorReply, noreply: Bool = false) -> TextRequest {
    .error(reply, noreply: noreply)
}
