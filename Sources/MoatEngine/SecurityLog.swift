import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Events an operator must be able to find later: who connected or was refused, who authenticated,
/// who touched a dangerous command or a canary key. The engine and the server record them here; each
/// becomes one JSON line (`jsonLine`) for the sink the server chose, and `stats` reports the counts.
public final class SecurityLog: Sendable {
    public enum Event: Sendable, Equatable {
        case connectionAccepted(peer: String)
        /// Refused before a byte was read or written.
        case connectionRefused(peer: String, reason: ConnectionRefusal)
        /// Closed by Moat for a limit (a `CloseReason` whose `isLimit` holds).
        case connectionClosed(peer: String, reason: CloseReason)
        case authentication(AuthEvent)
        /// A command the operator may switch off (`flush_all`, `shutdown`, `verbosity`, ...), allowed or refused.
        case dangerousCommand(peer: String, command: String, allowed: Bool)
        /// A read of a configured canary key: someone is enumerating keys.
        case canaryRead(peer: String, key: String)
        /// `stats cachedump`, `lru_crawler metadump`, `watch`, ...: refused, and worth an alarm.
        case keyDumpAttempt(peer: String, command: String)
        /// A command the user's permissions do not cover (the key is never logged).
        case permissionDenied(peer: String, user: String, bucket: String, command: String, category: String)
        /// A UDP datagram not answered in full.
        case udpRefused(peer: String, reason: UDPResponder.Refusal)
        /// A reload of the configuration file, applied or rejected (`detail` says why).
        case configReload(applied: Bool, detail: String)
        /// A warm-restart snapshot not restored (`critical`: it may have been forged).
        case snapshotRefused(path: String, reason: String, critical: Bool)
    }

    public enum Severity: String, Sendable, Comparable {
        case info, notice, warning, critical

        private var rank: Int {
            switch self {
            case .info: return 0
            case .notice: return 1
            case .warning: return 2
            case .critical: return 3
            }
        }

        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// Counts per kind of event, for `stats`.
    struct Counts {
        var connectionsRefused: UInt64 = 0
        var connectionsClosed: UInt64 = 0
        var authFailures: UInt64 = 0
        var lockouts: UInt64 = 0
        var dangerousCommands: UInt64 = 0
        var canaryReads: UInt64 = 0
        var keyDumpAttempts: UInt64 = 0
        var permissionDenials: UInt64 = 0
        var udpRefusals: UInt64 = 0
    }

    private let emit: @Sendable (Event) -> Void
    private let counts = Mutex(Counts())

    /// `emit` is called for every event, on the thread that records it.
    public init(emit: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.emit = emit
    }

    public func record(_ event: Event) {
        counts.withLock { counts in
            switch event {
            case .connectionAccepted: break
            case .connectionRefused: counts.connectionsRefused &+= 1
            case .connectionClosed: counts.connectionsClosed &+= 1
            case .authentication(.failed): counts.authFailures &+= 1
            case .authentication(.lockedOut): counts.lockouts &+= 1
            case .authentication: break
            case .dangerousCommand: counts.dangerousCommands &+= 1
            case .canaryRead: counts.canaryReads &+= 1
            case .keyDumpAttempt: counts.keyDumpAttempts &+= 1
            case .permissionDenied: counts.permissionDenials &+= 1
            case .configReload, .snapshotRefused: break
            case .udpRefused: counts.udpRefusals &+= 1
            }
        }
        emit(event)
    }

    /// Moat's `stats` lines for the security log.
    public func stats() -> [Stat] {
        let c = counts.withLock { $0 }
        return [
            Stat("security_connections_refused", c.connectionsRefused),
            Stat("security_connections_closed", c.connectionsClosed),
            Stat("security_auth_failures", c.authFailures),
            Stat("security_lockouts", c.lockouts),
            Stat("security_dangerous_commands", c.dangerousCommands),
            Stat("security_canary_reads", c.canaryReads),
            Stat("security_key_dump_attempts", c.keyDumpAttempts),
            Stat("security_permission_denials", c.permissionDenials),
            Stat("security_udp_refusals", c.udpRefusals),
        ]
    }

    // MARK: JSON

