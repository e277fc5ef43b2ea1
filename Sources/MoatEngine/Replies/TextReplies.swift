import MoatProtocol
import NIOCore

/// The classic text protocol's replies. `noreply` silences every reply but the errors memcached
/// sends regardless: one that closes the connection, and authentication's.
struct TextReplies: ReplyEncoder {
    let noreply: Bool
    /// `gets` and `gats`: each VALUE line carries the item's CAS unique.
    let withCAS: Bool

    var carriesASCIIAuthentication: Bool { true }

    func write(_ outcome: Outcome, key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        if noreply, !Self.answersDespiteNoreply(outcome) { return }
        switch outcome {
        case .hit(let item):
            TextEncoder.writeValue(
                key: item.key, flags: item.flags, data: item.value, cas: withCAS ? item.cas : nil, into: &out)
        case .miss, .quit: break
        case .end: TextEncoder.write(.end, into: &out)
        case .stored, .authenticated: TextEncoder.write(.stored, into: &out)
        case .notStored: TextEncoder.write(.notStored, into: &out)
        case .exists: TextEncoder.write(.exists, into: &out)
        case .notFound: TextEncoder.write(.notFound, into: &out)
        case .tooLarge: TextEncoder.writeError(.tooLarge, into: &out)
        case .noMemory: TextEncoder.write(.outOfMemory, into: &out)
        case .deleted: TextEncoder.write(.deleted, into: &out)
        case .number(let value, _, _, _): TextEncoder.writeNumber(value, into: &out)
        case .nonNumeric: out.writeStaticString("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        case .touched: TextEncoder.write(.touched, into: &out)
        case .ok: TextEncoder.write(.ok, into: &out)
        case .version(let version): TextEncoder.writeLine("VERSION \(version)", into: &out)
        case .stats(let answer, let arguments):
            switch answer {
            case .lines(let lines):
                for stat in lines { TextEncoder.writeStat(stat.name, stat.value.text, into: &out) }
                TextEncoder.write(.end, into: &out)
            case .reset: TextEncoder.write(.reset, into: &out)
            case .accepted: TextEncoder.write(.ok, into: &out)
            case .refused: TextEncoder.writeLine("CLIENT_ERROR stats \(arguments[0]) not allowed", into: &out)
            case .unknown: TextEncoder.writeError(.error, into: &out)
            }
        case .certificatesRefreshed(let done):
            out.writeStaticString(done ? "OK\r\n" : "ERROR: Failed to refresh SSL keys\r\n")
        case .refused(let refusal): Self.write(refusal, into: &out)
        case .authenticationFailed: out.writeStaticString("CLIENT_ERROR authentication failure\r\n")
        case .error(let error): TextEncoder.writeError(error, into: &out)
        // Outcomes of commands the text protocol has no words for.
        case .info, .noop, .saslMechanisms, .saslChallenge: TextEncoder.writeError(.error, into: &out)
        }
    }

    private static func answersDespiteNoreply(_ outcome: Outcome) -> Bool {
        switch outcome {
        case .error(let error): return error.disposition == .replyAndClose
        case .refused(.unauthenticated), .authenticationFailed: return true
        default: return false
        }
    }

    static func write(_ refusal: Refusal, into out: inout ByteBuffer) {
        switch refusal {
        case .permission: out.writeStaticString("CLIENT_ERROR permission denied\r\n")
        case .unauthenticated: out.writeStaticString("CLIENT_ERROR unauthenticated\r\n")
        case .notAllowed(.shutdown): out.writeStaticString("ERROR: shutdown not enabled\r\n")
        case .notAllowed(.cacheMemlimit): out.writeStaticString("ERROR cache_memlimit not supported\r\n")
        case .notAllowed(let command): TextEncoder.writeLine("CLIENT_ERROR \(command.rawValue) not allowed", into: &out)
        case .keyDump(.watch): out.writeStaticString("CLIENT_ERROR watch not allowed\r\n")
        case .keyDump: out.writeStaticString("ERROR key dumping not allowed\r\n")
        case .unsupported(let verb): TextEncoder.writeLine("ERROR \(verb.name) is not supported", into: &out)
        case .tlsNotEnabled: out.writeStaticString("CLIENT_ERROR SSL not enabled\r\n")
        }
    }
}
