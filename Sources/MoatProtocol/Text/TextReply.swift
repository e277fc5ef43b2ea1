import NIOCore

/// Fixed replies of the text protocol.
public enum TextReply: Sendable {
    case stored, notStored, exists, notFound, deleted, touched, ok, end, reset
    case outOfMemory

    @usableFromInline
    var bytes: StaticString {
        switch self {
        case .stored: return "STORED\r\n"
        case .notStored: return "NOT_STORED\r\n"
        case .exists: return "EXISTS\r\n"
        case .notFound: return "NOT_FOUND\r\n"
        case .deleted: return "DELETED\r\n"
        case .touched: return "TOUCHED\r\n"
        case .ok: return "OK\r\n"
        case .end: return "END\r\n"
        case .reset: return "RESET\r\n"
        case .outOfMemory: return "SERVER_ERROR out of memory storing object\r\n"
        }
    }
}

/// Encodes replies straight into the connection's output buffer (no intermediate values).
public enum TextEncoder {
    @inlinable
    public static func write(_ reply: TextReply, into out: inout ByteBuffer) {
        out.writeStaticString(reply.bytes)
    }

    /// `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`
    public static func writeValue(key: [UInt8], flags: UInt32, data: [UInt8], cas: UInt64?, into out: inout ByteBuffer)
    {
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in writeValue(key: k, flags: flags, data: d, cas: cas, into: &out) }
        }
    }

    /// `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`, straight from the item's memory.
    /// The whole reply is written through one raw pointer: each separate ByteBuffer write pays NIO's
    /// bookkeeping (a capacity check and an exclusivity check), which dominated this function.
    public static func writeValue(
        key: UnsafeRawBufferPointer, flags: UInt32, data: UnsafeRawBufferPointer, cas: UInt64?,
        into out: inout ByteBuffer
    ) {
        let bound = key.count + data.count + 6 + 1 + 10 + 1 + 10 + 1 + 20 + 4
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { target in
            var p = target.baseAddress!
            func put(_ s: StaticString) {
                p.copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
                p += s.utf8CodeUnitCount
            }
            func put(_ bytes: UnsafeRawBufferPointer) {
                if let base = bytes.baseAddress { p.copyMemory(from: base, byteCount: bytes.count) }
                p += bytes.count
            }
            func put(_ value: UInt64) {
                p += formatDecimal(value, into: p)
            }
            put("VALUE ")
            put(key)
            put(" ")
            put(UInt64(flags))
            put(" ")
            put(UInt64(data.count))
            if let cas {
                put(" ")
                put(cas)
            }
            put("\r\n")
            put(data)
            put("\r\n")
            return target.baseAddress!.distance(to: p)
        }
    }

    /// Writes `value` in decimal at `target` (room for 20 digits), returning the digit count.
    @inline(__always)
    static func formatDecimal(_ value: UInt64, into target: UnsafeMutableRawPointer) -> Int {
        var digits = 1
        var probe = value
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var v = value
        var index = digits
        repeat {
            index -= 1
            target.storeBytes(of: UInt8(0x30 + v % 10), toByteOffset: index, as: UInt8.self)
            v /= 10
        } while v > 0
        return digits
    }

    /// A bare number line (incr/decr result).
    public static func writeNumber(_ value: UInt64, into out: inout ByteBuffer) {
        writeDecimal(value, into: &out)
        out.writeStaticString("\r\n")
    }

    public static func writeLine(_ text: String, into out: inout ByteBuffer) {
        out.writeString(text)
        out.writeStaticString("\r\n")
    }

    public static func writeError(_ error: ErrorReply, into out: inout ByteBuffer) {
        guard error.line.utf8CodeUnitCount > 0 else { return }
        out.writeStaticString(error.line)
        out.writeStaticString("\r\n")
    }

    /// `STAT <name> <value>` lines; the caller ends the list with `END`.
    public static func writeStat(_ name: String, _ value: String, into out: inout ByteBuffer) {
        out.writeStaticString("STAT ")
        out.writeString(name)
        out.writeStaticString(" ")
        out.writeString(value)
        out.writeStaticString("\r\n")
    }

    @inlinable
    static func writeDecimal(_ value: UInt64, into out: inout ByteBuffer) {
        if value < 10 {
            out.writeInteger(UInt8(0x30 + value))
            return
        }
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes of scratch, no heap
        let count = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
            var v = value
            var index = 32
            while v > 0 {
                index -= 1
                scratch[index] = UInt8(0x30 + v % 10)
                v /= 10
            }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[index..<32]))
            return 32 - index
        }
        _ = count
    }
}
