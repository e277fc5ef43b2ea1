import MoatProtocol
import NIOCore

/// The binary protocol's replies: the request's opcode and opaque echoed in every header, memcached's
/// status codes, and its quiet rules (a quiet get says nothing on a miss; a quiet mutation says
/// nothing on success but reports errors).
struct BinaryReplies: ReplyEncoder {
    let verb: Verb
    let form: BinaryReturn

    var carriesASCIIAuthentication: Bool { false }

    private var opcode: UInt8 { form.header.opcode }
    private var opaque: UInt32 { form.header.opaque }

    func write(_ outcome: Outcome, key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        switch outcome {
        case .hit(let item):
            BinaryEncoder.writeItem(
                opcode: opcode, opaque: opaque, cas: item.cas, flags: item.flags, key: form.includeKey ? item.key : nil,
                value: item.value, into: &out)
        case .miss:
            if form.quiet { return }
            if form.includeKey {
                BinaryEncoder.writeKeyNotFound(opcode: opcode, opaque: opaque, key: key, into: &out)
            } else {
                fail(.keyNotFound, into: &out)
            }
        case .touched(let flags, let cas):
            // As memcached: the reply carries the item's flags and CAS, not its value.
            BinaryEncoder.writeItem(
                opcode: opcode, opaque: opaque, cas: cas, flags: flags, key: nil, value: nil, into: &out)
        case .stored(let cas): succeed(cas: cas, into: &out)
        case .deleted, .ok, .quit: succeed(into: &out)
        case .noop: BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, into: &out)
        case .exists: fail(.keyExists, into: &out)
        case .notFound: fail(.keyNotFound, into: &out)
        case .notStored:
            // memcached's statuses: add on an existing key "exists", replace on a missing one "not found".
            switch verb {
            case .add: fail(.keyExists, into: &out)
            case .replace: fail(.keyNotFound, into: &out)
            default: fail(.notStored, into: &out)
            }
        case .tooLarge: fail(.valueTooLarge, into: &out)
        case .noMemory: fail(.outOfMemory, into: &out)
        case .number(let value, let cas, _, _):
            guard !form.quiet else { return }
            BinaryEncoder.writeHeader(opcode: opcode, status: .ok, bodyLength: 8, opaque: opaque, cas: cas, into: &out)
            out.writeInteger(value)
        case .nonNumeric: fail(.nonNumeric, into: &out)
        case .version(let version):
            Array(version.utf8).withUnsafeBytes {
                BinaryEncoder.writeResponse(opcode: opcode, opaque: opaque, value: $0, into: &out)
            }
        case .stats(let answer, let arguments):
            switch answer {
            case .lines(let lines):
                for stat in lines {
                    BinaryEncoder.writeStat(
                        opcode: opcode, opaque: opaque, name: stat.name, value: stat.value.text, into: &out)
                }
                BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, into: &out)
            case .reset, .accepted:
                // Only the terminating STAT packet, as the text protocol's RESET and OK.
                BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, into: &out)
            case .refused:
                BinaryEncoder.writeError(
                    opcode: opcode, status: .invalidArguments, opaque: opaque,
                    message: "stats \(arguments.joined(separator: " ")) not allowed", into: &out)
            case .unknown:
                fail(.keyNotFound, into: &out)
            }
        case .refused(.permission): fail(.accessDenied, into: &out)  // quiet commands too: a refusal is an error
        case .refused(.unauthenticated), .authenticationFailed: fail(.authenticationError, into: &out)
        case .refused(.notAllowed(let command)):
            BinaryEncoder.writeError(
                opcode: opcode, status: .authenticationError, opaque: opaque,
                message: "\(command.rawValue) not allowed",
                into: &out)
        case .authenticated:
            let text: StaticString = "Authenticated"
            BinaryEncoder.writeHeader(
                opcode: opcode, status: .ok, bodyLength: text.utf8CodeUnitCount, opaque: opaque, into: &out)
            out.writeStaticString(text)
        case .saslMechanisms(let list):
            list.withUnsafeBytes { BinaryEncoder.writeResponse(opcode: opcode, opaque: opaque, value: $0, into: &out) }
        case .saslChallenge(let challenge):
            challenge.withUnsafeBytes {
                BinaryEncoder.writeResponse(
                    opcode: opcode, status: .authenticationContinue, opaque: opaque, value: $0, into: &out)
            }
        case .error(let error):
            if error.disposition != .close { fail(error.binaryStatus, into: &out) }
        // Outcomes of commands the binary protocol does not have.
        case .end, .info, .certificatesRefreshed, .refused: fail(.unknownCommand, into: &out)
        }
    }

    private func succeed(cas: UInt64 = 0, into out: inout ByteBuffer) {
        if !form.quiet { BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, cas: cas, into: &out) }
    }

    private func fail(_ status: BinaryStatus, into out: inout ByteBuffer) {
        BinaryEncoder.writeError(opcode: opcode, status: status, opaque: opaque, into: &out)
    }
}
