/// The storage commands of the text protocol.
public enum StoreVerb: Sendable, Equatable {
    case set, add, replace, append, prepend, cas
}

/// A storage command whose data block has fully arrived.
public struct StoreRequest: Sendable, Equatable {
    public var verb: StoreVerb
    public var key: [UInt8]
    public var flags: UInt32
    public var exptime: Int64
    public var value: [UInt8]
    /// Only for `cas`.
    public var casUnique: UInt64
    public var noreply: Bool

    public init(
        verb: StoreVerb, key: [UInt8], flags: UInt32, exptime: Int64, value: [UInt8], casUnique: UInt64 = 0,
        noreply: Bool = false
    ) {
        self.verb = verb
        self.key = key
        self.flags = flags
        self.exptime = exptime
        self.value = value
        self.casUnique = casUnique
        self.noreply = noreply
    }
}

/// A protocol error is a reply, with what happens to the connection afterwards.
public struct ErrorReply: Sendable, Equatable {
    public enum Disposition: Sendable, Equatable {
        /// Send the reply and read the next command.
        case reply
        /// Send the reply, then close.
        case replyAndClose
        /// Close without a reply (memcached does this for forged HTTP requests).
        case close
    }

    public var message: String
    public var disposition: Disposition

    public init(_ message: String, _ disposition: Disposition = .reply) {
        self.message = message
        self.disposition = disposition
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
}

/// One decoded text-protocol request.
public enum TextRequest: Sendable, Equatable {
    /// `get`/`gets` (touchExptime nil) and `gat`/`gats`.
    case retrieve(keys: [[UInt8]], withCAS: Bool, touchExptime: Int64?)
    case store(StoreRequest)
    /// A storage command refused before its data arrived (too large); the data is being swallowed.
    case storeTooLarge(verb: StoreVerb, key: [UInt8], noreply: Bool)
    case delete(key: [UInt8], noreply: Bool)
    case arithmetic(key: [UInt8], delta: UInt64, increment: Bool, noreply: Bool)
    case touch(key: [UInt8], exptime: Int64, noreply: Bool)
    case flushAll(delay: Int64, noreply: Bool)
    case version
    case verbosity(level: UInt32, noreply: Bool)
    case quit
    case shutdown(arguments: [String])
    case stats(arguments: [String])
    case lruCrawler(arguments: [String])
    case watch(arguments: [String])
    case refreshCerts
    case cacheMemlimit(megabytes: UInt64, noreply: Bool)
    /// An error to answer (with `noreply`, memcached stays silent for errors of that command too).
    case error(ErrorReply, noreply: Bool)
    /// `mg ms md ma mn me`.
    case meta(MetaRequest)
}
