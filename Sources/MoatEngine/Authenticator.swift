import MoatAccess
import Synchronization

/// Something worth an operator's attention, reported by the `Authenticator` (the server logs it).
public enum AuthEvent: Sendable, Equatable {
    case succeeded(user: String, peer: String, mechanism: String)
    case failed(user: String?, peer: String, mechanism: String)
    /// An attempt refused unchecked: the address failed recently (`throttled`) or is locked out.
    case refused(peer: String, mechanism: String, admission: AuthAdmission)
    case lockedOut(peer: String, seconds: Double)
    /// A connection closed for failing too often.
    case disconnected(peer: String, failures: Int)
}

/// How authentication is set up: who may connect, with which mechanisms, and the guessing limits.
public struct AuthenticationSettings: Sendable {
    public var store: CredentialStore
    /// Advertised by SASL list-mechs, in this order; only these may be used.
    public var mechanisms: [SASLMechanism]
    public var policy: AuthPolicy
    /// Failures one connection may make before it is closed.
    public var maxFailuresPerConnection: Int
    /// Seconds a connection has to authenticate before it is closed (0: no deadline).
    public var timeout: Int

    public init(
        store: CredentialStore, mechanisms: [SASLMechanism] = [.scramSHA256, .plain], policy: AuthPolicy = AuthPolicy(),
        maxFailuresPerConnection: Int = 3, timeout: Int = 10
    ) {
        self.store = store
        self.mechanisms = mechanisms
        self.policy = policy
        self.maxFailuresPerConnection = maxFailuresPerConnection
        self.timeout = timeout
    }
}

/// Shared by every session when authentication is on: the credentials, the per-address throttle
/// and the counters `stats` reports.
public final class Authenticator: Sendable {
    public let settings: AuthenticationSettings
    public let throttle: AuthThrottle
    let mechanismList: [UInt8]
    private let onEvent: @Sendable (AuthEvent) -> Void

    /// memcached's `auth_cmds` and `auth_errors`, and Moat's refusals of throttled or locked-out addresses.
    let attempts = Atomic<UInt64>(0)
    let failures = Atomic<UInt64>(0)
    let refusals = Atomic<UInt64>(0)
    /// The credentials checked now: those of `settings` until a reload replaces them.
    private let currentStore: Mutex<CredentialStore>

    public init(
        settings: AuthenticationSettings, now: @escaping @Sendable () -> Double,
        onEvent: @escaping @Sendable (AuthEvent) -> Void = { _ in }
    ) {
        self.settings = settings
        self.throttle = AuthThrottle(policy: settings.policy, now: now)
        self.currentStore = Mutex(settings.store)
        self.mechanismList = Array(settings.mechanisms.map(\.rawValue).joined(separator: " ").utf8)
        self.onEvent = onEvent
    }

    func report(_ event: AuthEvent) { onEvent(event) }

    /// The credentials sessions check (a copy: a reload does not change an exchange under way).
    public var store: CredentialStore { currentStore.withLock { $0 } }

    /// A reload's credentials, for the attempts that start from now on.
    public func replaceStore(_ store: CredentialStore) { currentStore.withLock { $0 = store } }

    func enabledMechanism(named name: some Collection<UInt8>) -> SASLMechanism? {
        let text = String(decoding: name, as: UTF8.self)
        return settings.mechanisms.first { $0.rawValue == text }
    }

    /// What `stats` reports: memcached's `auth_cmds` and `auth_errors`, then Moat's.
    var totals: AuthTotals {
        AuthTotals(
            attempts: attempts.load(ordering: .relaxed), failures: failures.load(ordering: .relaxed),
            refusals: refusals.load(ordering: .relaxed), lockouts: throttle.lockouts)
    }
}
