import Crypto
import MoatProtocol

/// Why an exchange failed. The server reports all of them as an authentication error; the cases
/// exist for logs and statistics.
public enum SASLFailure: Sendable, Equatable {
    /// For the caller: the client named a mechanism `SASLMechanism(rawValue:)` does not know.
    case unknownMechanism
    case malformed
    case badCredentials
    case outOfSequence
}

/// What the server answers to one client message.
public enum SASLStep: Sendable, Equatable {
    /// More to do: send these bytes with "auth continue" and wait for the next step.
    case challenge([UInt8])
    /// Authenticated as `user`; `data` goes with the success reply.
    case success(user: String, data: [UInt8])
    case failure(SASLFailure)
}

/// The server side of one SASL authentication on one connection: PLAIN (RFC 4616) or SCRAM
/// (RFC 5802; RFC 7677 for SHA-256) without channel binding.
///
/// SCRAM runs in three round trips, as memcached with Cyrus SASL does and libmemcached expects:
/// client-first -> challenge(server-first), client-final -> challenge(server-final "v=..."),
/// an empty step -> success. Every failure ends the exchange; later calls get `.outOfSequence`.
public struct SASLExchange: Sendable {
    /// Makes the server's part of a SCRAM nonce: printable ASCII without ','.
    public typealias NonceGenerator = @Sendable () -> String

    /// No legitimate SASL message here comes near this (a SCRAM message is names, nonces and a
    /// base64 proof); the bound keeps a hostile client from making the parser work on megabytes.
    public static let maximumMessageBytes = 4096

    private let mechanism: SASLMechanism
    /// The credentials this exchange checks (a copy taken when it started).
    public let store: CredentialStore
    private let serverSecret: [UInt8]
    private let makeNonce: NonceGenerator
    private var state: State = .initial
    /// The user the client claims to be, once a message named one (for per-user failure counts).
    public private(set) var claimedUser: String?

    private enum State: Sendable {
        case initial
        case awaitingClientFinal(PendingSCRAM)
        case awaitingAcknowledgement(user: String)
        case finished
    }

    /// What the server remembers between a SCRAM client-first and client-final.
    private struct PendingSCRAM: Sendable {
        let hash: SCRAMHash
        let user: String
        let isKnown: Bool
        let keys: SCRAMKeys
        let gs2Header: [UInt8]
        let clientFirstBare: [UInt8]
        let serverFirst: [UInt8]
        let nonce: [UInt8]
    }

    /// `serverSecret`: the key stable fake salts for unknown users are derived from, so SCRAM does not
    /// reveal which names exist (a server passes `store.unknownUserSaltKey`, which outlives restarts).
    public init(mechanism: SASLMechanism, store: CredentialStore, serverSecret: [UInt8]) {
        self.init(
            mechanism: mechanism, store: store, serverSecret: serverSecret,
            nonceGenerator: {
                Base64.encode(randomBytes(24))  // 192 bits; base64's alphabet is printable and has no ','
            })
    }

    /// For tests: fixes the server nonce, e.g. to replay the RFC test vectors. A server must use the
    /// other initializer, whose nonces are unpredictable.
    public init(
        mechanism: SASLMechanism, store: CredentialStore, serverSecret: [UInt8],
        nonceGenerator: @escaping NonceGenerator
    ) {
        self.mechanism = mechanism
        self.store = store
        self.serverSecret = serverSecret
        self.makeNonce = nonceGenerator
    }

    /// Handles the SASL_AUTH value (the client's initial response).
    public mutating func start(_ initialResponse: [UInt8]) -> SASLStep {
        guard case .initial = state else { return finish(.failure(.outOfSequence)) }
        switch mechanism {
        case .plain:
            let (step, user) = plain(initialResponse)
            claimedUser = user
            return finish(step)
        case .scramSHA256: return scramClientFirst(initialResponse, .sha256)
        case .scramSHA1: return scramClientFirst(initialResponse, .sha1)
        }
    }

    /// Handles one SASL_STEP value.
    public mutating func step(_ response: [UInt8]) -> SASLStep {
        switch state {
        case .initial, .finished:
            return finish(.failure(.outOfSequence))
        case .awaitingClientFinal(let pending):
            return scramClientFinal(response, pending)
        case .awaitingAcknowledgement(let user):
            // The client has checked our signature and has nothing more to say.
            return finish(response.isEmpty ? .success(user: user, data: []) : .failure(.malformed))
        }
    }

