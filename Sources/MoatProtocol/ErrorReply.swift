/// A protocol error is a reply, with what happens to the connection afterwards. Its line is a static
/// string, so that an error (and every decoded request, which may be one) is a plain value: copied
/// without reference counting.
public struct ErrorReply: Sendable, Equatable {
    public enum Disposition: Sendable, Equatable {
        /// Send the reply and read the next command.
        case reply
        /// Send the reply, then close.
        case replyAndClose
        /// Close without a reply (memcached does this for forged HTTP requests).
        case close
    }

    /// The text protocol's reply line, without its CRLF (empty: none).
    public let line: StaticString
    public var disposition: Disposition
    /// The binary protocol's status for the errors its decoder finds.
    public var binaryStatus: BinaryStatus

    public init(
        _ line: StaticString, _ disposition: Disposition = .reply, binaryStatus: BinaryStatus = .unknownCommand
    ) {
        self.line = line
        self.disposition = disposition
        self.binaryStatus = binaryStatus
    }

    /// The reply line as text.
    public var message: String { line.description }

    public static func == (lhs: ErrorReply, rhs: ErrorReply) -> Bool {
        lhs.disposition == rhs.disposition && lhs.binaryStatus == rhs.binaryStatus
            && lhs.line.utf8CodeUnitCount == rhs.line.utf8CodeUnitCount
            && lhs.line.withUTF8Buffer { l in rhs.line.withUTF8Buffer { r in l.elementsEqual(r) } }
    }

    public static let error = ErrorReply("ERROR")
    public static let badCommandLine = ErrorReply("CLIENT_ERROR bad command line format")
    /// The block did not end where its declared length said: what follows cannot be trusted to be
    /// a command, so the connection is closed (memcached reads on).
    public static let badDataChunk = ErrorReply("CLIENT_ERROR bad data chunk", .replyAndClose)
    /// A storage line whose data block cannot be located (no readable length, or tokens shifted by a
    /// key with a space): the block would be read as commands, so the connection is closed.
    public static let badCommandLineFraming = ErrorReply("CLIENT_ERROR bad command line format", .replyAndClose)
    public static let errorFraming = ErrorReply("ERROR", .replyAndClose)
    public static let invalidDelta = ErrorReply("CLIENT_ERROR invalid numeric delta argument")
    public static let invalidExptime = ErrorReply("CLIENT_ERROR invalid exptime argument")
    public static let badDeleteUsage = ErrorReply(
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")
    public static let lineTooLong = ErrorReply("CLIENT_ERROR line too long", .replyAndClose)
    public static let tooLarge = ErrorReply("SERVER_ERROR object too large for cache")
    public static let forgedHTTP = ErrorReply("", .close)

    // The binary decoder's errors.
    /// An opcode Moat does not serve: answered 0x81, its body skipped.
    public static let unknownOpcode = ErrorReply("ERROR", binaryStatus: .unknownCommand)
    /// Lengths inconsistent with each other or with the opcode, or a key over 250 bytes: answered 0x04
    /// ("Invalid arguments") and closed, as memcached.
    public static let invalidArguments = ErrorReply(
        "CLIENT_ERROR bad command line format", .replyAndClose, binaryStatus: .invalidArguments)
    /// A header whose first byte is not 0x80: the stream cannot be framed any more; closed, no reply.
    public static let badMagic = ErrorReply("", .close)
}
