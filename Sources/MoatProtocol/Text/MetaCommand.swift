import NIOCore

/// The meta commands of the text protocol.
public enum MetaVerb: UInt8, Sendable, Equatable {
    case get, set, delete, arithmetic, noop, debug
}

/// A meta request's flags, parsed once by the decoder: which letters were given (one bit each) and
/// the numbers some carry. Replies echo flags in request order, so the raw tokens travel alongside.
public struct MetaFlags: Sendable, Equatable {
    /// Bit `letter - "A"` for each flag letter given ("A" through "z" fit in 58 bits).
    public private(set) var present: UInt64 = 0
    /// T: new TTL (exptime).
    public var ttl: Int64 = 0
    /// N: vivify on miss with this exptime.
    public var vivifyTTL: Int64 = 0
    /// R: win the recache token when the TTL left is below this exptime.
    public var recacheTTL: Int64 = 0
    /// C: compare CAS.
    public var compareCAS: UInt64 = 0
    /// E: explicit new CAS.
    public var newCAS: UInt64 = 0
    /// F: client flags (ms).
    public var clientFlags: UInt32 = 0
    /// M: the mode letter (ms: E A P R S; ma: I + D -); 0 when absent.
    public var mode: UInt8 = 0
    /// D: delta (ma), 1 by default.
    public var delta: UInt64 = 1
    /// J: initial value on vivify (ma).
    public var initial: UInt64 = 0

    public init() {}

    @inline(__always)
    static func bit(_ letter: UInt8) -> UInt64 { 1 << UInt64(letter &- 0x41) }

    @inline(__always)
    public func has(_ letter: Unicode.Scalar) -> Bool { present & Self.bit(UInt8(letter.value)) != 0 }

    mutating func insert(_ letter: UInt8) { present |= Self.bit(letter) }
}

/// One decoded meta request, borrowing from the input buffer (valid only inside the decoder's callback).
public struct MetaCommand {
    public let verb: MetaVerb
    /// The key as sent: base64 when the `b` flag is given (see `Base64.withDecoded`).
    public let key: UnsafeRawBufferPointer
    public let flags: MetaFlags
    /// The flag tokens, space separated, in request order.
    public let tokens: UnsafeRawBufferPointer
    /// The data block of `ms` (empty otherwise, and when `valueTooLarge`).
    public let value: UnsafeRawBufferPointer
    /// `ms` whose data exceeds the item size limit: the block is being swallowed.
    public let valueTooLarge: Bool

    public var binaryKey: Bool { flags.has("b") }
    public var quiet: Bool { flags.has("q") }

    public func owned() -> MetaRequest {
        MetaRequest(
            verb: verb, key: Array(key), flags: flags, tokens: String(decoding: tokens, as: UTF8.self),
            value: Array(value),
            valueTooLarge: valueTooLarge)
    }
}

/// The owned form of `MetaCommand`.
public struct MetaRequest: Sendable, Equatable {
    public var verb: MetaVerb
    public var key: [UInt8]
    public var flags: MetaFlags
    public var tokens: String
    public var value: [UInt8]
    public var valueTooLarge: Bool
}

extension ErrorReply {
    public static let metaInvalidFlag = ErrorReply("CLIENT_ERROR invalid flag")
    public static let metaDuplicateFlag = ErrorReply("CLIENT_ERROR duplicate flag")
    public static let metaInvalidOrDuplicate = ErrorReply("CLIENT_ERROR invalid or duplicate flag")
    public static let metaBadToken = ErrorReply("CLIENT_ERROR bad token in command line format")
    public static let metaBadModeLength = ErrorReply("CLIENT_ERROR incorrect length for M token")
    public static let metaBadInitial = ErrorReply("CLIENT_ERROR invalid numeric initial value")
    public static let metaBadDelta = ErrorReply("CLIENT_ERROR invalid numeric delta value")
    public static let metaBadKeyEncoding = ErrorReply("CLIENT_ERROR error decoding key")
    public static let metaOpaqueTooLong = ErrorReply("CLIENT_ERROR opaque token too long")
    public static let metaGetTooManyFlags = ErrorReply("CLIENT_ERROR options flags are too long")
    public static let metaTooManyFlags = ErrorReply("CLIENT_ERROR options flags too long")
    public static let metaBadSetMode = ErrorReply("CLIENT_ERROR invalid mode for ms M token")
    public static let metaBadArithmeticMode = ErrorReply("CLIENT_ERROR invalid mode for ma M token")
}

/// memcached's meta bounds.
public enum MetaLimits {
    /// Flag tokens after the key (mg, md, ma; ms allows one fewer as its length takes a token).
    public static let maxFlags = 17
    /// An opaque token, its `O` included.
    public static let maxOpaqueLength = 32
}

/// Pieces of meta replies, written straight into the output buffer.
public enum MetaEncoder {
    /// ` <letter><number>`
    public static func writeFlag(_ letter: UInt8, _ value: UInt64, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(0x20))
        out.writeInteger(letter)
        TextEncoder.writeDecimal(value, into: &out)
    }

    /// ` <letter><number>`, -1 included (TTLs).
    public static func writeFlag(_ letter: UInt8, signed value: Int64, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(0x20))
        out.writeInteger(letter)
        if value < 0 { out.writeInteger(UInt8(ascii: "-")) }
        TextEncoder.writeDecimal(value.magnitude, into: &out)
    }

    /// ` k<key>`, base64 and followed by ` b` for binary keys (as memcached).
    public static func writeKey(_ key: UnsafeRawBufferPointer, binary: Bool, into out: inout ByteBuffer) {
        out.writeStaticString(" k")
        if binary {
            Base64.encode(key, into: &out)
            out.writeStaticString(" b")
        } else {
            out.writeBytes(key)
        }
    }

    /// ` <token>` (an opaque `O...` echoed as sent).
    public static func writeToken(_ token: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        out.writeInteger(UInt8(0x20))
        out.writeBytes(token)
    }

    public static func writeNumber(_ value: UInt64, into out: inout ByteBuffer) {
        TextEncoder.writeDecimal(value, into: &out)
    }
}
