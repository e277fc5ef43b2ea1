/// A kind of finding: a stable id for suppressions and SARIF, a short name, and the remedy.
package struct Rule: Sendable, Equatable, Hashable {
    package var id: String
    package var name: String
    package var summary: String
    package var remedy: String
    /// The most severe a finding of this rule can be (SARIF's default level and `security-severity`).
    package var ceiling: Severity

    package init(id: String, name: String, ceiling: Severity = .critical, summary: String, remedy: String) {
        self.id = id
        self.name = name
        self.ceiling = ceiling
        self.summary = summary
        self.remedy = remedy
    }
}

/// What `moat audit` can find on the network.
package enum AuditRules {
    package static let unauthenticatedAccess = Rule(
        id: "MOAT-A001", name: "unauthenticated-access",
        summary: "The service answers commands without authentication.",
        remedy:
            """
            Require authentication (moat: --credentials; memcached: -S with SASL or -Y) or bind to loopback (-l \
            127.0.0.1), and allow only the application servers (moat: -o allow=CIDR; a firewall: moat firewall).
            """
    )
    package static let keyEnumeration = Rule(
        id: "MOAT-A002", name: "key-enumeration",
        summary: "Keys can be listed (stats cachedump or lru_crawler metadump), so an attacker learns what to read.",
        remedy: "Disable key dumping (memcached: -X; moat refuses it by default) and require authentication.")
    package static let unauthenticatedWrite = Rule(
        id: "MOAT-A003", name: "unauthenticated-write",
        summary:
            """
            An unauthenticated client stored and deleted a probe key: anyone who reaches the port can overwrite \
            cached data.
            """,
        remedy:
            """
            Require authentication, restrict who may connect (allow list, firewall) and bind to the interfaces the \
            clients use.
            """
    )
    package static let udpAmplification = Rule(
        id: "MOAT-A004", name: "udp-amplification",
        summary: "The UDP port answers: a spoofed request makes the server send a reply to a victim (reflection).",
        remedy:
            """
            Turn UDP off (memcached: -U 0, the default since 1.5.6; moat: the default). Moat's -U needs an allow \
            list and bounds replies to 3x the request.
            """
    )
    package static let publicAddress = Rule(
        id: "MOAT-A005", name: "public-address", ceiling: .high,
        summary: "A memcached-protocol service listens on an address outside private and loopback ranges.",
        remedy:
            """
            Bind to a private or loopback address (-l) and filter the port (moat firewall); caches are rarely \
            meant to face the Internet.
            """
    )
    package static let plaintextCredentials = Rule(
        id: "MOAT-A006", name: "plaintext-transport", ceiling: .medium,
        summary:
            "Authentication is required but TLS is not offered: data (and PLAIN passwords) cross the network in clear.",
        remedy: "Turn on TLS (-Z with -o ssl_chain_cert=, ssl_key=) and prefer SCRAM-SHA-256 over PLAIN.")
    package static let tls = Rule(
        id: "MOAT-A007", name: "tls", ceiling: .info,
        summary: "What the service says about TLS: offered, or required.",
        remedy: "Nothing to do; keep certificates current (moat reloads them on SIGHUP).")
    package static let authenticationRequired = Rule(
        id: "MOAT-A008", name: "authentication-required", ceiling: .info,
        summary: "The service requires authentication (SASL on the binary protocol, or memcached's ASCII auth).",
        remedy: "Nothing to do; keep the credentials file unreadable by others.")

    package static let all = [
        unauthenticatedAccess, keyEnumeration, unauthenticatedWrite, udpAmplification, publicAddress,
        plaintextCredentials, tls, authenticationRequired,
    ]
}

