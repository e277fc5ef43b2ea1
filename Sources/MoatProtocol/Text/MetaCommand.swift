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

/// Standard base64 with padding, for the `b` flag's binary keys. Allocation-free.
public enum Base64 {
    @inline(__always)
    static func sextet(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x41...0x5A: return c - 0x41
        case 0x61...0x7A: return c - 0x61 + 26
        case 0x30...0x39: return c - 0x30 + 52
        case 0x2B: return 62
        case 0x2F: return 63
        default: return nil
        }
    }

    /// The decoded length, or nil when `encoded` is not padded standard base64 of at least one byte.
    public static func decodedLength(_ encoded: UnsafeRawBufferPointer) -> Int? {
        let n = encoded.count
        guard n > 0, n % 4 == 0 else { return nil }
        var padding = 0
        if encoded[n - 1] == 0x3D { padding += 1 }
        if encoded[n - 2] == 0x3D { padding += 1 }
        if padding == 1, encoded[n - 2] == 0x3D { return nil }
        for index in 0..<(n - padding) where sextet(encoded[index]) == nil { return nil }
        let length = n / 4 * 3 - padding
        return length > 0 ? length : nil
    }

    /// Decodes validated input (see `decodedLength`) into `target`, which must hold the decoded length.
    public static func decode(_ encoded: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer) -> Int {
        var out = 0
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in encoded {
            guard let value = sextet(byte) else { break }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                target[out] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                out += 1
            }
        }
        return out
    }

    /// Runs `body` on the decoded key, held on the stack (keys are at most 250 encoded bytes).
    public static func withDecoded<R>(_ encoded: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R)
        rethrows -> R
    {
        try withUnsafeTemporaryAllocation(byteCount: encoded.count / 4 * 3 + 3, alignment: 1) { scratch in
            let count = decode(encoded, into: scratch)
            return try body(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
        }
    }

    static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    public static func encode(_ bytes: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let table = UnsafeRawBufferPointer(start: alphabet.utf8Start, count: 64)
        let length = (bytes.count + 2) / 3 * 4
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
            var o = 0
            var i = 0
            while i < bytes.count {
                let b0 = UInt32(bytes[i])
                let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
                let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
                let triple = b0 << 16 | b1 << 8 | b2
                target[o] = table[Int(triple >> 18 & 63)]
                target[o + 1] = table[Int(triple >> 12 & 63)]
                target[o + 2] = i + 1 < bytes.count ? table[Int(triple >> 6 & 63)] : 0x3D
                target[o + 3] = i + 2 < bytes.count ? table[Int(triple & 63)] : 0x3D
                o += 4
                i += 3
            }
            return o
        }
    }
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
