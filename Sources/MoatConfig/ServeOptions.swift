import ArgumentParser

/// memcached's command-line flags, with the same short and long names, so that an OPTIONS line
/// written for memcached starts Moat unchanged. Turned into a `ServerConfiguration` by `resolve()`.
package struct ServeOptions: ParsableArguments, Sendable {
    package init() {}

    @Option(
        name: [.customShort("p", allowingJoined: true), .customLong("port")],
        help: "TCP port to listen on (0 disables TCP; default 11211).")
    package var port: Int?

    @Option(
        name: [.customShort("l", allowingJoined: true), .customLong("listen")],
        help:
            "Address to listen on: host, host:port or [v6]:port; repeat or comma-separate. Default: 127.0.0.1 and ::1.")
    package var listen: [String] = []

    @Option(
        name: [.customShort("s", allowingJoined: true), .customLong("unix-socket")],
        help: "Unix socket path to listen on.")
    package var unixSocket: String?

    @Option(
        name: [.customShort("a", allowingJoined: true), .customLong("unix-mask")],
        help: "Permissions of the unix socket, octal (default 0700).")
    package var unixMask: String?

    @Option(
        name: [.customShort("U", allowingJoined: true), .customLong("udp-port")],
        help: "UDP port (0, the default, is off); needs -o allow= (or -o insecure_udp); replies at most 3x the request."
    )
    package var udpPort: Int?

    @Option(
        name: [.customShort("m", allowingJoined: true), .customLong("memory-limit")],
        help: "Item memory in megabytes (default 64).")
    package var memoryLimit: String?

    @Flag(
        name: [.customShort("M"), .customLong("disable-evictions")],
        help: "Return errors instead of evicting items when memory is full.")
    package var disableEvictions = false

    @Option(
        name: [.customShort("c", allowingJoined: true), .customLong("conn-limit")],
        help: "Maximum simultaneous connections (default 1024).")
    package var connLimit: Int?

    @Option(
        name: [.customShort("t", allowingJoined: true), .customLong("threads")], help: "Worker threads (default 4).")
    package var threads: Int?

    @Option(
        name: [.customShort("I", allowingJoined: true), .customLong("max-item-size")],
        help: "Largest item, with k/m suffix (default 1m).")
    package var maxItemSize: String?

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Log more (-vv: more still).")
    package var verbose: Int

    @Option(
        name: [.customShort("u", allowingJoined: true), .customLong("user")],
        help: "Account to serve as when started as root (default: nobody).")
    package var user: String?

    @Option(
        name: [.customShort("B", allowingJoined: true), .customLong("protocol")],
        help: "auto (sniff each connection's first byte; the default), ascii or binary.")
    package var protocolMode: String?

    @Flag(name: [.customShort("A"), .customLong("enable-shutdown")], help: "Allow the `shutdown` command.")
    package var enableShutdown = false

    @Flag(name: [.customShort("F"), .customLong("disable-flush-all")], help: "Refuse `flush_all`.")
    package var disableFlushAll = false

    @Flag(
        name: [.customShort("X"), .customLong("disable-dumping")], help: "Refuse key dumping (already Moat's default).")
    package var disableDumping = false

    @Flag(name: [.customShort("W"), .customLong("disable-watch")], help: "Refuse `watch` (already Moat's default).")
    package var disableWatch = false

    @Option(
        name: [.customShort("o", allowingJoined: true), .customLong("extended")],
        help:
            """
            Comma-separated extended options: idle_timeout=SECONDS, insecure_public_bind, lenient_keys, \
            allow=CIDR,..., deny=CIDR,..., max_conns_per_ip=N, command_timeout=SECONDS, output_timeout=SECONDS, \
            output_budget=MB, security_log=stderr|off|FILE, ssl_chain_cert=PEM, ssl_key=PEM, ssl_ca_cert=PEM, \
            ssl_verify_mode=0-3, ssl_min_version=tlsv1.2|tlsv1.3, ssl_handshake_timeout=SECONDS, canary=KEY;KEY, \
            disable_verbosity, sasl_mechs=M1:M2, auth_timeout=SECONDS, auth_max_failures=N, auth_burst=N, \
            auth_delay=SECONDS, auth_lockout_failures=N, auth_lockout_seconds=SECONDS, insecure_udp, \
            udp_amplification=N, udp_rate=N, udp_bytes_rate=N, udp_writes, metrics_port=PORT, metrics_listen=ADDR, \
            restore_max_age=SECONDS, restore_key=FILE, and memcached's tuning options (accepted, ignored).
            """
    )
    package var extended: [String] = []

    @Flag(
        name: [.customShort("S"), .customLong("enable-sasl")],
        help: "Require authentication on every protocol (users from --credentials or -Y).")
    package var enableSASL = false

    @Option(
        name: .customLong("credentials"),
        help: "Credentials file written by `moat user add` (mode 0600); turns authentication on.")
    package var credentials: String?

    @Option(
        name: [.customShort("Y", allowingJoined: true), .customLong("auth-file")],
        help: "memcached's plaintext user:password file; turns authentication on (prefer --credentials).")
    package var authFile: String?

    @Flag(
        name: [.customShort("Z"), .customLong("enable-ssl")],
        help:
            """
            TLS on every TCP listener but `-l notls:ADDR` ones (-o ssl_chain_cert=, ssl_key=, ssl_ca_cert=, \
            ssl_verify_mode=, ssl_min_version=).
            """
    )
    package var enableTLS = false

    @Option(
        name: [.customShort("e", allowingJoined: true), .customLong("memory-file")],
        help:
            """
            Warm restarts: save the cache to this file when stopping (SIGTERM, SIGINT, SIGUSR1, `shutdown`; SIGUSR2             saves while serving) and load it at start (-o restore_max_age=SECONDS, restore_key=FILE).
            """
    )
    package var memoryFile: String?

    @Option(
        name: [.customShort("P", allowingJoined: true), .customLong("pidfile")],
        help: "Write the process id to this file.")
    package var pidFile: String?

    @Flag(
        name: [.customShort("d"), .customLong("daemon")],
        help: "Accepted for compatibility and ignored: Moat stays in the foreground (use systemd).")
    package var daemon = false

    @Option(
        name: [.customShort("b", allowingJoined: true), .customLong("listen-backlog")],
        help: "Listen backlog (default 1024).")
    package var backlog: Int?

    @Option(
        name: [.customShort("R", allowingJoined: true), .customLong("max-reqs-per-event")],
        help: "Accepted for compatibility, ignored.")
    package var maxRequestsPerEvent: Int?

    @Option(
        name: [.customShort("f", allowingJoined: true), .customLong("slab-growth-factor")],
        help: "Accepted for compatibility, ignored (no slab classes).")
    package var growthFactor: String?

    @Option(
        name: [.customShort("n", allowingJoined: true), .customLong("slab-min-size")],
        help: "Accepted for compatibility, ignored (no slab classes).")
    package var slabMinSize: Int?

    @Flag(
        name: [.customShort("C"), .customLong("disable-cas")],
        help: "Accepted for compatibility, ignored (CAS stays on).")
    package var disableCAS = false

    @Flag(name: [.customShort("k"), .customLong("lock-memory")], help: "Accepted for compatibility, ignored.")
    package var lockMemory = false

    @Flag(name: [.customShort("r"), .customLong("enable-coredumps")], help: "Accepted for compatibility, ignored.")
    package var enableCoredumps = false

    @Flag(name: [.customShort("L"), .customLong("enable-largepages")], help: "Accepted for compatibility, ignored.")
    package var largePages = false

    @Option(
        name: .customLong("config"),
        help:
            """
            YAML configuration file: server settings, buckets and users (docs/tenants.md). Flags on the command \
            line win over its server settings. Default: /etc/moat/moat.conf when it exists.
            """
    )
    package var configFile: String?

    @Flag(name: .customLong("no-config"), help: "Do not read /etc/moat/moat.conf.")
    package var noConfig = false

    @Option(
        name: .customLong("log-format"),
        help: "auto (human lines on a terminal, JSON lines otherwise; the default), human or json.")
    package var logFormat: String?

    @Flag(name: [.customShort("V"), .customLong("version")], help: "Print the version and exit.")
    package var showVersion = false
}