    private mutating func finish(_ step: SASLStep) -> SASLStep {
        state = .finished
        return step
    }

    // MARK: PLAIN

    /// `[authzid] NUL authcid NUL passwd`; acting as another user (authzid) is not supported.
    private func plain(_ message: [UInt8]) -> (SASLStep, String?) {
        let limit = 2 * CredentialStore.maximumNameBytes + CredentialStore.maximumPasswordBytes + 2
        guard message.count <= limit else { return (.failure(.malformed), nil) }
        let parts = message.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].contains(0),
            let authzid = String(validating: parts[0], as: UTF8.self),
            let authcid = String(validating: parts[1], as: UTF8.self),
            !authcid.isEmpty, authcid.utf8.count <= CredentialStore.maximumNameBytes,
            !parts[2].isEmpty, parts[2].count <= CredentialStore.maximumPasswordBytes
        else { return (.failure(.malformed), nil) }
        guard authzid.isEmpty || authzid == authcid else { return (.failure(.badCredentials), authcid) }
        guard store.verifyPassword(user: authcid, password: Array(parts[2])) else {
            return (.failure(.badCredentials), authcid)
        }
        return (.success(user: authcid, data: []), authcid)
    }

    // MARK: SCRAM

    private mutating func scramClientFirst(_ message: [UInt8], _ hash: SCRAMHash) -> SASLStep {
        guard message.count <= Self.maximumMessageBytes,
            let first = ClientFirst(message)
        else { return finish(.failure(.malformed)) }
        claimedUser = first.user
        guard first.authzid.isEmpty || first.authzid == first.user else {
            return finish(.failure(.badCredentials))
        }
        // An unknown user gets a salt that looks like a real one and stays the same on every try,
        // and the exchange goes on to fail at the proof, as a wrong password would.
        // The fake keys are computed for known users too, so both take the same time here.
        let known = store.credential(for: first.user)?.keys(for: hash)
        let fake = fakeKeys(for: first.user, hash)
        let keys = known ?? fake
        let serverNonce = Array(makeNonce().utf8)
        precondition(
            !serverNonce.isEmpty && serverNonce.allSatisfy(isNonceByte),
            "a SCRAM server nonce must be printable ASCII without ','")
        let nonce = first.nonce + serverNonce
        let serverFirst =
            Array("r=".utf8) + nonce
            + Array(",s=\(Base64.encode(keys.salt)),i=\(keys.iterations)".utf8)
        state = .awaitingClientFinal(
            PendingSCRAM(
                hash: hash, user: first.user, isKnown: known != nil, keys: keys,
                gs2Header: first.gs2Header, clientFirstBare: first.bare, serverFirst: serverFirst, nonce: nonce))
        return .challenge(serverFirst)
    }

    private func fakeKeys(for user: String, _ hash: SCRAMHash) -> SCRAMKeys {
        // The mechanism name separates the two variants' salts, which differ for real users too.
        let label = Array(mechanism.rawValue.utf8) + [0] + Array(user.utf8)
        let salt = Array(HMAC<SHA256>.authenticationCode(for: label, using: SymmetricKey(data: serverSecret)))
        return SCRAMKeys(
            salt: Array(salt.prefix(16)), iterations: store.unknownUserIterations(hash),
            storedKey: randomBytes(hash.digestCount), serverKey: randomBytes(hash.digestCount))
    }

    private mutating func scramClientFinal(_ message: [UInt8], _ pending: PendingSCRAM) -> SASLStep {
        guard message.count <= Self.maximumMessageBytes else { return finish(.failure(.malformed)) }
        // channel-binding "," nonce ["," extensions] "," proof; the proof is always last.
        let attributes = message.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard attributes.count >= 3,
            let binding = value(of: "c", in: attributes[0]),
            let nonce = value(of: "r", in: attributes[1]),
            let proofText = value(of: "p", in: attributes[attributes.count - 1]),
            attributes[2..<(attributes.count - 1)].allSatisfy(isExtension),
            let bindingBytes = Base64.decode(binding),
            let proof = Base64.decode(proofText), proof.count == pending.hash.digestCount
        else { return finish(.failure(.malformed)) }
        // Checked exactly: the header must be the one the client started with (no downgrade), and
        // the nonce this exchange's own, so a client-final recorded from another exchange is useless.
        guard bindingBytes == pending.gs2Header, Array(nonce) == pending.nonce else {
            return finish(.failure(.badCredentials))
        }
        let withoutProof = message[..<(message.count - proofText.count - 3)]
        let authMessage =
            pending.clientFirstBare + [UInt8(ascii: ",")] + pending.serverFirst
            + [UInt8(ascii: ",")] + Array(withoutProof)
        let hash = pending.hash
        let clientSignature = hash.hmac(key: pending.keys.storedKey, authMessage)
        let clientKey = xor(proof, clientSignature)
        let proofIsValid = constantTimeEquals(hash.hash(clientKey), pending.keys.storedKey)
        guard proofIsValid && pending.isKnown else { return finish(.failure(.badCredentials)) }
        let serverSignature = hash.hmac(key: pending.keys.serverKey, authMessage)
        state = .awaitingAcknowledgement(user: pending.user)
        return .challenge(Array("v=\(Base64.encode(serverSignature))".utf8))
    }
}

