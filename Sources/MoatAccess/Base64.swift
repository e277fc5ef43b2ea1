/// Strict RFC 4648 base64 (standard alphabet, `=` padding required), written here rather than
/// taken from Foundation so that the module stays free of Foundation and so that decoding refuses
/// everything non-canonical: whitespace, missing padding, stray bits. SCRAM and the credential
/// file both compare or store these strings, and one canonical spelling per value keeps that simple.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= input.count {
            let n = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            index += 3
        }
        switch input.count - index {
        case 1:
            let n = UInt32(input[index]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        case 2:
            let n = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(UInt8(ascii: "="))
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Returns nil for anything that `encode` would not have produced.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let input = Array(text)
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            let padding =
                isLast
                ? (input[index + 3] == UInt8(ascii: "=") ? (input[index + 2] == UInt8(ascii: "=") ? 2 : 1) : 0) : 0
            var n: UInt32 = 0
            for offset in 0..<(4 - padding) {
                let value = decodeTable[Int(input[index + offset])]
                guard value != 0xFF else { return nil }
                n = n << 6 | UInt32(value)
            }
            n <<= UInt32(6 * padding)
            switch padding {
            case 0:
                out.append(UInt8(n >> 16 & 0xFF))
                out.append(UInt8(n >> 8 & 0xFF))
                out.append(UInt8(n & 0xFF))
            case 1:
                guard n & 0xFF == 0 else { return nil }  // bits past the last byte must be zero
                out.append(UInt8(n >> 16 & 0xFF))
                out.append(UInt8(n >> 8 & 0xFF))
            default:
                guard n & 0xFFFF == 0 else { return nil }
                out.append(UInt8(n >> 16 & 0xFF))
            }
            index += 4
        }
        return out
    }

    static func decode(_ text: String) -> [UInt8]? { decode(Array(text.utf8)) }
}
