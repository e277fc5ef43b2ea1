import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatProtocol
import MoatStorage
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A running Moat: listeners on an event-loop group, all sharing one engine.
public final class Server: Sendable {
    public let configuration: ServerConfiguration
    public let engine: Engine
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let listeners = Mutex<[Channel]>([])
    /// Open client connections of the SwiftNIO backend, so a stop can drain them.
    private let connections = ConnectionRegistry()
    private let epoll: EpollServer?
    private let gate: ConnectionGate
    private let tlsCertificates: TLSCertificates?
    /// `-U`: the UDP sockets and their threads, and what answers them.
    private let udp: (listener: UDPListener, responder: UDPResponder)?
    /// `-o metrics_port`: the Prometheus endpoint.
    private let metrics: MetricsEndpoint?

    /// `authentication`: the users and limits when clients must authenticate (loaded by the caller,
    /// before root is dropped, so the credentials file may stay readable by root only).
    public init(
        configuration: ServerConfiguration, logger: Logger, authentication: AuthenticationSettings? = nil,
        securityLogSink: SecurityLogSink? = nil, tlsCertificates: TLSCertificates? = nil
    ) {
        self.tlsCertificates = tlsCertificates
        self.configuration = configuration
        self.logger = logger
        let cache = Cache(
            configuration: CacheConfiguration(
                memoryLimit: configuration.memoryLimit, maxItemSize: configuration.maxItemSize,
                evictionsEnabled: configuration.evictionsEnabled,
                shardCount: CacheConfiguration.shardCount(forThreads: configuration.threads, memoryLimit: configuration.memoryLimit)))
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
            Authenticator(settings: settings, now: monotonicSeconds) { event in securityLog.record(.authentication(event)) }
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
            cache: cache, settings: settings, authenticator: authenticator, securityLog: securityLog, certificateReloader: reloader)
        self.gate = ConnectionGate(configuration: configuration, counters: engine.connections, securityLog: securityLog, logger: logger)
        let engine = self.engine
        self.udp = configuration.udp.map { options in
            let limiter = SourceRateLimiter(
                limits: .init(datagramsPerSecond: Double(options.datagramsPerSecond), bytesPerSecond: Double(options.bytesPerSecond)),
                now: monotonicSeconds)
            let responder = UDPResponder(
                engine: engine, policy: .init(amplification: options.amplification, allowsWrites: options.writes), filter: configuration.addressFilter, limiter: limiter)
            return (UDPListener(logger: logger), responder)
        }
        self.metrics = configuration.metrics.map {
            MetricsEndpoint(address: $0, engine: engine, filter: configuration.addressFilter, logger: logger)
        }
        let useEpoll = configuration.ioBackend == .epoll
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: useEpoll ? 1 : configuration.threads)
        if useEpoll {
            let box = WeakServer()
            self.epoll = EpollServer(configuration: configuration, engine: engine, gate: gate, logger: logger) { box.server?.stop() }
            box.server = self
        } else {
            self.epoll = nil
        }
    }

    /// Binds every listener, writes the pid file, drops root, and starts background reclaim.
    /// Throws (having closed what it opened) when any explicitly requested listener cannot bind.
    public func start() throws {
        for notice in configuration.ignored {
            logger.warning("ignored for compatibility: \(notice)")
        }
        let descriptors = Privileges.raiseDescriptorLimit(toServe: configuration.maxConnections)
        if descriptors < configuration.maxConnections + 64 {
            logger.warning(
                "-c \(configuration.maxConnections): the open-file limit is \(descriptors); connections beyond about \(max(0, descriptors - 64)) will be refused (raise LimitNOFILE or ulimit -n)")
        }
        if let epoll {
            do {
                try epoll.bindAll()
                try bindUDP()
                try metrics?.bind(on: group)
                if let pidFile = configuration.pidFile { try writePidFile(pidFile) }
                let account = try Privileges.dropIfRoot(to: configuration.user)
                try Privileges.dropCapabilities(eventLoops: group)
                // Threads (and so accepting) start only once root is gone.
                try epoll.startThreads()
                if let udp { try udp.listener.start(responder: udp.responder) }
                try metrics?.resume()
                logger.notice("moat ready: \(configuration.exposureSummary(servingAs: account))")
            } catch {
                epoll.stop()
                epoll.wait()
                metrics?.stop()
                udp?.listener.stop()
                udp?.listener.wait()
                try? group.syncShutdownGracefully()
                throw error
            }
            return
        }
        do {
            try bindAll()
            try bindUDP()
            try metrics?.bind(on: group)
            if let pidFile = configuration.pidFile {
                try writePidFile(pidFile)
            }
            let account = try Privileges.dropIfRoot(to: configuration.user)
            try Privileges.dropCapabilities(eventLoops: group)
            if let udp { try udp.listener.start(responder: udp.responder) }
            try metrics?.resume()
            // Listeners were bound with accepting paused: no client is served until root is gone.
            for channel in listeners.withLock({ $0 }) {
                try channel.setOption(ChannelOptions.autoRead, value: true).wait()
            }
            let engine = self.engine
            group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                engine.reclaimExpired(perShardLimit: 2000)
            }
            logger.notice("moat ready: \(configuration.exposureSummary(servingAs: account))")
        } catch {
            stop()
            try? group.syncShutdownGracefully()
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

    /// Blocks until every listener has closed (after `stop()` or a `shutdown` command), then releases the threads.
    public func waitUntilStopped() throws {
        epoll?.wait()
        let channels = listeners.withLock { $0 }
        for channel in channels {
            try? channel.closeFuture.wait()
        }
        udp?.listener.wait()
        metrics?.wait()
        // SwiftNIO backend: the connections drain (see ConnectionHandler.beginDrain) for up to 10 s.
        let deadline = NIODeadline.now() + .seconds(10)
        while !connections.isEmpty, NIODeadline.now() < deadline { usleep(20_000) }
        try group.syncShutdownGracefully()
        if let pidFile = configuration.pidFile { unlink(pidFile) }
    }

    /// Loads the TLS certificate files again (SIGHUP); nil on success, else why the old ones stay.
    public func reloadCertificates() -> String? {
        engine.certificateReloader?() ?? "TLS is not enabled (-Z)"
    }

    /// Stops accepting connections; `waitUntilStopped` then closes the open ones. Safe from any thread.
    public func stop() {
        epoll?.stop()
        udp?.listener.stop()
        metrics?.stop()
        let channels = listeners.withLock { $0 }
        for channel in channels { channel.close(promise: nil) }
        for channel in connections.all {
            channel.pipeline.fireUserInboundEventTriggered(ConnectionHandler.Drain())
        }
    }

    // MARK: listeners

    private func bootstrap(tls: Bool = false) -> ServerBootstrap {
        let engine = self.engine
        let logger = self.logger
        let gate = self.gate
        let deadlines = ConnectionDeadlines.Limits(configuration)
        let onShutdown: @Sendable () -> Void = { [weak self] in self?.stop() }
        return ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [tlsCertificates, connections] channel in
                connections.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    if tls, let certificates = tlsCertificates {
                        try handlers.addHandler(NIOSSLServerHandler(context: certificates.context))
                        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
                        try handlers.addHandler(
                            TLSHandshakeDeadline(seconds: certificates.options.handshakeTimeout) { _ in
                                engine.connections.tlsHandshakeErrors.add(1, ordering: .relaxed)
                                engine.securityLog.record(.connectionClosed(peer: peer, reason: "tls_handshake_timeout"))
                            })
                    }
                    try handlers.addHandler(ConnectionHandler(
                            engine: engine, gate: gate, deadlines: deadlines,
                            certificateAuthentication: tls && (tlsCertificates?.options.certificateAuthentication ?? false),
                            logger: logger, onShutdown: onShutdown))
                }.flatMapErrorThrowing { error in
                    logger.error("cannot set up a connection: \(error)")
                    throw error
                }
            }
    }

    private func bindAll() throws {
        let bootstrap = bootstrap()
        let secure = tlsCertificates == nil ? nil : self.bootstrap(tls: true)
        let mask = configuration.unixMask
        let channels = try openListeners(
            configuration, logger: logger,
            tcp: { address in
                let chosen = address.tls ? (secure ?? bootstrap) : bootstrap
                return try chosen.bind(host: address.host, port: address.port).wait()
            },
            unix: { path in
                // Create the socket with the requested mode from the start (no window with looser permissions).
                let previous = umask(mode_t(~mask & 0o777))
                defer { umask(previous) }
                // No chmod by name afterwards: as root it would follow a symlink put in the socket's place.
                return try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
            },
            close: { $0.close(promise: nil) })
        listeners.withLock { $0 = channels }
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

/// The SwiftNIO backend's open connections (each leaves when its channel closes).
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: Channel]>([:])

    func add(_ channel: Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in channels.withLock { _ = $0.removeValue(forKey: id) } }
    }

    var all: [Channel] { channels.withLock { Array($0.values) } }
    var isEmpty: Bool { channels.withLock { $0.isEmpty } }
}

/// Lets the epoll loops ask the server to stop without a reference cycle.
final class WeakServer: @unchecked Sendable {
    weak var server: Server?
}

public struct ListenError: Error, CustomStringConvertible {
    public var description: String
}
