import MoatAccess
import MoatProtocol
import NIOCore

/// Authentication, when the engine has an `Authenticator`: binary SASL (PLAIN, SCRAM) and memcached's
/// ASCII auth (the first `set` carries "user password"). Until a connection authenticates it may only
/// authenticate, ask for the version (memcached's, without Moat's build), send noop and quit.
extension Session {
    /// The version told to a client that has not authenticated: the protocol level clients parse, not the build.
    static let anonymousVersion = MoatVersion.memcachedCompatible

    // MARK: text protocol

    mutating func executeUnauthenticated(_ command: TextCommand, into out: inout ByteBuffer) -> SessionAction? {
        switch command {
        case .store(.set, _, _, _, let value, _, let noreply):
            return asciiAuthenticate(value, noreply: noreply, success: "STORED", into: &out)
        case .meta(let command) where command.verb == .set && !command.valueTooLarge:
            // Meta clients authenticate the same way, with `ms <any key> <n>` (memcached has no meta auth).
            return asciiAuthenticate(command.value, noreply: false, success: "HD", into: &out)
        case .meta(let command) where command.verb == .noop:
            TextEncoder.writeLine("MN", into: &out)
        case .storeTooLarge:
            // Larger than any "user password" block (see ProtocolLimits.beforeAuthentication): refused
            // from the command line, and the connection closed rather than the block read.
            TextEncoder.writeLine("CLIENT_ERROR unauthenticated", into: &out)
            return .close
        case .meta(let command) where command.valueTooLarge:
            TextEncoder.writeLine("CLIENT_ERROR unauthenticated", into: &out)
            return .close
        case .version:
            TextEncoder.writeLine("VERSION \(Self.anonymousVersion)", into: &out)
        case .quit:
            return .close
        case .error(let error, let noreply):
            return protocolError(error, noreply: noreply, into: &out)
        default:
            TextEncoder.writeLine("CLIENT_ERROR unauthenticated", into: &out)
        }
        return nil
    }

