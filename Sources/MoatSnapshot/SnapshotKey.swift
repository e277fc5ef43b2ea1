import Crypto

#if canImport(Glibc)
import Glibc
#endif

/// The key that encrypts and authenticates snapshots (`-o restore_key=FILE`): 32 bytes, as the file
/// holds them or as 64 hexadecimal digits (a trailing newline is allowed). systemd's credentials
/// (`LoadCredential=`, `SetCredentialEncrypted=`) are the intended source.
public struct SnapshotKey: Sendable {
    let key: SymmetricKey

    public init(bytes: [UInt8]) throws(SnapshotError) {
        var bytes = bytes
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        if bytes.count == 64, let decoded = Self.hex(bytes) { bytes = decoded }
        guard bytes.count == 32 else {
            throw .badKey("\(bytes.count) bytes; it must hold 32 bytes, raw or as 64 hexadecimal digits")
        }
        key = SymmetricKey(data: bytes)
    }

    /// Reads the key file (a regular file, not followed through a symlink).
    public init(path: String) throws(SnapshotError) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .badKey("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 129)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw .badKey("cannot read \(path): \(String(cString: strerror(errno)))") }
        guard count <= 128 else { throw .badKey("\(path) is longer than a key") }
        try self.init(bytes: Array(buffer[0..<count]))
    }

    private static func hex(_ digits: [UInt8]) -> [UInt8]? {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