    /// The event's name and severity without formatting its fields (the log's budget is decided on it).
    public static func kind(_ event: Event) -> (name: String, severity: Severity) {
        switch event {
        case .connectionAccepted: return ("connection_accepted", .info)
        case .connectionRefused: return ("connection_refused", .notice)
        case .connectionClosed: return ("connection_closed", .notice)
        case .udpRefused: return ("udp_refused", .notice)
        case .canaryRead: return ("canary_read", .critical)
        case .keyDumpAttempt: return ("key_dump_attempt", .critical)
        case .permissionDenied: return ("permission_denied", .warning)
        default:
            let (name, severity, _) = describe(event)
            return (name, severity)
        }
    }

    /// The event's name, severity and fields, in a fixed order.
    public static func describe(_ event: Event) -> (name: String, severity: Severity, fields: [(String, JSONValue)]) {
        switch event {
        case .connectionAccepted(let peer):
            return ("connection_accepted", .info, [("peer", .string(peer))])
        case .connectionRefused(let peer, let reason):
            return ("connection_refused", .notice, [("peer", .string(peer)), ("reason", .string(reason.rawValue))])
        case .connectionClosed(let peer, let reason):
            return ("connection_closed", .notice, [("peer", .string(peer)), ("reason", .string(reason.rawValue))])
        case .authentication(.succeeded(let user, let peer, let mechanism)):
            return (
                "auth_success", .info,
                [("peer", .string(peer)), ("user", .string(user)), ("mechanism", .string(mechanism))]
            )
        case .authentication(.failed(let user, let peer, let mechanism)):
            return (
                "auth_failure", .warning,
                [
                    ("peer", .string(peer)), ("user", user.map(JSONValue.string) ?? .null),
                    ("mechanism", .string(mechanism)),
                ]
            )
        case .authentication(.refused(let peer, let mechanism, let admission)):
            var fields: [(String, JSONValue)] = [("peer", .string(peer)), ("mechanism", .string(mechanism))]
            switch admission {
            case .allowed: break
            case .throttled(let after):
                fields += [("reason", .string("throttled")), ("retry_after", .number((after * 10).rounded(.up) / 10))]
            case .lockedOut(let after):
                fields += [("reason", .string("locked_out")), ("retry_after", .number(after.rounded(.up)))]
            }
            return ("auth_refused", .warning, fields)
        case .authentication(.lockedOut(let peer, let seconds)):
            return ("auth_lockout", .critical, [("peer", .string(peer)), ("seconds", .number(seconds))])
        case .authentication(.disconnected(let peer, let failures)):
            return ("auth_disconnect", .warning, [("peer", .string(peer)), ("failures", .number(Double(failures)))])
        case .dangerousCommand(let peer, let command, let allowed):
            return (
                "dangerous_command", allowed ? .notice : .warning,
                [("peer", .string(peer)), ("command", .string(command)), ("allowed", .bool(allowed))]
            )
        case .canaryRead(let peer, let key):
            return ("canary_read", .critical, [("peer", .string(peer)), ("key", .string(key))])
        case .keyDumpAttempt(let peer, let command):
            return ("key_dump_attempt", .critical, [("peer", .string(peer)), ("command", .string(command))])
        case .permissionDenied(let peer, let user, let bucket, let command, let category):
            return (
                "permission_denied", .warning,
                [
                    ("peer", .string(peer)), ("user", .string(user)), ("bucket", .string(bucket)),
                    ("command", .string(command)),
                    ("category", .string(category)),
                ]
            )
        case .udpRefused(let peer, let reason):
            return ("udp_refused", .notice, [("peer", .string(peer)), ("reason", .string(reason.rawValue))])
        case .configReload(let applied, let detail):
            return (
                "config_reload", applied ? .notice : .warning,
                [("applied", .bool(applied)), ("detail", .string(detail))]
            )
        case .snapshotRefused(let path, let reason, let critical):
            return (
                "snapshot_refused", critical ? .critical : .warning,
                [("path", .string(path)), ("reason", .string(reason))]
            )
        }
    }

    public typealias JSONValue = JSONLine.Value

    /// One JSON object on one line (no newline): `ts`, `event`, `severity`, then the event's fields;
    /// strings cut at 512 bytes, so a line stays bounded.
    public static func jsonLine(_ event: Event, timestamp: String) -> String {
        let (name, severity, fields) = describe(event)
        var line = JSONLine()
        line.append("ts", .string(timestamp))
        line.append("event", .string(name))
        line.append("severity", .string(severity.rawValue))
        for (key, value) in fields { line.append(key, value) }
        return line.line
    }
}
