import ArgumentParser
import MoatAudit
import MoatConfig
import MoatEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ReportFormat: ExpressibleByArgument {}
extension Severity: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.description) }
}

/// How reports are written, shared by audit and check.
struct ReportOptions: ParsableArguments {
    @Option(name: .customLong("format"), help: "table (for people), json or sarif (for CI code scanning).")
    var format: ReportFormat = .table

    @Option(
        name: .customLong("fail-on"),
        help: "Exit 1 when a finding is at least this severe: info, low, medium, high or critical.")
    var failOn: Severity = .high

    @Option(
        name: .customLong("color"),
        help: "Colour the table: auto (when standard output is a terminal), always or never.")
    var color: String = "auto"

    func validate() throws {
        guard ["auto", "always", "never"].contains(color) else {
            throw ValidationError("--color: expected auto, always or never")
        }
    }

    /// Writes the report and exits 1 when it failed.
    func emit(_ report: Report) throws {
        let useColor =
            color == "always"
            || (color == "auto" && isatty(1) == 1 && getenv("NO_COLOR") == nil)
        FileHandleStandardOutput.write(report.render(format, color: useColor))
        if report.failed { throw ExitCode(1) }
    }
}

/// `moat audit`: probe hosts for memcached-protocol services and report what an attacker would find.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Probe hosts for exposed memcached-protocol services (any server, not only Moat).",
        discussion: """
            TARGET is an address, host name, host:port, [v6]:port, CIDR range (every address in it) or @FILE \
            (targets separated by spaces or lines; # starts a comment). Only the targets given are probed. \
            Per service it reports unauthenticated access, key enumeration (stats cachedump, lru_crawler metadump), \
            with --intrusive unauthenticated writes (a probe key set, then deleted), with --udp the UDP amplification \
            factor of a small stats and get request, TLS and authentication, and public addresses. \
            Exit status: 0, or 1 when a finding reaches --fail-on.
            """)

    @Argument(help: "Hosts, host:port, CIDR ranges or @FILE.")
    var targets: [String]

    @Option(
        name: [.customShort("p"), .customLong("port")], parsing: .singleValue,
        help: "TCP port for targets without one (repeatable; default 11211).")
    var ports: [Int] = []

    @Flag(name: .customLong("udp"), help: "Also probe UDP (memcached's framing) and measure the amplification.")
    var udp = false

    @Option(name: .customLong("udp-port"), help: "UDP port to probe (default: each target's TCP port).")
    var udpPort: Int?

    @Flag(
        name: .customLong("intrusive"),
        help: "Check whether an unauthenticated client can write: sets, then deletes, a unique probe key.")
    var intrusive = false

    @Flag(name: .customLong("no-tls"), help: "Do not try a TLS handshake.")
    var noTLS = false

    @Option(name: .customLong("timeout"), help: "Seconds each connect and reply may take.")
    var timeout: Double = 2

    @Option(name: .customLong("concurrency"), help: "Endpoints probed at once (1-256).")
    var concurrency: Int = 32

    @Option(name: .customLong("max-targets"), help: "Refuse to probe more endpoints than this.")
    var maxTargets: Int = 65_536

    @Flag(
        name: .customLong("no-progress"),
        help: "No progress bar on standard error (shown on a terminal for more than one endpoint).")
    var noProgress = false

    @OptionGroup var report: ReportOptions

    func validate() throws {
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency: 1 to 256") }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout: more than 0 and at most 60 seconds") }
        guard ports.allSatisfy({ (1...65535).contains($0) }) else { throw ValidationError("--port: 1 to 65535") }
        if let udpPort, !(1...65535).contains(udpPort) { throw ValidationError("--udp-port: 1 to 65535") }
        if udpPort != nil && !udp { throw ValidationError("--udp-port needs --udp") }
        guard maxTargets >= 1 else { throw ValidationError("--max-targets: at least 1") }
    }

    func run() throws {
        let list = TargetList(ports: ports.isEmpty ? [11211] : ports, limit: maxTargets) { path in
            try readTextFile(path)
        }
        let endpoints: [Endpoint]
        do {
            endpoints = try list.expand(targets)
        } catch let error as TargetError {
            throw ValidationError(error.description)
        }
        var settings = AuditSettings()
        settings.timeout = timeout
        settings.concurrency = concurrency
        settings.intrusive = intrusive
        settings.probeTLS = !noTLS
        settings.udp = udp
        settings.udpPort = udpPort
        let scanner = try AuditScanner(settings: settings)
        let showProgress = !noProgress && endpoints.count > 1 && isatty(2) == 1
        let observations = scanner.scan(endpoints) { done, services in
            if showProgress {
                FileHandleStandardError.write(
                    ProgressBar.render(done: done, total: endpoints.count, services: services))
            }
        }
        if showProgress { FileHandleStandardError.write("\n") }
        let services = observations.filter(\.isMemcached)
        let result = Report(
            command: .audit, toolVersion: MoatVersion.moat, inputs: targets, endpointsScanned: endpoints.count,
            services: services, findings: services.flatMap(AuditAssessment.findings(for:)), failOn: report.failOn)
        try report.emit(result)
    }
}

