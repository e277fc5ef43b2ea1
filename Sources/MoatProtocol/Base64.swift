import NIOCore

/// Standard base64 (RFC 4648, `=` padding required): the meta protocol's binary keys (the `b` flag),
/// allocation-free over raw buffers, and SCRAM's and the credential file's strings, where decoding
/// refuses every spelling but the canonical one (whitespace, missing padding, stray bits), since those
/// strings are compared and stored. Written here rather than taken from Foundation, which the codecs
/// and the access module do not import.
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

    /// The base64 text of `bytes`.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = ByteBuffer()
        Array(bytes).withUnsafeBytes { encode($0, into: &out) }
        return String(buffer: out)
    }

    /// The bytes `text` encodes, or nil for anything `encode` would not have produced (the empty
    /// text is the empty value).
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let input = Array(text)
        if input.isEmpty { return [] }
        return input.withUnsafeBytes { encoded -> [UInt8]? in
            guard let length = decodedLength(encoded) else { return nil }
            // Canonical: the bits of the last sextet that no byte uses must be zero.
            let n = encoded.count
            if encoded[n - 1] == 0x3D {
                let paddedTwice = encoded[n - 2] == 0x3D
                guard let last = sextet(encoded[n - (paddedTwice ? 3 : 2)]) else { return nil }
                guard last & (paddedTwice ? 0x0F : 0x03) == 0 else { return nil }
            }
            return [UInt8](unsafeUninitializedCapacity: length) { target, count in
                count = decode(encoded, into: UnsafeMutableRawBufferPointer(target))
            }
        }
    }

    public static func decode(_ text: String) -> [UInt8]? { decode(Array(text.utf8)) }
}
