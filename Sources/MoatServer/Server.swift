import CEpoll
import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatProtocol
import MoatSnapshot
import MoatStorage
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A running Moat: the epoll loops serving every listener, UDP and the metrics endpoint, sharing one
/// engine. SwiftNIO's event-loop group carries only the metrics endpoint, and is started only for it.
package final class Server: Sendable {
    package let configuration: ServerConfiguration
    package let engine: Engine
    private let logger: Logger
    /// SwiftNIO's event loop for `-o metrics_port` alone: nil (no thread started) without it, as by default.
    private let group: MultiThreadedEventLoopGroup?
    private let epoll: EpollServer
    private let gate: ConnectionGate
    private let tlsCertificates: TLSCertificates?
    /// `-U`: the UDP sockets and their threads, and what answers them.
    private let udp: (listener: UDPListener, responder: UDPResponder)?
    /// `-o metrics_port`: the Prometheus endpoint.
    private let metrics: MetricsEndpoint?
    /// `-e`: the snapshot loaded at start and saved at the stop.
    private let warmRestart: WarmRestart?

    /// `authentication`: the users and limits when clients must authenticate (loaded by the caller,
    /// before root is dropped, so the credentials file may stay readable by root only).
    package init(
        configuration: ServerConfiguration, logger: Logger, authentication: AuthenticationSettings? = nil,
        securityLogSink: SecurityLogSink? = nil, tlsCertificates: TLSCertificates? = nil,
        snapshotKey: SnapshotKey? = nil
    ) {
        self.tlsCertificates = tlsCertificates
        self.configuration = configuration
        self.logger = logger
        let cache = Cache(
            configuration: CacheConfiguration(
                memoryLimit: configuration.memoryLimit, maxItemSize: configuration.maxItemSize,
                evictionsEnabled: configuration.evictionsEnabled,
                shardCount: CacheConfiguration.shardCount(
                    forThreads: configuration.threads, memoryLimit: configuration.memoryLimit)))
        var limits = ProtocolLimits(maxItemSize: configuration.maxItemSize)
        limits.allowControlBytesInKeys = configuration.lenientKeys
        var settings = EngineSettings(
            protocolMode: EngineSettings.ProtocolMode(rawValue: configuration.protocolMode.rawValue) ?? .auto,
            limits: limits,
            flushEnabled: configuration.flushEnabled, shutdownEnabled: configuration.shutdownEnabled,
            dumpEnabled: configuration.dumpEnabled, maxConnections: configuration.maxConnections,
            threads: configuration.threads, settingsReport: configuration.settingsReport)
        settings.canaryKeys = configuration.canaryKeys
        settings.verbosityEnabled = configuration.verbosityEnabled
        settings.udpEnabled = configuration.udp != nil
        settings.outputBudgetBytes = configuration.outputBudgetMegabytes << 20
        let securityLog = SecurityLog { event in securityLogSink?.write(event) }
        let authenticator = authentication.map { settings in
            Authenticator(settings: settings, now: monotonicSeconds) { event in
                securityLog.record(.authentication(event))
            }
        }
        let reloader: (@Sendable () -> String?)? = tlsCertificates.map { certificates in
            { @Sendable in
                do {
                    try certificates.reload()
                    logger.notice("TLS certificates reloaded")
                    return nil
                } catch {
                    logger.error("TLS certificates not reloaded; the previous ones stay in use: \(error)")
                    return "\(error)"
                }
            }
        }
        self.engine = Engine(
            cache: cache, settings: settings, authenticator: authenticator, securityLog: securityLog,
            certificateReloader: reloader)
        self.gate = ConnectionGate(
            configuration: configuration, counters: engine.connections, securityLog: securityLog, logger: logger)
        let engine = self.engine
        self.udp = configuration.udp.map { options in
            let limiter = SourceRateLimiter(
                limits: .init(
                    datagramsPerSecond: Double(options.datagramsPerSecond),
                    bytesPerSecond: Double(options.bytesPerSecond)),
                now: monotonicSeconds)
            let responder = UDPResponder(
                engine: engine, policy: .init(amplification: options.amplification, allowsWrites: options.writes),
                filter: configuration.addressFilter, limiter: limiter)
            return (UDPListener(logger: logger), responder)
        }
        self.metrics = configuration.metrics.map {
            MetricsEndpoint(address: $0, engine: engine, filter: configuration.addressFilter, logger: logger)
        }
        self.warmRestart = configuration.snapshot.map {
            WarmRestart(options: $0, key: snapshotKey, engine: engine, logger: logger)
        }
        self.group = configuration.metrics == nil ? nil : MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = WeakServer()
        self.epoll = EpollServer(
            configuration: configuration, engine: engine, gate: gate, certificates: tlsCertificates, logger: logger
        ) { box.server?.stop() }
        box.server = self
    }

    /// Binds every listener, writes the pid file, drops root, and starts the connection threads.
    /// Throws (having closed what it opened) when any explicitly requested listener cannot bind.
    package func start() throws {
        for notice in configuration.ignored {
            logger.warning("ignored for compatibility: \(notice)")
        }
        let descriptors = Privileges.raiseDescriptorLimit(toServe: configuration.maxConnections)
        if descriptors < configuration.maxConnections + 64 {
            logger.warning(
                """
                -c \(configuration.maxConnections): the open-file limit is \(descriptors); connections beyond \
                about \(max(0, descriptors - 64)) will be refused (raise LimitNOFILE or ulimit -n)
                """
            )
        }
        do {
            try epoll.bindAll()
            try bindUDP()
            if let metrics, let group { try metrics.bind(on: group) }
            if let pidFile = configuration.pidFile { try writePidFile(pidFile) }
            let account = try Privileges.dropIfRoot(to: configuration.user)
            try Privileges.dropCapabilities(eventLoops: group)
            // As the serving account (the file is its own), and before a connection is accepted.
            warmRestart?.restore()
            // Threads (and so accepting) start only once root is gone.
            try epoll.startThreads()
            if let udp { try udp.listener.start(responder: udp.responder) }
            try metrics?.resume()
            logger.notice("moat ready: \(configuration.exposureSummary(servingAs: account))")
            // Start-up code (flags, configuration, YAML, the restore) is not needed again: its pages
            // leave the resident set, about 12 MB of a 21 MB idle process (docs/performance.md).
            #if os(Linux)
            _ = moat_release_code_pages()
            #endif
        } catch {
            epoll.stop()
            epoll.wait()
            metrics?.stop()
            udp?.listener.stop()
            udp?.listener.wait()
            try? group?.syncShutdownGracefully()
            throw error
        }
    }

    /// `-U`: the UDP port on every TCP listen host, bound while still root.
    private func bindUDP() throws {
        guard let udp, let options = configuration.udp else { return }
        var hosts: [String] = []
        for listener in configuration.listeners where !hosts.contains(listener.host) { hosts.append(listener.host) }
        try udp.listener.bind(hosts: hosts, port: options.port)
    }

    /// Blocks until the connection threads have drained and ended (after `stop()` or a `shutdown`
    /// command), then releases the rest.
    package func waitUntilStopped() throws {
        epoll.wait()
        udp?.listener.wait()
        // Every connection has drained: no acknowledged write is missing from the snapshot.
        warmRestart?.save(reason: "stop")
        metrics?.wait()
        try group?.syncShutdownGracefully()
        if let pidFile = configuration.pidFile { unlink(pidFile) }
    }

    /// Saves a snapshot now, while serving (SIGUSR2); false without `-e` or when it cannot be written.
    @discardableResult
    package func saveSnapshot() -> Bool {
        warmRestart?.save(reason: "on demand") ?? false
    }

    /// Loads the TLS certificate files again (SIGHUP); nil on success, else why the old ones stay.
    package func reloadCertificates() -> String? {
        engine.certificateReloader?() ?? "TLS is not enabled (-Z)"
    }

    /// Stops accepting connections; the threads drain the open ones and end. Safe from any thread.
    package func stop() {
        epoll.stop()
        udp?.listener.stop()
        metrics?.stop()
    }

    /// Written while still root, so neither followed through a symlink (O_NOFOLLOW) nor written into a
    /// file that is anything but a regular file of one link: an account that can write the pid file's
    /// directory must not get root to overwrite /etc/shadow through it.
    private func writePidFile(_ path: String) throws {
        func failure(_ what: String) -> ListenError {
            ListenError(description: "cannot write pid file \(path): \(what)")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard fd >= 0 else {
            throw failure(errno == ELOOP ? "it is a symbolic link" : String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(String(cString: strerror(errno))) }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else {
            throw failure("not a regular file of its own (a hard link, a device or a FIFO)")
        }
        let text = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0, text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
            throw failure(String(cString: strerror(errno)))
        }
    }
}

/// Monotonic seconds, for the authentication throttle.
@Sendable func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// Lets the epoll loops ask the server to stop without a reference cycle.
final class WeakServer: @unchecked Sendable {
    weak var server: Server?
}

package struct ListenError: Error, CustomStringConvertible {
    package var description: String
}