    /// memcached's `-Y` authentication: `data` is "user password" (the password may contain spaces).
    mutating func asciiAuthenticate(
        _ data: UnsafeRawBufferPointer, noreply: Bool, success: String, into out: inout ByteBuffer
    ) -> SessionAction? {
        guard let authenticator = engine.authenticator else { return nil }
        let mechanism = "ascii"
        guard admitAttempt(authenticator, mechanism: mechanism) else {
            TextEncoder.writeLine("CLIENT_ERROR authentication failure", into: &out)
            return attemptFailed(authenticator, user: nil, mechanism: mechanism, checked: false) ? .close : nil
        }
        var user: String?
        var accepted = false
        // One copy: the credential recorded for the session is the one the password was checked against.
        let store = authenticator.store
        if let space = data.firstIndex(of: 0x20), space > 0 {
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: data[..<space]), as: UTF8.self)
            user = name
            accepted = store.verifyPassword(user: name, password: Array(data[(space + 1)...]))
        }
        guard accepted, let user else {
            TextEncoder.writeLine("CLIENT_ERROR authentication failure", into: &out)
            return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: true) ? .close : nil
        }
        guard attemptSucceeded(authenticator, user: user, mechanism: mechanism, credential: store.credential(for: user))
        else {
            TextEncoder.writeLine("CLIENT_ERROR authentication failure", into: &out)
            return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: false) ? .close : nil
        }
        if !noreply { TextEncoder.writeLine(success, into: &out) }
        return nil
    }

    // MARK: binary protocol

    /// What a binary client may send before it authenticates.
    static func allowedBeforeAuthentication(_ operation: BinaryOperation<UnsafeRawBufferPointer>) -> Bool {
        switch operation {
        case .version, .noop, .quit, .saslListMechanisms, .saslAuthenticate, .unknownCommand, .invalidArguments,
            .mechanismTooLong, .badMagic:
            return true
        default:
            return false
        }
    }

    mutating func executeSASL(
        _ operation: BinaryOperation<UnsafeRawBufferPointer>, opcode: UInt8, opaque: UInt32, into out: inout ByteBuffer
    ) -> SessionAction? {
        guard let authenticator = engine.authenticator else {
            // As memcached without -S: the SASL opcodes are unknown.
            BinaryEncoder.writeError(opcode: opcode, status: .unknownCommand, opaque: opaque, into: &out)
            return nil
        }
        func refuse(_ out: inout ByteBuffer) {
            BinaryEncoder.writeError(opcode: opcode, status: .authenticationError, opaque: opaque, into: &out)
        }
        switch operation {
        case .saslListMechanisms:
            authenticator.mechanismList.withUnsafeBytes {
                BinaryEncoder.writeResponse(opcode: opcode, opaque: opaque, value: $0, into: &out)
            }
            return nil

        case .saslAuthenticate(let mechanismName, let data, let isStep):
            let step: SASLStep
            let mechanism: String
            if isStep {
                guard var exchange = sasl else {
                    refuse(&out)
                    return attemptFailed(authenticator, user: nil, mechanism: "step", checked: false) ? .close : nil
                }
                mechanism = saslMechanism.rawValue
                // Admitted again at each step: exchanges started together before a failure must not each
                // get a guess past the delay or the lockout.
                guard admitAttempt(authenticator, mechanism: mechanism) else {
                    sasl = nil
                    refuse(&out)
                    return attemptFailed(
                        authenticator, user: exchange.claimedUser, mechanism: mechanism, checked: false) ? .close : nil
                }
                step = exchange.step(Array(data))
                sasl = exchange
            } else {
                // A new exchange starts from scratch: the connection is not authenticated until it succeeds.
                isAuthenticated = false
                sasl = nil
                guard let chosen = authenticator.enabledMechanism(named: mechanismName) else {
                    // As memcached: "Invalid arguments", and the client may try another mechanism.
                    BinaryEncoder.writeError(opcode: opcode, status: .invalidArguments, opaque: opaque, into: &out)
                    return attemptFailed(authenticator, user: nil, mechanism: "unknown", checked: false) ? .close : nil
                }
                mechanism = chosen.rawValue
                guard admitAttempt(authenticator, mechanism: mechanism) else {
                    refuse(&out)
                    return attemptFailed(authenticator, user: nil, mechanism: mechanism, checked: false) ? .close : nil
                }
                let store = authenticator.store
                var exchange = SASLExchange(mechanism: chosen, store: store, serverSecret: store.unknownUserSaltKey)
                step = exchange.start(Array(data))
                sasl = exchange
                saslMechanism = chosen
            }
            switch step {
            case .challenge(let challenge):
                challenge.withUnsafeBytes {
                    BinaryEncoder.writeResponse(
                        opcode: opcode, status: .authenticationContinue, opaque: opaque, value: $0, into: &out)
                }
                return nil
            case .success(let user, _):
                let credential = sasl?.store.credential(for: user)
                sasl = nil
                guard attemptSucceeded(authenticator, user: user, mechanism: mechanism, credential: credential) else {
                    refuse(&out)
                    return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: false) ? .close : nil
                }
                let text: StaticString = "Authenticated"
                BinaryEncoder.writeHeader(
                    opcode: opcode, status: .ok, bodyLength: text.utf8CodeUnitCount, opaque: opaque, into: &out)
                out.writeStaticString(text)
                return nil
            case .failure(let reason):
                let claimed = sasl?.claimedUser
                sasl = nil
                refuse(&out)
                // Wrong credentials and garbage both count against the address; a step out of order only here.
                let checked = reason == .badCredentials || reason == .malformed
                return attemptFailed(authenticator, user: claimed, mechanism: mechanism, checked: checked)
                    ? .close : nil
            }

        default:
            return nil
        }
    }

    // MARK: TLS client certificates

    /// A client certificate, verified during the TLS handshake, has `subject` as its common name: it
    /// logs in as the configured user that lists that subject, else as the user of that name (one the
    /// configuration lists, or, without a list, one the credentials hold). True when it did.
    public mutating func authenticateWithCertificate(user subject: String) -> Bool {
        guard let authenticator = engine.authenticator else { return false }
        let tenancy = engine.tenancy
        let name = tenancy.user(forCertificateSubject: subject) ?? subject
        let known =
            tenancy.restrictsUsers ? tenancy.admits(user: name) : authenticator.store.credential(for: name) != nil
        guard known else { return false }
        authenticator.attempts.add(1, ordering: .relaxed)
        return attemptSucceeded(authenticator, user: name, mechanism: "tls-client-certificate", credential: nil)
    }

    // MARK: shared bookkeeping

    /// Counts an attempt and asks the throttle whether this address may try now.
    private mutating func admitAttempt(_ authenticator: Authenticator, mechanism: String) -> Bool {
        authenticator.attempts.add(1, ordering: .relaxed)
        let admission = authenticator.throttle.admit(throttleKey)
        guard admission == .allowed else {
            authenticator.refusals.add(1, ordering: .relaxed)
            authenticator.report(.refused(peer: peer, mechanism: mechanism, admission: admission))
            return false
        }
        return true
    }

    /// Records a failed (`checked`) or refused attempt; true when the connection must now close.
    private mutating func attemptFailed(_ authenticator: Authenticator, user: String?, mechanism: String, checked: Bool)
        -> Bool
    {
        isAuthenticated = false
        authFailures += 1
        if checked {
            authenticator.failures.add(1, ordering: .relaxed)
            authenticator.report(.failed(user: user, peer: peer, mechanism: mechanism))
            // Per-user counts only for users the server knows: client-chosen names must not grow a table.
            if let user, authenticator.store.credential(for: user) != nil {
                engine.tenancy.count(user: user) { $0.authFailures &+= 1 }
            }
            if case .lockedOut(let seconds) = authenticator.throttle.recordFailure(throttleKey) {
                authenticator.report(.lockedOut(peer: throttleKey, seconds: seconds))
            }
        }
        guard authFailures >= authenticator.settings.maxFailuresPerConnection else { return false }
        authenticator.report(.disconnected(peer: peer, failures: authFailures))
        return true
    }

    /// Logs the connection in as `user`, in the user's bucket; false when the configuration no longer
    /// admits the user (a reload removed it mid-exchange).
    /// `credential`: what the password was checked against (nil for a certificate), for `revalidate`.
    private mutating func attemptSucceeded(
        _ authenticator: Authenticator, user: String, mechanism: String, credential: UserCredential?
    ) -> Bool {
        // Never during a lockout, whatever was admitted before it began.
        let admission = authenticator.throttle.admit(throttleKey)
        if case .lockedOut = admission {
            authenticator.refusals.add(1, ordering: .relaxed)
            authenticator.report(.refused(peer: peer, mechanism: mechanism, admission: admission))
            return false
        }
        guard bind(user: user) else {
            authenticator.report(.failed(user: user, peer: peer, mechanism: mechanism))
            return false
        }
        isAuthenticated = true
        loginCredential = credential
        loggedInByCertificate = credential == nil
        authFailures = 0
        authenticator.throttle.recordSuccess(throttleKey)
        authenticator.report(.succeeded(user: user, peer: peer, mechanism: mechanism))
        engine.tenancy.count(user: user) { $0.authSuccesses &+= 1 }
        return true
    }
}
