import MoatAccess
import MoatConfig

/// `moat check`: the risks of a configuration, read the way `moat serve` reads it, without starting
/// anything. A configuration moat would refuse is itself a finding.
package struct ConfigurationCheck: Sendable {
    /// A file's permission bits and owner, or nil when it cannot be examined.
    package struct FileStatus: Sendable, Equatable {
        package var mode: UInt32
        package var ownerIsRootOrSelf: Bool
        package var owner: UInt32
        package var group: UInt32
        package init(mode: UInt32, ownerIsRootOrSelf: Bool = true, owner: UInt32 = 0, group: UInt32 = 0) {
            self.mode = mode
            self.ownerIsRootOrSelf = ownerIsRootOrSelf
            self.owner = owner
            self.group = group
        }

        /// Whether an account of this user and group id may create files here (a directory).
        package func writable(by account: Account) -> Bool {
            if account.user == 0 { return true }
            if account.user == owner { return mode & 0o300 == 0o300 }
            if account.group == group { return mode & 0o030 == 0o030 }
            return mode & 0o003 == 0o003
        }
    }

    /// The account `moat serve` would serve as.
    package struct Account: Sendable, Equatable {
        package var user: UInt32
        package var group: UInt32
        package init(user: UInt32, group: UInt32) {
            self.user = user
            self.group = group
        }
    }

    /// Where findings point: the configuration file, or "command line".
    package var subject: String
    package var status: @Sendable (String) -> FileStatus?
    /// The account `moat serve` would serve as, given `-u` (nil: unknown, not checked).
    package var account: @Sendable (String?) -> Account?

    package init(
        subject: String, status: @escaping @Sendable (String) -> FileStatus?,
        account: @escaping @Sendable (String?) -> Account? = { _ in nil }
    ) {
        self.subject = subject
        self.status = status
        self.account = account
    }

    /// The finding for a configuration `moat serve` refuses.
    package func refused(_ message: String) -> [Finding] {
        [
            Finding(
                rule: CheckRules.refused, severity: .high, subject: subject,
                message: "moat serve would refuse to start: \(message)")
        ]
    }

    package func findings(for configuration: ServerConfiguration, tenants: TenantPlan? = nil, configPath: String? = nil)
        -> [Finding]
    {
        var findings: [Finding] = []
        func add(_ rule: Rule, _ severity: Severity, _ message: String, _ evidence: [String: String] = [:]) {
            findings.append(
                Finding(rule: rule, severity: severity, subject: subject, message: message, evidence: evidence))
        }
        let exposed = configuration.publicListeners
        let exposedText = exposed.map(\.description).joined(separator: ", ")
        let authenticated = configuration.authentication != nil
        let allowList = configuration.addressFilter.isRestrictive && !configuration.addressFilter.allow.isEmpty

        if !exposed.isEmpty {
            if !authenticated && !allowList {
                add(
                    CheckRules.publicWithoutProtection, .critical,
                    "\(exposedText) accepts anyone: no authentication and no allow list (-o insecure_public_bind)",
                    ["listeners": exposedText])
            } else if !authenticated {
                add(
                    CheckRules.publicAllowListOnly, .medium,
                    """
                    \(exposedText) is guarded by the allow list \
                    \(configuration.addressFilter.allow.map(\.description).joined(separator: " ")) and nothing \
                    else
                    """,
                    ["listeners": exposedText])
            }
            let plain = exposed.filter { configuration.tls == nil || !$0.tls }
            if !plain.isEmpty {
                add(
                    CheckRules.publicPlaintext, authenticated ? .medium : .low,
                    "\(plain.map(\.description).joined(separator: ", ")) speaks without TLS",
                    ["listeners": plain.map(\.description).joined(separator: ", ")])
            }
        }
        if let udp = configuration.udp {
            let restricted = configuration.addressFilter.isRestrictive
            let severity: Severity = !restricted ? .high : (udp.amplification > 3 ? .medium : .low)
            add(
                CheckRules.udpOn, severity,
                "UDP is on (port \(udp.port)), replies up to \(udp.amplification)x the request, "
                    + (restricted ? "for the allow list only" : "for any source (-o insecure_udp)"),
                ["udp_port": "\(udp.port)", "amplification": "\(udp.amplification)"])
        }
        if let users = tenants?.users {
            let dumpers = users.filter { $0.grant.permissions.contains(.dump) }.map(\.name)
            if !dumpers.isEmpty {
                add(
                    CheckRules.dumping, .low,
                    """
                    users granted dump: \(dumpers.joined(separator: ", ")) (moat serves no key dumps yet; the \
                    grant would apply when it does)
                    """
                )
            }
        }
        if !authenticated {
            let anyoneRemote = !exposed.isEmpty
            if configuration.shutdownEnabled {
                add(
                    CheckRules.dangerousCommands, anyoneRemote ? .high : .medium,
                    "any client may stop the server: shutdown is on (-A) without authentication")
            }
            if configuration.flushEnabled && anyoneRemote {
                add(
                    CheckRules.dangerousCommands, .medium,
                    "any allowed client may empty the cache: flush_all is on without authentication (-F refuses it)")
            }
        }
        if let user = configuration.user, user == "root" || user == "0" {
            add(CheckRules.root, .high, "-u \(user): moat refuses to serve as root")
        }
        if let tls = configuration.tls {
            if tls.verifyMode == 0 && !authenticated {
                add(
                    CheckRules.tlsUnverified, exposed.isEmpty ? .low : .high,
                    """
                    TLS is on, but without client certificates (ssl_verify_mode=0) and without authentication \
                    anyone may connect
                    """
                )
            } else if tls.verifyMode == 1 && !authenticated {
                add(
                    CheckRules.tlsUnverified, exposed.isEmpty ? .low : .medium,
                    """
                    client certificates are requested but not required (ssl_verify_mode=1) and there is no \
                    authentication
                    """
                )
            }
            secret(tls.privateKey ?? tls.chainCertificate, what: "TLS private key", add: add)
        }
        if let authentication = configuration.authentication {
            if let path = authentication.credentialsPath { secret(path, what: "credentials file", add: add) }
            if let path = authentication.plaintextPath {
                secret(path, what: "password file", add: add)
                add(CheckRules.plaintextPasswords, .medium, "-Y \(path) keeps passwords in plaintext")
            }
        }
        if let snapshot = configuration.snapshot {
            snapshotFindings(snapshot, user: configuration.user, tenants: tenants, add: add)
        }
        if configuration.securityLog == "off" {
            add(CheckRules.securityLogOff, .low, "-o security_log=off")
        }
        if let configPath, let status = status(configPath), status.mode & 0o022 != 0 || !status.ownerIsRootOrSelf {
            add(
                CheckRules.writableConfig, .high,
                "\(configPath) (mode \(String(status.mode & 0o7777, radix: 8))) can be changed by others",
                ["mode": String(status.mode & 0o7777, radix: 8)])
        }
        return findings
    }

    /// `-e`: where the snapshot goes, who can read or replace it, and whether it is encrypted.
    func snapshotFindings(
        _ snapshot: SnapshotOptions, user: String?, tenants: TenantPlan?,
        add: (Rule, Severity, String, [String: String]) -> Void
    ) {
        let slash = snapshot.path.lastIndex(of: "/")
        let directory = slash.map { snapshot.path[..<$0].isEmpty ? "/" : String(snapshot.path[..<$0]) } ?? "."
        let tenanted = !(tenants?.buckets.isEmpty ?? true) || tenants?.users != nil
        if let keyPath = snapshot.keyPath {
            secret(keyPath, what: "snapshot key", add: add)
        } else if tenanted {
            add(
                CheckRules.snapshotUnencrypted, .medium,
                """
                -e \(snapshot.path): snapshots of a server with tenants are written without -o restore_key: a copy \
                of the disk holds every tenant's values
                """,
                ["path": snapshot.path])
        }
        guard let status = status(directory) else {
            add(
                CheckRules.snapshotNotWritable, .medium,
                "\(directory), where -e writes its snapshot, does not exist or cannot be examined",
                ["directory": directory])
            return
        }
        let mode = String(status.mode & 0o7777, radix: 8)
        if status.mode & 0o007 != 0 {
            add(
                CheckRules.snapshotDirectoryOpen, status.mode & 0o002 != 0 ? .high : .medium,
                """
                \(directory) (mode \(mode)) is open to every account: the snapshot's directory should be the \
                serving account's alone (systemd's StateDirectory=, mode 0700)
                """,
                ["directory": directory, "mode": mode])
        }
        if let account = account(user), !status.writable(by: account) {
            add(
                CheckRules.snapshotNotWritable, .medium,
                """
                the serving account (uid \(account.user)) cannot write \(directory) (mode \(mode), owner \
                \(status.owner)): the cache would not be saved when moat stops
                """,
                ["directory": directory, "mode": mode])
        }
    }

    /// A secret must exist and be unreadable by other accounts (group readable is tolerated for a
    /// service group, but noted).
    func secret(_ path: String, what: String, add: (Rule, Severity, String, [String: String]) -> Void) {
        guard let status = status(path) else {
            add(CheckRules.readableSecret, .high, "\(what) \(path) cannot be read", ["path": path])
            return
        }
        let mode = String(status.mode & 0o7777, radix: 8)
        if status.mode & 0o002 != 0 {
            add(
                CheckRules.readableSecret, .high, "\(what) \(path) is writable by every account (mode \(mode))",
                ["path": path, "mode": mode])
        } else if status.mode & 0o004 != 0 {
            add(
                CheckRules.readableSecret, .high, "\(what) \(path) is readable by every account (mode \(mode))",
                ["path": path, "mode": mode])
        } else if status.mode & 0o040 != 0 {
            add(
                CheckRules.readableSecret, .low, "\(what) \(path) is readable by its group (mode \(mode))",
                ["path": path, "mode": mode])
        }
    }
}