/// What `moat check` can find in a configuration.
package enum CheckRules {
    package static let refused = Rule(
        id: "MOAT-C001", name: "configuration-refused", ceiling: .high,
        summary: "moat serve would refuse to start with this configuration.",
        remedy: "Fix what the message names; moat check reads the configuration exactly as moat serve does.")
    package static let publicWithoutProtection = Rule(
        id: "MOAT-C002", name: "public-bind-open",
        summary: "A listener on a non-loopback address accepts anyone: no authentication and no allow list.",
        remedy: "Add --credentials (authentication) or -o allow=CIDR, and drop -o insecure_public_bind.")
    package static let publicAllowListOnly = Rule(
        id: "MOAT-C003", name: "public-bind-allow-list-only", ceiling: .medium,
        summary:
            """
            A non-loopback listener is protected by its allow list alone: every process on an allowed host can \
            read and write.
            """,
        remedy: "Add authentication (--credentials) so that an allowed address is not enough.")
    package static let publicPlaintext = Rule(
        id: "MOAT-C004", name: "public-plaintext", ceiling: .high,
        summary: "A non-loopback listener speaks without TLS: values and commands cross the network in clear.",
        remedy: "Turn on TLS (-Z, -o ssl_chain_cert=, ssl_key=) and do not mark public listeners notls:.")
    package static let udpOn = Rule(
        id: "MOAT-C005", name: "udp-enabled", ceiling: .high,
        summary: "UDP is on: replies can be reflected at a spoofed source.",
        remedy:
            """
            Turn UDP off (no -U); if a client needs it, keep a restrictive allow list and -o udp_amplification at \
            3 or less.
            """
    )
    package static let dumping = Rule(
        id: "MOAT-C006", name: "key-dumping", ceiling: .high,
        summary: "Some user may list keys.",
        remedy: "Remove the dump permission unless a tool really needs it, and give that tool its own user.")
    package static let dangerousCommands = Rule(
        id: "MOAT-C007", name: "flush-shutdown", ceiling: .high,
        summary: "Clients can empty the cache (flush_all) or stop the server (shutdown) without authenticating.",
        remedy: "Require authentication, or refuse the commands: -F (flush_all) and leave -A (shutdown) off.")
    package static let root = Rule(
        id: "MOAT-C008", name: "runs-as-root", ceiling: .high,
        summary: "The configuration asks to serve as root.",
        remedy: "Give -u an unprivileged account (moat refuses to serve as root).")
    package static let tlsUnverified = Rule(
        id: "MOAT-C009", name: "tls-without-verification", ceiling: .high,
        summary: "TLS is on but neither client certificates nor authentication decide who may connect.",
        remedy: "Require client certificates (-o ssl_verify_mode=2, ssl_ca_cert=) or authentication (--credentials).")
    package static let readableSecret = Rule(
        id: "MOAT-C010", name: "readable-secret", ceiling: .high,
        summary: "A credentials file or TLS private key can be read by other accounts, or cannot be read at all.",
        remedy: "chmod 0600 the file (owner: root or the account moat serves as); moat reads it before leaving root.")
    package static let plaintextPasswords = Rule(
        id: "MOAT-C011", name: "plaintext-password-file", ceiling: .medium,
        summary: "Users come from memcached's plaintext user:password file (-Y).",
        remedy: "Move the users to a credentials file of salted keys (moat user add; --credentials).")
    package static let securityLogOff = Rule(
        id: "MOAT-C012", name: "security-log-off", ceiling: .medium,
        summary: "The security log is off: refused connections, failed logins and key-dump attempts leave no trace.",
        remedy: "Leave -o security_log at stderr (journald) or give it a file.")
    package static let writableConfig = Rule(
        id: "MOAT-C013", name: "writable-configuration", ceiling: .high,
        summary: "The configuration file can be changed by other accounts.",
        remedy: "chmod go-w the file; it decides who may log in.")

    package static let snapshotUnencrypted = Rule(
        id: "MOAT-C014", name: "snapshot-unencrypted", ceiling: .medium,
        summary: "Warm-restart snapshots (-e) of a server with tenants are written in clear.",
        remedy:
            """
            Give -o restore_key=FILE (32 bytes; a systemd credential): snapshots are then encrypted and \
            authenticated with AES-256-GCM.
            """
    )
    package static let snapshotDirectoryOpen = Rule(
        id: "MOAT-C015", name: "snapshot-directory-open", ceiling: .high,
        summary: "The directory of the warm-restart snapshot can be entered, read or written by other accounts.",
        remedy: "Let systemd provide it (StateDirectory=moat, StateDirectoryMode=0700) or chmod 0700 it.")
    package static let snapshotNotWritable = Rule(
        id: "MOAT-C016", name: "snapshot-not-writable", ceiling: .medium,
        summary: "The account moat serves as cannot write the warm-restart snapshot's directory.",
        remedy: "Use the unit's StateDirectory (/var/lib/moat) or chown the directory to the serving account.")

    package static let all = [
        refused, publicWithoutProtection, publicAllowListOnly, publicPlaintext, udpOn, dumping, dangerousCommands, root,
        tlsUnverified, readableSecret, plaintextPasswords, securityLogOff, writableConfig, snapshotUnencrypted,
        snapshotDirectoryOpen, snapshotNotWritable,
    ]
}
