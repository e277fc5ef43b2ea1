/// Why a snapshot was not written or not restored, in words for the log.
public enum SnapshotError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened, read or written (errno's text).
    case io(String)
    case notASnapshot
    case unsupportedVersion(UInt16)
    /// Older than `-o restore_max_age`: deletes made while the server was down are not in it.
    case tooOld(age: Int64, maxAge: Int64)
    /// Encrypted, and no `-o restore_key` is set.
    case encryptedWithoutKey
    /// `-o restore_key` is set and the file is not encrypted: anyone who can write its directory
    /// could have written it.
    case notEncrypted
    /// The file ends before its last chunk.
    case truncated
    /// A checksum, length or record that does not hold.
    case corrupt(String)
    /// A chunk that does not open under the key: another key, or bytes changed.
    case tampered(chunk: UInt64)
    /// The key file is not 32 bytes (raw, or as 64 hexadecimal digits).
    case badKey(String)

    public var description: String {
        switch self {
        case .io(let message): return message
        case .notASnapshot: return "not a Moat snapshot (no MOATSNAP header)"
        case .unsupportedVersion(let version): return "snapshot format version \(version), this Moat reads 1"
        case .tooOld(let age, let maxAge):
            return
                """
                written \(age) s ago, older than restore_max_age (\(maxAge) s): deletes made since would come \
                back (raise -o restore_max_age to restore it anyway)
                """
        case .encryptedWithoutKey: return "encrypted, and no -o restore_key is set"
        case .notEncrypted:
            return "not encrypted while -o restore_key is set: anyone who can write its directory could have written it"
        case .truncated: return "truncated (it ends before its last chunk)"
        case .corrupt(let why): return "corrupt: \(why)"
        case .tampered(let chunk):
            return "chunk \(chunk) does not authenticate under the restore key (another key, or altered bytes)"
        case .badKey(let why): return "restore key: \(why)"
        }
    }
}
