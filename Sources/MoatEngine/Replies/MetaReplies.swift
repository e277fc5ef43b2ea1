import MoatProtocol
import NIOCore

/// The meta commands' replies, as memcached 1.6.18 writes them: a two-letter code, then the flags the
/// request asked for in its order (`O` and `k` echoed; `s t c f l h` reporting the item). `q` hides
/// the nominal reply (EN of mg, HD of ms, md and ma) but never an error or another code.
struct MetaReplies: ReplyEncoder {
    let verb: Verb
    let form: MetaReturn<UnsafeRawBufferPointer>

    var carriesASCIIAuthentication: Bool { true }

    func write(_ outcome: Outcome, key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        switch outcome {
        case .hit(let item):
            let withValue = form.letters.has("v")
            if withValue {
                out.writeStaticString("VA ")
                MetaEncoder.writeNumber(UInt64(item.value.count), into: &out)
            } else {
                out.writeStaticString("HD")
            }
            for token in TokenList(form.tokens) {
                switch token[0] {
                case UInt8(ascii: "s"): MetaEncoder.writeFlag(UInt8(ascii: "s"), UInt64(item.value.count), into: &out)
                case UInt8(ascii: "t"): MetaEncoder.writeFlag(UInt8(ascii: "t"), signed: item.ttl, into: &out)
                case UInt8(ascii: "c"): MetaEncoder.writeFlag(UInt8(ascii: "c"), item.cas, into: &out)
                case UInt8(ascii: "f"): MetaEncoder.writeFlag(UInt8(ascii: "f"), UInt64(item.flags), into: &out)
                case UInt8(ascii: "l"): MetaEncoder.writeFlag(UInt8(ascii: "l"), UInt64(item.idle), into: &out)
                case UInt8(ascii: "h"): MetaEncoder.writeFlag(UInt8(ascii: "h"), item.fetchedBefore ? 1 : 0, into: &out)
                case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
                case UInt8(ascii: "k"): MetaEncoder.writeKey(item.key, binary: form.base64Key, into: &out)
                default: break
                }
            }
            // As memcached: Z (someone else holds the token) before X (stale) before W (you won).
            if item.tokenSentBefore { out.writeStaticString(" Z") }
            if item.stale { out.writeStaticString(" X") }
            if item.won { out.writeStaticString(" W") }
            out.writeStaticString("\r\n")
            if withValue {
                out.writeBytes(item.value)
                out.writeStaticString("\r\n")
            }
        case .miss:
            // me's miss is a bare EN: it echoes nothing.
            if verb == .me { out.writeStaticString("EN\r\n") } else if !form.quiet { code("EN", key, into: &out) }
        case .stored(let cas):
            if form.quiet { return }
            code("HD", key, cas: cas, into: &out)
        case .notStored: code("NS", key, cas: 0, into: &out)
        case .exists: code("EX", key, cas: 0, into: &out)
        case .notFound: code("NF", key, cas: 0, into: &out)
        case .deleted:
            if form.quiet { return }
            code("HD", key, into: &out)
        case .number(let number, let cas, let ttl, let created):
            // memcached hides a quiet success, but not the reply that reports a creation.
            if form.quiet, !created { return }
            writeNumber(number, cas: cas, ttl: ttl, key: key, into: &out)
        case .noMemory:
            out.writeStaticString(
                verb == .ma ? "SERVER_ERROR out of memory\r\n" : "SERVER_ERROR out of memory storing object\r\n")
        case .info(let info):
            out.writeStaticString("ME ")
            if form.base64Key { Base64.encode(key, into: &out) } else { out.writeBytes(key) }
            out.writeStaticString(" exp=")
            // The TTL left (memcached 1.6.18 printed its negation; later versions fixed that).
            if info.ttl < 0 {
                out.writeStaticString("-1")
            } else {
                MetaEncoder.writeNumber(UInt64(info.ttl), into: &out)
            }
            out.writeStaticString(" la=")
            MetaEncoder.writeNumber(UInt64(info.idle), into: &out)
            out.writeStaticString(" cas=")
            MetaEncoder.writeNumber(info.cas, into: &out)
            out.writeStaticString(info.fetched ? " fetch=yes cls=" : " fetch=no cls=")
            MetaEncoder.writeNumber(UInt64(info.sizeClass), into: &out)
            out.writeStaticString(" size=")
            MetaEncoder.writeNumber(UInt64(info.size), into: &out)
            out.writeStaticString("\r\n")
        case .noop: out.writeStaticString("MN\r\n")
        // Meta has no noreply: a refusal is always answered.
        case .refused(.permission): out.writeStaticString("CLIENT_ERROR permission denied\r\n")
        case .authenticated: out.writeStaticString("HD\r\n")
        // The rest reads as in the classic protocol (errors, refusals, what meta has no code for).
        default: TextReplies(noreply: false, withCAS: false).write(outcome, key: key, into: &out)
        }
    }

    /// A code and the flags every reply echoes: `O` (opaque) and `k` (key); ms also reports `c`
    /// (the stored item's CAS, 0 unless stored, as memcached).
    private func code(
        _ code: StaticString, _ key: UnsafeRawBufferPointer, cas: UInt64? = nil, into out: inout ByteBuffer
    ) {
        out.writeStaticString(code)
        for token in TokenList(form.tokens) {
            switch token[0] {
            case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
            case UInt8(ascii: "k"): MetaEncoder.writeKey(key, binary: form.base64Key, into: &out)
            case UInt8(ascii: "c") where verb == .ms: MetaEncoder.writeFlag(UInt8(ascii: "c"), cas ?? 0, into: &out)
            default: break
            }
        }
        out.writeStaticString("\r\n")
    }

    /// ma's result: `HD`, or `VA <digits>` and the number on its own line with `v`.
    private func writeNumber(
        _ number: UInt64, cas: UInt64, ttl: Int64, key: UnsafeRawBufferPointer, into out: inout ByteBuffer
    ) {
        let withValue = form.letters.has("v")
        if withValue {
            var digits = 1
            var probe = number
            while probe >= 10 {
                probe /= 10
                digits += 1
            }
            out.writeStaticString("VA ")
            MetaEncoder.writeNumber(UInt64(digits), into: &out)
        } else {
            out.writeStaticString("HD")
        }
        for token in TokenList(form.tokens) {
            switch token[0] {
            case UInt8(ascii: "c"): MetaEncoder.writeFlag(UInt8(ascii: "c"), cas, into: &out)
            case UInt8(ascii: "t"): MetaEncoder.writeFlag(UInt8(ascii: "t"), signed: ttl, into: &out)
            case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
            case UInt8(ascii: "k"): MetaEncoder.writeKey(key, binary: form.base64Key, into: &out)
            default: break
            }
        }
        out.writeStaticString("\r\n")
        if withValue {
            MetaEncoder.writeNumber(number, into: &out)
            out.writeStaticString("\r\n")
        }
    }
}
