import MoatAccess
import MoatProtocol
import NIOCore

/// Authentication, when the engine has an `Authenticator`: binary SASL (PLAIN, SCRAM) and memcached's
/// ASCII auth (the first `set` carries "user password"). Until a connection authenticates it may only
/// authenticate, ask for the version (memcached's, without Moat's build), send noop and quit.
extension Session {
    /// The version told to a client that has not authenticated: the protocol level clients parse, not the build.
    static let anonymousVersion = MoatVersion.memcachedCompatible

    /// What a client may send before it authenticates: authentication itself, version, noop and quit
    /// (and what decodes only as an error, which is answered as such).
    static func allowedBeforeAuthentication(_ operation: Operation<UnsafeRawBufferPointer>) -> Bool {
        switch operation {
        case .version, .noop, .quit, .saslListMechanisms, .saslStart, .saslStep, .saslMechanismTooLong, .error:
            return true
        default:
            return false
        }
    }

    /// Anything else before authentication: a text `set` (or `ms`, for meta clients; memcached has no
    /// meta auth) is memcached's ASCII authentication; everything else is refused.
    mutating func refuseUnauthenticated<Reply: ReplyEncoder>(
        _ verb: Verb, _ operation: Operation<UnsafeRawBufferPointer>, _ reply: Reply, into out: inout ByteBuffer
    ) -> SessionAction? {
        switch operation {
        case .store(_, let value, _) where reply.carriesASCIIAuthentication && (verb == .set || verb == .ms):
            return asciiAuthenticate(value, reply, into: &out)
        case .storeTooLarge:
            // Larger than any "user password" block (see ProtocolLimits.beforeAuthentication): refused
            // from the command line or header, and the connection closed rather than the block read.
            reply.write(.refused(.unauthenticated), into: &out)
            return .close
        default:
            reply.write(.refused(.unauthenticated), into: &out)
            return nil
        }
    }

    /// memcached's `-Y` authentication: `data` is "user password" (the password may contain spaces).
    mutating func asciiAuthenticate<Reply: ReplyEncoder>(
        _ data: UnsafeRawBufferPointer, _ reply: Reply, into out: inout ByteBuffer
    ) -> SessionAction? {
        guard let authenticator = engine.authenticator else { return nil }
        let mechanism = "ascii"
        guard admitAttempt(authenticator, mechanism: mechanism) else {
            reply.write(.authenticationFailed, into: &out)
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
            reply.write(.authenticationFailed, into: &out)
            return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: true) ? .close : nil
        }
        guard attemptSucceeded(authenticator, user: user, mechanism: mechanism, credential: store.credential(for: user))
        else {
            reply.write(.authenticationFailed, into: &out)
            return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: false) ? .close : nil
        }
        reply.write(.authenticated, into: &out)
        return nil
    }

    /// SASL (the binary protocol's): list the mechanisms, start an exchange, take its next step.
    mutating func authenticate<Reply: ReplyEncoder>(
        _ operation: Operation<UnsafeRawBufferPointer>, _ reply: Reply, into out: inout ByteBuffer
    ) -> SessionAction? {
        guard let authenticator = engine.authenticator else {
            // As memcached without -S: the SASL opcodes are unknown.
            reply.write(.error(.unknownOpcode), into: &out)
            return nil
        }
        let step: SASLStep
        let mechanism: String
        switch operation {
        case .saslListMechanisms:
            reply.write(.saslMechanisms(authenticator.mechanismList), into: &out)
            return nil

        case .saslMechanismTooLong:
            // Longer than any mechanism's name: as memcached, "Invalid arguments", and the connection stays.
            reply.write(.error(Self.unknownMechanism), into: &out)
            return nil

        case .saslStep(let data):
            guard var exchange = sasl else {
                reply.write(.authenticationFailed, into: &out)
                return attemptFailed(authenticator, user: nil, mechanism: "step", checked: false) ? .close : nil
            }
            mechanism = saslMechanism.rawValue
            // Admitted again at each step: exchanges started together before a failure must not each
            // get a guess past the delay or the lockout.
            guard admitAttempt(authenticator, mechanism: mechanism) else {
                sasl = nil
                reply.write(.authenticationFailed, into: &out)
                return attemptFailed(authenticator, user: exchange.claimedUser, mechanism: mechanism, checked: false)
                    ? .close : nil
            }
            step = exchange.step(Array(data))
            sasl = exchange

        case .saslStart(let mechanismName, let data):
            // A new exchange starts from scratch: the connection is not authenticated until it succeeds.
            isAuthenticated = false
            sasl = nil
            guard let chosen = authenticator.enabledMechanism(named: mechanismName) else {
                // As memcached: "Invalid arguments", and the client may try another mechanism.
                reply.write(.error(Self.unknownMechanism), into: &out)
                return attemptFailed(authenticator, user: nil, mechanism: "unknown", checked: false) ? .close : nil
            }
            mechanism = chosen.rawValue
            guard admitAttempt(authenticator, mechanism: mechanism) else {
                reply.write(.authenticationFailed, into: &out)
                return attemptFailed(authenticator, user: nil, mechanism: mechanism, checked: false) ? .close : nil
            }
            let store = authenticator.store
            var exchange = SASLExchange(mechanism: chosen, store: store, serverSecret: store.unknownUserSaltKey)
            step = exchange.start(Array(data))
            sasl = exchange
            saslMechanism = chosen

        default:
            return nil
        }
        switch step {
        case .challenge(let challenge):
            reply.write(.saslChallenge(challenge), into: &out)
            return nil
        case .success(let user, _):
            let credential = sasl?.store.credential(for: user)
            sasl = nil
            guard attemptSucceeded(authenticator, user: user, mechanism: mechanism, credential: credential) else {
                reply.write(.authenticationFailed, into: &out)
                return attemptFailed(authenticator, user: user, mechanism: mechanism, checked: false) ? .close : nil
            }
            reply.write(.authenticated, into: &out)
            return nil
        case .failure(let reason):
            let claimed = sasl?.claimedUser
            sasl = nil
            reply.write(.authenticationFailed, into: &out)
            // Wrong credentials and garbage both count against the address; a step out of order only here.
            let checked = reason == .badCredentials || reason == .malformed
            return attemptFailed(authenticator, user: claimed, mechanism: mechanism, checked: checked) ? .close : nil
        }
    }

    /// An unknown or over-long SASL mechanism: memcached's 0x04, the connection kept.
    static let unknownMechanism = ErrorReply("CLIENT_ERROR bad command line format", binaryStatus: .invalidArguments)

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
