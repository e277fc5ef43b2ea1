import Crypto
import CryptoExtras

/// The hash a SCRAM variant is built on, and the RFC 5802 §3 primitives over it. An enum rather
/// than generics over `HashFunction`: there are exactly two, and stored values (keys, exchanges)
/// would otherwise need existential boxes.
enum SCRAMHash: Sendable {
    case sha256
    case sha1

    /// Bytes in a digest, and so in StoredKey, ServerKey and a client proof.
    var digestCount: Int {
        switch self {
        case .sha256: SHA256.byteCount
        case .sha1: Insecure.SHA1.byteCount
        }
    }

    func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: Array(SHA256.hash(data: data))
        case .sha1: Array(Insecure.SHA1.hash(data: data))
        }
    }

    func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: key)
        switch self {
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
        case .sha1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: key))
        }
    }

    /// SCRAM's Hi(): PBKDF2 with HMAC over this hash, one block of output. The rounds check in
    /// swift-crypto's `rounds:` variant (>= 210,000) is a policy for password *storage* defaults;
    /// SCRAM's count is fixed by the credential (RFC 5802 allows 4096), hence the unchecked form.
    func saltedPassword(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        precondition(iterations > 0, "PBKDF2 needs at least one iteration")
        let function: KDF.Insecure.PBKDF2.HashFunction = self == .sha256 ? .sha256 : .insecureSHA1
        do {
            let key = try KDF.Insecure.PBKDF2.deriveKey(
                from: password, salt: salt, using: function,
                outputByteCount: digestCount, unsafeUncheckedRounds: iterations)
            return key.withUnsafeBytes { Array($0) }
        } catch {
            // BoringSSL fails only on allocation failure or absurd parameters, which the callers'
            // validation of iterations and lengths rules out.
            preconditionFailure("PBKDF2 failed: \(error)")
        }
    }

    static let clientKeyLabel = Array("Client Key".utf8)
    static let serverKeyLabel = Array("Server Key".utf8)
}

func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    precondition(a.count == b.count)
    return zip(a, b).map { $0 ^ $1 }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
}
