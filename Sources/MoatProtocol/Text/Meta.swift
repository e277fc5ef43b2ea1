import NIOCore

/// A meta request's flags, parsed once by the decoder: which letters were given and the numbers some
/// carry. The decoder turns them into the operation's options; replies echo flags in request order,
/// so the raw tokens travel alongside (`MetaReturn`).
struct MetaFlags: Sendable, Equatable {
    var letters = MetaLetters()
    /// T: new TTL (exptime).
    var ttl: Int64 = 0
    /// N: vivify on miss with this exptime.
    var vivifyTTL: Int64 = 0
    /// R: win the recache token when the TTL left is below this exptime.
    var recacheTTL: Int64 = 0
    /// C: compare CAS.
    var compareCAS: UInt64 = 0
    /// E: explicit new CAS.
    var newCAS: UInt64 = 0
    /// F: client flags (ms).
    var clientFlags: UInt32 = 0
    /// M: the mode letter (ms: E A P R S; ma: I + D -); 0 when absent.
    var mode: UInt8 = 0
    /// D: delta (ma), 1 by default.
    var delta: UInt64 = 1
    /// J: initial value on vivify (ma).
    var initial: UInt64 = 0

    @inline(__always)
    func has(_ letter: Unicode.Scalar) -> Bool { letters.has(letter) }

    /// The value of a numeric flag when its letter was given.
    @inline(__always)
    func given<T>(_ letter: Unicode.Scalar, _ value: T) -> T? { letters.has(letter) ? value : nil }
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
