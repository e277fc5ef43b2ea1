/// What a server keeps for one SCRAM variant of one user (RFC 5802 §3): enough to verify a client
/// proof and to prove itself in return, but not the password, nor anything that logs in directly.
public struct SCRAMKeys: Sendable, Equatable {
    public let salt: [UInt8]
    public let iterations: Int
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    public init(salt: [UInt8], iterations: Int, storedKey: [UInt8], serverKey: [UInt8]) {
        self.salt = salt
        self.iterations = iterations
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Derives SCRAM-SHA-256 keys (RFC 7677). For tools and tests; `CredentialStore.add` picks
    /// random salts itself.
    public static func sha256(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys {
        derive(.sha256, password: password, salt: salt, iterations: iterations)
    }

    /// Derives SCRAM-SHA-1 keys (RFC 5802).
    public static func sha1(password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys {
        derive(.sha1, password: password, salt: salt, iterations: iterations)
    }

    static func derive(_ hash: SCRAMHash, password: [UInt8], salt: [UInt8], iterations: Int) -> SCRAMKeys {
        let salted = hash.saltedPassword(password, salt: salt, iterations: iterations)
        let clientKey = hash.hmac(key: salted, SCRAMHash.clientKeyLabel)
        return SCRAMKeys(
            salt: salt, iterations: iterations,
            storedKey: hash.hash(clientKey),
            serverKey: hash.hmac(key: salted, SCRAMHash.serverKeyLabel))
    }

    /// Whether `password` yields these keys: the same work a SCRAM client does, then
    /// H(ClientKey) == StoredKey compared in constant time.
    func matches(password: [UInt8], _ hash: SCRAMHash) -> Bool {
        let salted = hash.saltedPassword(password, salt: salt, iterations: iterations)
        let clientKey = hash.hmac(key: salted, SCRAMHash.clientKeyLabel)
        return constantTimeEquals(hash.hash(clientKey), storedKey)
    }
}

/// One user's keys for both SCRAM variants. Each variant has its own salt, so the two never
/// reveal that they come from the same password.
public struct UserCredential: Sendable, Equatable {
    public let name: String
    public let sha256: SCRAMKeys
    public let sha1: SCRAMKeys

    public init(name: String, sha256: SCRAMKeys, sha1: SCRAMKeys) {
        self.name = name
        self.sha256 = sha256
        self.sha1 = sha1
    }

    func keys(for hash: SCRAMHash) -> SCRAMKeys {
        hash == .sha256 ? sha256 : sha1
    }
}

/// A problem with credentials or their file, worded for the operator who has to fix it.
public struct CredentialError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The users allowed to authenticate, with their SCRAM keys (never their passwords).
public struct CredentialStore: Sendable {
    private var users: [String: UserCredential] = [:]
    /// How many users have each iteration count, per variant: unknown users get the commonest.
    private var iterationTally: [SCRAMHash: [Int: Int]] = [:]
    /// Keys the fake salts of unknown users. Kept in the credential file so that they stay the same
    /// across restarts, as real salts do (`nil`: a file written before it existed; see `unknownUserSaltKey`).
    public var saltKey: [UInt8]?

    public init() {}

    /// PBKDF2 rounds for new credentials: as many as one derivation (paid by each connecting SCRAM
    /// client, and by the server for each PLAIN attempt) can cost without hurting logins, ~10-20 ms.
    /// Measured on an AMD EPYC with SHA extensions: PBKDF2-HMAC-SHA256 takes 0.16-0.19 ms per
    /// 1,000 rounds in swift-crypto's BoringSSL (release build), 0.22 ms in OpenSSL 3 (a typical
    /// client). Cyrus SASL's SCRAM client (pylibmc, the libmemcached tools) refuses a server-first
    /// message with more than 65,536 iterations, so that is the default: ~11-14 ms per derivation.
    public static let defaultIterations = 65_536
    /// The most that Cyrus SASL's SCRAM client accepts (it gives up after server-first above it).
    public static let cyrusClientMaximumIterations = 65_536
    /// RFC 5802 §5.1: a server should not issue fewer than 4096 iterations.
    public static let minimumIterations = 4096
    /// Refused above this: the server pays one derivation per PLAIN or ASCII attempt, on the thread
    /// that serves the connection, and an attacker chooses when. 262,144 rounds are ~50 ms.
    public static let maximumIterations = 262_144
    public static let maximumNameBytes = 250
    public static let maximumPasswordBytes = 1024
    /// Salt bytes accepted from a file; `add` makes 16.
    static let saltBytes = 8...128

    public var userNames: [String] { users.keys.sorted() }
    public var isEmpty: Bool { users.isEmpty }

    public func credential(for name: String) -> UserCredential? {
        users[name]
    }

    /// Adds `user`, replacing any credential it had, with fresh random salts for each variant.
    public mutating func add(user: String, password: [UInt8], iterations: Int = defaultIterations) throws {
        try Self.validate(name: user)
        try Self.validate(password: password)
        try Self.validate(iterations: iterations)
        let credential = UserCredential(
            name: user,
            sha256: .sha256(password: password, salt: randomBytes(16), iterations: iterations),
            sha1: .sha1(password: password, salt: randomBytes(16), iterations: iterations))
        pinSaltKey()
        insert(credential)
    }

    /// Adds (or replaces) an already derived credential, after the same checks the file parser makes.
    public mutating func add(_ credential: UserCredential) throws {
        try Self.validate(name: credential.name)
        for (label, keys, hash) in [
            ("SCRAM-SHA-256", credential.sha256, SCRAMHash.sha256), ("SCRAM-SHA-1", credential.sha1, .sha1),
        ] {
            try Self.validate(iterations: keys.iterations)
            guard Self.saltBytes.contains(keys.salt.count) else {
                throw CredentialError(
                    """
                    \(label) salt must be \(Self.saltBytes.lowerBound)...\(Self.saltBytes.upperBound) bytes, not \
                    \(keys.salt.count)
                    """
                )
            }
            guard keys.storedKey.count == hash.digestCount, keys.serverKey.count == hash.digestCount else {
                throw CredentialError("\(label) stored and server keys must be \(hash.digestCount) bytes each")
            }
        }
        insert(credential)
    }

    @discardableResult
    public mutating func remove(user: String) -> Bool {
        pinSaltKey()
        guard let old = users.removeValue(forKey: user) else { return false }
        tally(old, -1)
        return true
    }

    private mutating func insert(_ credential: UserCredential) {
        if let old = users.updateValue(credential, forKey: credential.name) { tally(old, -1) }
        tally(credential, 1)
    }

    private mutating func tally(_ credential: UserCredential, _ change: Int) {
        for hash in [SCRAMHash.sha256, .sha1] {
            let count = credential.keys(for: hash).iterations
            let now = iterationTally[hash, default: [:]][count, default: 0] + change
            iterationTally[hash, default: [:]][count] = now > 0 ? now : nil
        }
    }

    // MARK: Unknown users

    /// The iteration count unknown users are given: the commonest among the users (the larger on a
    /// tie), the default when there are none. A user whose count differs from it stands out.
    func unknownUserIterations(_ hash: SCRAMHash) -> Int {
        let tally = iterationTally[hash] ?? [:]
        return tally.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? Self.defaultIterations
    }

    /// Users whose iteration count differs from the commonest: SCRAM's server-first message and
    /// the time a PLAIN attempt takes tell that these names exist.
    public var usersWithUncommonIterations: [String] {
        let common = (unknownUserIterations(.sha256), unknownUserIterations(.sha1))
        return userNames.filter { name in
            guard let user = users[name] else { return false }
            return user.sha256.iterations != common.0 || user.sha1.iterations != common.1
        }
    }

    /// The key fake salts are derived from: `saltKey`, else one derived from the users' secret keys,
    /// which is as stable as the file (a file without a key gets one the first time `moat user` edits it).
    public var unknownUserSaltKey: [UInt8] {
        if let saltKey { return saltKey }
        var material = Array("moat unknown-user salt key".utf8)
        for name in userNames {
            guard let user = users[name] else { continue }
            material += [0] + Array(name.utf8)
            for keys in [user.sha256, user.sha1] { material += keys.salt + keys.storedKey + keys.serverKey }
        }
        return SCRAMHash.sha256.hash(material)
    }

    /// Before an edit, fixes the salt key so that the edit does not change unknown users' salts.
    private mutating func pinSaltKey() {
        if saltKey == nil { saltKey = users.isEmpty ? randomBytes(32) : unknownUserSaltKey }
    }

    /// Checks a password (as SASL PLAIN presents it) against the SCRAM-SHA-256 keys. An unknown
    /// user costs a derivation of the commonest count, so the time taken does not tell which names exist.
    public func verifyPassword(user: String, password: [UInt8]) -> Bool {
        guard (1...Self.maximumPasswordBytes).contains(password.count) else { return false }
        let known = users[user]
        // A random stored key: no password matches it.
        let keys =
            known?.sha256
            ?? SCRAMKeys(
                salt: Array(unknownUserSaltKey.prefix(16)), iterations: unknownUserIterations(.sha256),
                storedKey: randomBytes(SCRAMHash.sha256.digestCount), serverKey: [])
        let matches = keys.matches(password: password, .sha256)
        return known != nil && matches
    }

    // MARK: Validation

    /// Names travel in the credential file (colon-separated, `#` comments), in memcached's
    /// `user:password` files and in log lines, so the characters that would be ambiguous or
    /// invisible there are refused.
    static func validate(name: String) throws {
        let bytes = name.utf8.count
        guard (1...maximumNameBytes).contains(bytes) else {
            throw CredentialError("user name must be 1...\(maximumNameBytes) bytes of UTF-8, not \(bytes)")
        }
        if name.hasPrefix("#") {
            throw CredentialError(
                "user name '\(escaped(name))' must not start with '#' (the file would read it as a comment)")
        }
        for scalar in name.unicodeScalars {
            if scalar == ":" {
                throw CredentialError("user name '\(escaped(name))' must not contain ':'")
            }
            if scalar.properties.isWhitespace {
                throw CredentialError("user name '\(escaped(name))' must not contain whitespace")
            }
            if scalar.properties.generalCategory == .control {
                throw CredentialError("user name '\(escaped(name))' must not contain control characters")
            }
        }
    }

    static func validate(password: [UInt8]) throws {
        guard (1...maximumPasswordBytes).contains(password.count) else {
            throw CredentialError("password must be 1...\(maximumPasswordBytes) bytes, not \(password.count)")
        }
    }

    static func validate(iterations: Int) throws {
        guard (minimumIterations...maximumIterations).contains(iterations) else {
            throw CredentialError("iterations must be \(minimumIterations)...\(maximumIterations), not \(iterations)")
        }
    }

    /// A name as it can be shown in a message without control characters reaching a terminal.
    static func escaped(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar.properties.isWhitespace {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
