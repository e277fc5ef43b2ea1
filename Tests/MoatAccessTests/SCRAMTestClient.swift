import Crypto
import CryptoExtras
import Foundation
import MoatAccess

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
func unbase64(_ text: some StringProtocol) -> [UInt8]? { Data(base64Encoded: String(text)).map { Array($0) } }

/// A minimal SCRAM client (RFC 5802), written from the RFC against swift-crypto directly rather than
/// through MoatAccess's own helpers, so that a round trip checks the server against an independent
/// implementation.
struct SCRAMTestClient {
    let mechanism: SASLMechanism
    let user: String
    let password: [UInt8]
    let clientNonce: String
    var gs2Header = "n,,"
    /// Attributes inserted before p= in client-final (extensions the server must ignore).
    var finalExtensions = ""
    private(set) var authMessage: [UInt8] = []
    private(set) var serverKey: [UInt8] = []

    init(
        _ mechanism: SASLMechanism, user: String, password: String,
        nonce: String = UUID().uuidString.replacingOccurrences(of: "-", with: "")
    ) {
        self.mechanism = mechanism
        self.user = user
        self.password = Array(password.utf8)
        self.clientNonce = nonce
    }

    var clientFirstBare: String {
        let escaped = user.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
        return "n=\(escaped),r=\(clientNonce)"
    }

    func clientFirst() -> [UInt8] { bytes(gs2Header + clientFirstBare) }

    /// Parses server-first and returns client-final, or nil when server-first is not acceptable.
    mutating func clientFinal(serverFirst: [UInt8]) -> [UInt8]? {
        let attributes = text(serverFirst).split(separator: ",")
        guard attributes.count == 3,
            attributes[0].hasPrefix("r=" + clientNonce), attributes[0].count > clientNonce.count + 2,
            attributes[1].hasPrefix("s="), let salt = unbase64(attributes[1].dropFirst(2)),
            attributes[2].hasPrefix("i="), let iterations = Int(attributes[2].dropFirst(2))
        else { return nil }
        let salted = pbkdf2(salt: salt, iterations: iterations)
        let clientKey = hmac(salted, bytes("Client Key"))
        let storedKey = hash(clientKey)
        serverKey = hmac(salted, bytes("Server Key"))
        let withoutProof = "c=\(base64(bytes(gs2Header))),\(attributes[0])\(finalExtensions)"
        authMessage = bytes(clientFirstBare + "," + text(serverFirst) + "," + withoutProof)
        let signature = hmac(storedKey, authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        return bytes(withoutProof + ",p=" + base64(proof))
    }

    func verifies(serverFinal: [UInt8]) -> Bool {
        text(serverFinal) == "v=" + base64(hmac(serverKey, authMessage))
    }

    private var isSHA256: Bool { mechanism == .scramSHA256 }

    private func pbkdf2(salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = try! KDF.Insecure.PBKDF2.deriveKey(
            from: password, salt: salt, using: isSHA256 ? .sha256 : .insecureSHA1,
            outputByteCount: isSHA256 ? 32 : 20, unsafeUncheckedRounds: iterations)
        return key.withUnsafeBytes { Array($0) }
    }

    private func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        isSHA256
            ? Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
            : Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    private func hash(_ data: [UInt8]) -> [UInt8] {
        isSHA256 ? Array(SHA256.hash(data: data)) : Array(Insecure.SHA1.hash(data: data))
    }
}

/// Drives a whole SCRAM exchange; returns the final step and the client.
func runSCRAM(_ client: inout SCRAMTestClient, store: CredentialStore, secret: [UInt8] = Array(repeating: 9, count: 32))
    -> SASLStep
{
    var exchange = SASLExchange(mechanism: client.mechanism, store: store, serverSecret: secret)
    guard case .challenge(let serverFirst) = exchange.start(client.clientFirst()) else {
        return .failure(.malformed)
    }
    guard let final = client.clientFinal(serverFirst: serverFirst) else { return .failure(.malformed) }
    let second = exchange.step(final)
    guard case .challenge(let serverFinal) = second else { return second }
    guard client.verifies(serverFinal: serverFinal) else { return .failure(.badCredentials) }
    return exchange.step([])
}

/// SCRAM's minimum, so tests do not spend their time in PBKDF2.
let testIterations = 4096

func store(_ users: [(String, String)], iterations: Int = testIterations) throws -> CredentialStore {
    var store = CredentialStore()
    for (name, password) in users {
        try store.add(user: name, password: bytes(password), iterations: iterations)
    }
    return store
}
