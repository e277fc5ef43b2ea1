import NIOCore

/// Encodes binary-protocol responses straight into the connection's output buffer.
public enum BinaryEncoder {
    /// A response header: magic 0x81, the request's opcode and opaque, the lengths, status and CAS.
    @inline(__always)
    public static func writeHeader(
        opcode: UInt8, status: BinaryStatus, keyLength: Int = 0, extrasLength: Int = 0, bodyLength: Int = 0,
        opaque: UInt32, cas: UInt64 = 0, into out: inout ByteBuffer
    ) {
        out.writeInteger(BinaryMagic.response)
        out.writeInteger(opcode)
        out.writeInteger(UInt16(truncatingIfNeeded: keyLength))
        out.writeInteger(UInt8(truncatingIfNeeded: extrasLength))
        out.writeInteger(UInt8(0))  // data type: raw bytes
        out.writeInteger(status.rawValue)
        out.writeInteger(UInt32(truncatingIfNeeded: bodyLength))
        out.writeInteger(opaque)
        out.writeInteger(cas)
    }

    /// A whole response: header, then extras, key and value.
    public static func writeResponse(
        opcode: UInt8, status: BinaryStatus = .ok, opaque: UInt32, cas: UInt64 = 0,
        extras: UnsafeRawBufferPointer? = nil, key: UnsafeRawBufferPointer? = nil, value: UnsafeRawBufferPointer? = nil,
        into out: inout ByteBuffer
    ) {
        let e = extras?.count ?? 0
        let k = key?.count ?? 0
        let v = value?.count ?? 0
        writeHeader(
            opcode: opcode, status: status, keyLength: k, extrasLength: e, bodyLength: e + k + v, opaque: opaque,
            cas: cas, into: &out)
        if let extras { out.writeBytes(extras) }
        if let key { out.writeBytes(key) }
        if let value { out.writeBytes(value) }
    }

    /// A successful get/gat (and touch, without a value): 4 bytes of flags, the key when asked for,
    /// the value, from the item's memory.
    public static func writeItem(
        opcode: UInt8, opaque: UInt32, cas: UInt64, flags: UInt32, key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?,
        into out: inout ByteBuffer
    ) {
        let k = key?.count ?? 0
        let v = value?.count ?? 0
        writeHeader(
            opcode: opcode, status: .ok, keyLength: k, extrasLength: 4, bodyLength: 4 + k + v, opaque: opaque, cas: cas,
            into: &out)
        out.writeInteger(flags)
        if let key { out.writeBytes(key) }
        if let value { out.writeBytes(value) }
    }

    /// An error response whose body is memcached's message for `status` (or `message`).
    public static func writeError(
        opcode: UInt8, status: BinaryStatus, opaque: UInt32, message: String? = nil, into out: inout ByteBuffer
    ) {
        if let message {
            let bytes = Array(message.utf8)
            writeHeader(opcode: opcode, status: status, bodyLength: bytes.count, opaque: opaque, into: &out)
            out.writeBytes(bytes)
        } else {
            let text = status.message
            writeHeader(opcode: opcode, status: status, bodyLength: text.utf8CodeUnitCount, opaque: opaque, into: &out)
            out.writeStaticString(text)
        }
    }

    /// A not-found reply for getk/gatk: the key in the body, no message (as memcached).
    public static func writeKeyNotFound(
        opcode: UInt8, opaque: UInt32, key: UnsafeRawBufferPointer, into out: inout ByteBuffer
    ) {
        writeHeader(
            opcode: opcode, status: .keyNotFound, keyLength: key.count, bodyLength: key.count, opaque: opaque,
            into: &out)
        out.writeBytes(key)
    }

    /// One `stat` line: key = name, value = value. An empty name ends the list.
    public static func writeStat(opcode: UInt8, opaque: UInt32, name: String, value: String, into out: inout ByteBuffer)
    {
        let n = name.utf8.count
        let v = value.utf8.count
        writeHeader(opcode: opcode, status: .ok, keyLength: n, bodyLength: n + v, opaque: opaque, into: &out)
        out.writeString(name)
        out.writeString(value)
    }
}
