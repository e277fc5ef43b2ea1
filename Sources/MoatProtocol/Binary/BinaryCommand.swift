/// What a binary request asks for. Generic over its byte type: `UnsafeRawBufferPointer` for the
/// borrowed view the decoder hands out (`BinaryCommand`), `[UInt8]` for an owned copy (`BinaryRequest`).
public enum BinaryOperation<Bytes> {
    /// get, getq, getk, getkq (`quiet`: no reply on a miss; `includeKey`: the reply carries the key).
    case get(key: Bytes, quiet: Bool, includeKey: Bool)
    /// gat, gatq, gatk, gatkq.
    case getAndTouch(key: Bytes, exptime: UInt32, quiet: Bool, includeKey: Bool)
    case touch(key: Bytes, exptime: UInt32)
    /// set, add, replace, append, prepend and their quiet forms (`verb` is never `.cas`: a CAS in the
    /// header makes set/add/replace a compare-and-swap).
    case store(verb: StoreVerb, key: Bytes, value: Bytes, flags: UInt32, exptime: UInt32, quiet: Bool)
    /// A storage request whose value exceeds `-I`: its value is being swallowed, never buffered.
    case storeTooLarge(verb: StoreVerb, key: Bytes, quiet: Bool)
    case delete(key: Bytes, quiet: Bool)
    /// incr/decr; `exptime` 0xffffffff means: do not create a missing counter.
    case arithmetic(key: Bytes, increment: Bool, delta: UInt64, initial: UInt64, exptime: UInt32, quiet: Bool)
    case quit(quiet: Bool)
    case flush(exptime: UInt32, quiet: Bool)
    case noop
    case version
    /// `key` empty: the general statistics; otherwise a group (`settings`, `items`, ...).
    case stat(key: Bytes)
    case verbosity(level: UInt32)
    /// SASL list-mechs (0x20).
    case saslListMechanisms
    /// SASL auth (0x21, `isStep` false) or step (0x22): the key names the mechanism, the value carries
    /// the client's message.
    case saslAuthenticate(mechanism: Bytes, data: Bytes, isStep: Bool)
    /// An opcode Moat does not serve: answer 0x81, the body is skipped.
    case unknownCommand
    /// Lengths inconsistent with each other or with the opcode, or a key over 250 bytes: answer 0x04
    /// ("Invalid arguments") and close, as memcached.
    case invalidArguments
    /// A SASL request naming a mechanism longer than any (over 32 bytes): answer 0x04, the body is
    /// skipped and the connection stays, as memcached (the framing is intact).
    case mechanismTooLong
    /// The first byte of a header is not 0x80: the stream cannot be framed any more; close, no reply.
    case badMagic

    public func map<Other>(_ transform: (Bytes) -> Other) -> BinaryOperation<Other> {
        switch self {
        case .get(let key, let quiet, let includeKey):
            return .get(key: transform(key), quiet: quiet, includeKey: includeKey)
        case .getAndTouch(let key, let exptime, let quiet, let includeKey):
            return .getAndTouch(key: transform(key), exptime: exptime, quiet: quiet, includeKey: includeKey)
        case .touch(let key, let exptime): return .touch(key: transform(key), exptime: exptime)
        case .store(let verb, let key, let value, let flags, let exptime, let quiet):
            return .store(
                verb: verb, key: transform(key), value: transform(value), flags: flags, exptime: exptime, quiet: quiet)
        case .storeTooLarge(let verb, let key, let quiet):
            return .storeTooLarge(verb: verb, key: transform(key), quiet: quiet)
        case .delete(let key, let quiet): return .delete(key: transform(key), quiet: quiet)
        case .arithmetic(let key, let increment, let delta, let initial, let exptime, let quiet):
            return .arithmetic(
                key: transform(key), increment: increment, delta: delta, initial: initial, exptime: exptime,
                quiet: quiet)
        case .quit(let quiet): return .quit(quiet: quiet)
        case .flush(let exptime, let quiet): return .flush(exptime: exptime, quiet: quiet)
        case .noop: return .noop
        case .version: return .version
        case .stat(let key): return .stat(key: transform(key))
        case .verbosity(let level): return .verbosity(level: level)
        case .saslListMechanisms: return .saslListMechanisms
        case .saslAuthenticate(let mechanism, let data, let isStep):
            return .saslAuthenticate(mechanism: transform(mechanism), data: transform(data), isStep: isStep)
        case .unknownCommand: return .unknownCommand
        case .invalidArguments: return .invalidArguments
        case .mechanismTooLong: return .mechanismTooLong
        case .badMagic: return .badMagic
        }
    }
}

extension BinaryOperation: Equatable where Bytes: Equatable {}
extension BinaryOperation: Sendable where Bytes: Sendable {}

/// One decoded binary request, borrowing key, extras and value from the input buffer. Valid only
/// inside `BinaryDecoder.decode`'s callback; `owned()` makes a `BinaryRequest` that outlives it.
public struct BinaryCommand {
    /// The request header (its opaque is echoed and its CAS checked; for `.badMagic`, what was read).
    public var header: BinaryHeader
    public var operation: BinaryOperation<UnsafeRawBufferPointer>

    public init(header: BinaryHeader, operation: BinaryOperation<UnsafeRawBufferPointer>) {
        self.header = header
        self.operation = operation
    }

    public func owned() -> BinaryRequest {
        BinaryRequest(header: header, operation: operation.map { Array($0) })
    }
}

/// A decoded binary request that owns its bytes (tests, tools).
public struct BinaryRequest: Sendable, Equatable {
    public var header: BinaryHeader
    public var operation: BinaryOperation<[UInt8]>

    public init(header: BinaryHeader, operation: BinaryOperation<[UInt8]>) {
        self.header = header
        self.operation = operation
    }
}
