import Synchronization

/// Events an operator must be able to find later: who connected or was refused, who authenticated,
/// who touched a dangerous command or a canary key. The engine and the server record them here; the
/// server decides where they go (one JSON line each, to stderr or a file) and `stats` reports the counts.
public final class SecurityLog: Sendable {
    public enum Event: Sendable, Equatable {
        case connectionAccepted(peer: String)
        /// Refused before a byte was read or written: `reason` is "allowlist", "denylist",
        /// "per_address_limit" or "max_connections".
        case connectionRefused(peer: String, reason: String)
        /// Closed by Moat for a limit: "slow_command", "output_stalled", "idle_timeout", "auth_timeout", ...
        case connectionClosed(peer: String, reason: String)
        case authentication(AuthEvent)
        /// A command the operator may switch off (`flush_all`, `shutdown`, `verbosity`, ...), allowed or refused.
        case dangerousCommand(peer: String, command: String, allowed: Bool)
        /// A read of a configured canary key: someone is enumerating keys.
        case canaryRead(peer: String, key: String)
        /// `stats cachedump`, `lru_crawler metadump`, `watch`, ...: refused, and worth an alarm.
        case keyDumpAttempt(peer: String, command: String)
    }

    private let emit: @Sendable (Event) -> Void

    /// `emit` is called for every event, on the thread that records it.
    public init(emit: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.emit = emit
    }

    public func record(_ event: Event) {
        emit(event)
    }
}
