import MoatAccess

/// Where a TCP listener binds.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// False for memcached's `notls:` prefix: this listener stays plain when `-Z` is on.
    public var tls = true

    public init(host: String, port: Int, tls: Bool = true) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    public var isIPv6: Bool { host.contains(":") }

    public var description: String { (tls ? "" : "notls:") + (isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)") }

    /// 127.0.0.0/8, ::1 and `localhost` only reach this machine.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        if host.hasPrefix("::ffff:127.") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// TLS (`-Z` and memcached's `-o ssl_*` options).
public struct TLSOptions: Sendable, Equatable {
    public var chainCertificate: String
    /// Nil when the key is in the chain file.
    public var privateKey: String?
    /// CA certificates that client certificates must chain to.
    public var caCertificate: String?
    /// memcached's `ssl_verify_mode`: 0 none, 1 request (verify if presented), 2 require, 3 once (as 2).
    public var verifyMode = 0
    /// "1.2" or "1.3".
    public var minimumVersion = "1.2"
    /// Seconds a client has to complete the handshake.
    public var handshakeTimeout = 10
    /// `-o ssl_cert_auth`: a verified client certificate whose subject common name is a user in the
    /// credentials authenticates the connection as that user (no SASL needed).
    public var certificateAuthentication = false

    public init(chainCertificate: String) {
        self.chainCertificate = chainCertificate
    }
}

/// Authentication (`-S`, `--credentials`, `-Y`) and its guessing limits (`-o auth_*`, `-o sasl_mechs`).
public struct AuthenticationOptions: Sendable, Equatable {
    /// A credentials file of salted keys (`moat user add`).
    public var credentialsPath: String?
    /// memcached's plaintext `user:password` file (`-Y`).
    public var plaintextPath: String?
    /// SASL mechanisms offered, in the order list-mechs gives them.
    public var mechanisms: [String] = ["SCRAM-SHA-256", "PLAIN"]
    public var timeout = 10
    public var maxFailuresPerConnection = 3
    public var failureBurst = 3
    public var failureDelay = 1.0
    public var lockoutFailures = 10
    public var lockoutSeconds = 600

    public static let knownMechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]

    public init() {}
}

public enum ProtocolChoice: String, Sendable, Equatable {
    case auto, ascii, binary
}

/// One validated configuration; every default here is the safe one.
public struct ServerConfiguration: Sendable, Equatable {
    public var listeners: [ListenAddress]
    /// True when no `-l` was given (listening on 127.0.0.1 and ::1; a host without IPv6 is tolerated).
    public var listenersAreDefault: Bool
    public var unixSocket: String?
    public var unixMask: UInt32
    public var memoryLimit: Int
    public var evictionsEnabled: Bool
    public var maxConnections: Int
    public var threads: Int
    public var maxItemSize: Int
    public var verbosity: Int
    public var user: String?
    public var protocolMode: ProtocolChoice
    public var shutdownEnabled: Bool
    public var flushEnabled: Bool
    public var dumpEnabled: Bool
    /// Seconds; 0 disables.
    public var idleTimeout: Int
    public var insecurePublicBind: Bool
    /// Accept control bytes in keys, as memcached does (`-o lenient_keys`).
    public var lenientKeys: Bool
    /// Who may connect over TCP (`-o allow=`, `-o deny=`).
    public var addressFilter = AddressFilter()
    /// Connections one source address (an IPv6 /64) may hold at once; 0: no limit beyond `-c`.
    public var maxConnectionsPerAddress = 0
    /// Seconds a client may take to finish a request it has started sending; 0: no deadline.
    public var commandTimeout = 10
    /// Seconds a client may leave replies unread (Moat has stopped reading it) before it is closed; 0: never.
    public var outputTimeout = 30
    /// Megabytes of unread replies all stalled connections together may hold; a connection whose stall
    /// would pass it is closed (`-o output_budget=MB`); 0: no global budget.
    public var outputBudgetMegabytes = 64
    /// memcached's UDP protocol on `-U`; nil when off (the default).
    public var udp: UDPOptions?
    /// Where the security log's JSON lines go: "stderr", "off" or a file (`-o security_log=`).
    public var securityLog = "stderr"
    /// Keys no legitimate client reads (`-o canary=`): reading one raises a critical security event.
    public var canaryKeys: [[UInt8]] = []
    /// `verbosity` from clients: allowed (it changes no log level in Moat) unless `-o disable_verbosity`.
    public var verbosityEnabled = true
    /// The Prometheus endpoint (`-o metrics_port=N`, `metrics_listen=ADDR`); nil when off (the default).
    public var metrics: ListenAddress?
    /// Present with `-Z`: TCP listeners (but `notls:` ones) speak TLS.
    public var tls: TLSOptions?
    /// Present when clients must authenticate.
    public var authentication: AuthenticationOptions?
    public var pidFile: String?
    public var backlog: Int
    /// Flags accepted for compatibility that change nothing; reported once at start.
    public var ignored: [String]

    public static let defaultPort = 11211
    public static let defaultListenHosts = ["127.0.0.1", "::1"]

    /// Addresses that are not loopback: what a firewall mistake would expose.
    public var publicListeners: [ListenAddress] { listeners.filter { !$0.isLoopback } }
}

/// `-U PORT` and its `-o udp_*` limits.
public struct UDPOptions: Sendable, Equatable {
    public var port = 0
    /// A reply may carry at most this many times the request's bytes.
    public var amplification = 3
    /// Per source address: datagrams and bytes a second (bursts of one second's worth).
    public var datagramsPerSecond = 1000
    public var bytesPerSecond = 262_144
    /// Stores, deletes, arithmetic and TTL changes over UDP. Off: a UDP source address can be forged, so
    /// anyone who can spoof an allowed client could otherwise poison the cache.
    public var writes = false

    public init() {}
}

public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
