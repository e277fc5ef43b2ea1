import MoatAccess

/// Where a TCP listener binds.
package struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    package var host: String
    package var port: Int
    /// False for memcached's `notls:` prefix: this listener stays plain when `-Z` is on.
    package var tls = true

    package init(host: String, port: Int, tls: Bool = true) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    package var isIPv6: Bool { host.contains(":") }

    package var description: String { (tls ? "" : "notls:") + (isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)") }

    /// 127.0.0.0/8, ::1 and `localhost` only reach this machine.
    package var isLoopback: Bool {
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        if host.hasPrefix("::ffff:127.") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// TLS (`-Z` and memcached's `-o ssl_*` options).
package struct TLSOptions: Sendable, Equatable {
    package var chainCertificate: String
    /// Nil when the key is in the chain file.
    package var privateKey: String?
    /// CA certificates that client certificates must chain to.
    package var caCertificate: String?
    /// memcached's `ssl_verify_mode`: 0 none, 1 request (verify if presented), 2 require, 3 once (as 2).
    package var verifyMode = 0
    /// "1.2" or "1.3".
    package var minimumVersion = "1.2"
    /// Seconds a client has to complete the handshake.
    package var handshakeTimeout = 10
    /// `-o ssl_cert_auth`: a verified client certificate whose subject common name is a user in the
    /// credentials authenticates the connection as that user (no SASL needed).
    package var certificateAuthentication = false

    package init(chainCertificate: String) {
        self.chainCertificate = chainCertificate
    }
}

/// Authentication (`-S`, `--credentials`, `-Y`) and its guessing limits (`-o auth_*`, `-o sasl_mechs`).
package struct AuthenticationOptions: Sendable, Equatable {
    /// A credentials file of salted keys (`moat user add`).
    package var credentialsPath: String?
    /// memcached's plaintext `user:password` file (`-Y`).
    package var plaintextPath: String?
    /// SASL mechanisms offered, in the order list-mechs gives them.
    package var mechanisms: [String] = ["SCRAM-SHA-256", "PLAIN"]
    package var timeout = 10
    package var maxFailuresPerConnection = 3
    package var failureBurst = 3
    package var failureDelay = 1.0
    package var lockoutFailures = 10
    package var lockoutSeconds = 600

    package static let knownMechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]

    package init() {}
}

package enum ProtocolChoice: String, Sendable, Equatable {
    case auto, ascii, binary
}

/// One validated configuration; every default here is the safe one.
package struct ServerConfiguration: Sendable, Equatable {
    package var listeners: [ListenAddress]
    /// True when no `-l` was given (listening on 127.0.0.1 and ::1; a host without IPv6 is tolerated).
    package var listenersAreDefault: Bool
    package var unixSocket: String?
    package var unixMask: UInt32
    package var memoryLimit: Int
    package var evictionsEnabled: Bool
    package var maxConnections: Int
    package var threads: Int
    package var maxItemSize: Int
    package var verbosity: Int
    package var user: String?
    package var protocolMode: ProtocolChoice
    package var shutdownEnabled: Bool
    package var flushEnabled: Bool
    package var dumpEnabled: Bool
    /// Seconds; 0 disables.
    package var idleTimeout: Int
    package var insecurePublicBind: Bool
    /// Accept control bytes in keys, as memcached does (`-o lenient_keys`).
    package var lenientKeys: Bool
    /// Who may connect over TCP (`-o allow=`, `-o deny=`).
    package var addressFilter = AddressFilter()
    /// Connections one source address (an IPv6 /64) may hold at once; 0: no limit beyond `-c`.
    package var maxConnectionsPerAddress = 0
    /// Seconds a client may take to finish a request it has started sending; 0: no deadline.
    package var commandTimeout = 10
    /// Seconds a client may leave replies unread (Moat has stopped reading it) before it is closed; 0: never.
    package var outputTimeout = 30
    /// Megabytes of unread replies all stalled connections together may hold; a connection whose stall
    /// would pass it is closed (`-o output_budget=MB`); 0: no global budget.
    package var outputBudgetMegabytes = 64
    /// memcached's UDP protocol on `-U`; nil when off (the default).
    package var udp: UDPOptions?
    /// Where the security log's JSON lines go: "stderr", "off" or a file (`-o security_log=`).
    package var securityLog = "stderr"
    /// Keys no legitimate client reads (`-o canary=`): reading one raises a critical security event.
    package var canaryKeys: [[UInt8]] = []
    /// `verbosity` from clients: allowed (it changes no log level in Moat) unless `-o disable_verbosity`.
    package var verbosityEnabled = true
    /// The Prometheus endpoint (`-o metrics_port=N`, `metrics_listen=ADDR`); nil when off (the default).
    package var metrics: ListenAddress?
    /// Present with `-Z`: TCP listeners (but `notls:` ones) speak TLS.
    package var tls: TLSOptions?
    /// Present when clients must authenticate.
    package var authentication: AuthenticationOptions?
    package var pidFile: String?
    /// Warm restarts (`-e`); nil when off (the default).
    package var snapshot: SnapshotOptions?
    package var backlog: Int
    /// Flags accepted for compatibility that change nothing; reported once at start.
    package var ignored: [String]

    package static let defaultPort = 11211
    package static let defaultListenHosts = ["127.0.0.1", "::1"]

    /// Addresses that are not loopback: what a firewall mistake would expose.
    package var publicListeners: [ListenAddress] { listeners.filter { !$0.isLoopback } }
}

/// `-e PATH` and its `-o restore_*` settings.
package struct SnapshotOptions: Sendable, Equatable {
    package var path: String
    /// A snapshot older than this many seconds is not restored: deletes made while the server was down
    /// are not in it (`-o restore_max_age`).
    package var maxAge = SnapshotOptions.defaultMaxAge
    /// The file holding the 32-byte key that encrypts and authenticates snapshots (`-o restore_key`).
    package var keyPath: String?

    /// Five minutes: a restart, an upgrade or a reboot, not an outage.
    package static let defaultMaxAge = 300

    package init(path: String) { self.path = path }
}

/// `-U PORT` and its `-o udp_*` limits.
package struct UDPOptions: Sendable, Equatable {
    package var port = 0
    /// A reply may carry at most this many times the request's bytes.
    package var amplification = 3
    /// Per source address: datagrams and bytes a second (bursts of one second's worth).
    package var datagramsPerSecond = 1000
    package var bytesPerSecond = 262_144
    /// Stores, deletes, arithmetic and TTL changes over UDP. Off: a UDP source address can be forged, so
    /// anyone who can spoof an allowed client could otherwise poison the cache.
    package var writes = false

    package init() {}
}

package struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    package var description: String
    package init(_ description: String) { self.description = description }
}
