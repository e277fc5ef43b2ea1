/// Why a client just accepted was refused before a byte was read or written.
public enum ConnectionRefusal: String, Sendable, CaseIterable {
    /// Not on the allow list (`-o allow=`), or an address the server could not read while a list exists.
    case allowlist
    /// On the deny list (`-o deny=`).
    case denylist
    /// Over `-o max_conns_per_ip`.
    case perAddressLimit = "per_address_limit"
    /// Over `-c` (answered with memcached's "Too many open connections" first).
    case maxConnections = "max_connections"
}

/// Why Moat ends a connection. The limit reasons (a deadline, the output budget, a revoked user, a failed
/// TLS handshake or record) are Moat's decision about the client and go to the security log as
/// `connection_closed`.
public enum CloseReason: String, Sendable, CaseIterable {
    case normal
    case error
    case shutdown
    case idleTimeout = "idle_timeout"
    case authTimeout = "auth_timeout"
    case slowCommand = "slow_command"
    case outputStalled = "output_stalled"
    case outputBudget = "output_budget"
    case accessRevoked = "access_revoked"
    /// TLS: the handshake did not complete within `-o ssl_handshake_timeout`.
    case tlsHandshakeTimeout = "tls_handshake_timeout"
    /// TLS: the handshake or a record failed (plaintext on a TLS port, an unknown CA, a corrupt record).
    case tlsError = "tls_error"

    public var isLimit: Bool {
        switch self {
        case .normal, .error, .shutdown: return false
        default: return true
        }
    }
}