/// A parsed SCRAM client-first message: gs2-header client-first-bare.
private struct ClientFirst {
    let gs2Header: [UInt8]
    let authzid: String
    let user: String
    let nonce: [UInt8]
    let bare: [UInt8]

    init?(_ message: [UInt8]) {
        // gs2-header: cbind-flag "," [ "a=" saslname ] ","
        let parts = message.split(separator: UInt8(ascii: ","), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        // "n": client does not do channel binding; "y": it does, but thinks we do not (true: this
        // server offers no -PLUS mechanism). "p=...": it wants binding we cannot give.
        guard parts[0].elementsEqual("n".utf8) || parts[0].elementsEqual("y".utf8) else { return nil }
        if parts[1].isEmpty {
            authzid = ""
        } else {
            guard let name = value(of: "a", in: parts[1]), let decoded = decodeSASLName(name) else { return nil }
            authzid = decoded
        }
        gs2Header = Array(message[..<(parts[0].count + parts[1].count + 2)])
        bare = Array(parts[2])
        // client-first-bare: [reserved-mext ","] username "," nonce ["," extensions]. We know no
        // mandatory extension, so "m=" must fail (RFC 5802 §5.1).
        let attributes = bare.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard attributes.count >= 2,
            let name = value(of: "n", in: attributes[0]), let user = decodeSASLName(name),
            let nonce = value(of: "r", in: attributes[1]), !nonce.isEmpty, nonce.allSatisfy(isNonceByte),
            attributes.dropFirst(2).allSatisfy(isExtension)
        else { return nil }
        self.user = user
        self.nonce = Array(nonce)
    }
}

/// The value of `name=value`, or nil if the attribute is another one.
private func value(of name: Character, in attribute: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
    guard attribute.count >= 2, let ascii = name.asciiValue,
        attribute[attribute.startIndex] == ascii, attribute[attribute.startIndex + 1] == UInt8(ascii: "=")
    else { return nil }
    return attribute.dropFirst(2)
}

/// An optional extension attribute: one letter, '=', a value. Its meaning is ignored.
private func isExtension(_ attribute: ArraySlice<UInt8>) -> Bool {
    guard attribute.count >= 2 else { return false }
    let letter = attribute[attribute.startIndex]
    return (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(letter | 0x20)
        && attribute[attribute.startIndex + 1] == UInt8(ascii: "=")
}

/// RFC 5802 printable: %x21-2B / %x2D-7E.
private func isNonceByte(_ byte: UInt8) -> Bool {
    (0x21...0x7E).contains(byte) && byte != UInt8(ascii: ",")
}

/// saslname: UTF-8 in which ',' is "=2C" and '=' is "=3D"; any other '=' is an error.
private func decodeSASLName(_ encoded: ArraySlice<UInt8>) -> String? {
    var bytes: [UInt8] = []
    var index = encoded.startIndex
    while index < encoded.endIndex {
        let byte = encoded[index]
        if byte == UInt8(ascii: "=") {
            guard encoded.endIndex - index >= 3 else { return nil }
            let escape = encoded[(index + 1)...(index + 2)]
            if escape.elementsEqual("2C".utf8) {
                bytes.append(UInt8(ascii: ","))
            } else if escape.elementsEqual("3D".utf8) {
                bytes.append(UInt8(ascii: "="))
            } else {
                return nil
            }
            index += 3
        } else {
            bytes.append(byte)
            index += 1
        }
    }
    guard !bytes.isEmpty, !bytes.contains(0) else { return nil }
    return String(validating: bytes, as: UTF8.self)
}