/// `moat check`: a configuration's risks, read as `moat serve` reads it, without starting a server.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Report a configuration's risks without starting a server.",
        discussion: """
            Takes moat serve's flags (memcached's) and --config FILE, and reports public listeners without \
            authentication or allow list, UDP, flush and shutdown without authentication, serving as root, TLS \
            without verification, secrets others can read, and a configuration moat serve would refuse. \
            Exit status: 0, or 1 when a finding reaches --fail-on.
            """)

    @OptionGroup var report: ReportOptions

    @Argument(parsing: .allUnrecognized, help: "moat serve's flags and --config FILE.")
    var serveArguments: [String] = []

    func run() throws {
        var subject = "command line"
        var findings: [Finding] = []
        var configPath: String?
        let status: @Sendable (String) -> ConfigurationCheck.FileStatus? = { path in
            var info = stat()
            guard stat(path, &info) == 0, access(path, R_OK) == 0 else { return nil }
            return ConfigurationCheck.FileStatus(
                mode: UInt32(info.st_mode), ownerIsRootOrSelf: info.st_uid == 0 || info.st_uid == geteuid(),
                owner: info.st_uid, group: info.st_gid)
        }
        // As moat serve: root serves as -u (nobody by default); anyone else as themselves.
        let account: @Sendable (String?) -> ConfigurationCheck.Account? = { user in
            guard geteuid() == 0 else { return .init(user: geteuid(), group: getegid()) }
            guard let entry = getpwnam(user ?? "nobody") else { return nil }
            return .init(user: entry.pointee.pw_uid, group: entry.pointee.pw_gid)
        }
        do {
            let loaded = try ServeArguments.load(serveArguments)
            configPath = loaded.path
            if let path = loaded.path { subject = path }
            let check = ConfigurationCheck(subject: subject, status: status, account: account)
            do {
                let configuration = try loaded.options.resolve()
                if let file = loaded.file, !file.tenants.buckets.isEmpty || file.tenants.users != nil,
                    configuration.authentication == nil
                {
                    findings = check.refused("buckets and users need authentication: give --credentials FILE")
                } else {
                    findings = check.findings(
                        for: configuration, tenants: loaded.file?.tenants, configPath: loaded.path)
                }
            } catch let error as ConfigurationError {
                findings = check.refused(error.description)
            }
        } catch let error as ConfigurationError {
            findings = ConfigurationCheck(subject: subject, status: status).refused(error.description)
        }
        let result = Report(
            command: .check, toolVersion: MoatVersion.moat, inputs: serveArguments, findings: findings,
            failOn: report.failOn,
            configurationFile: configPath)
        try report.emit(result)
    }
}
