import ArgumentParser
import Dispatch
import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatServer
import MoatSnapshot
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Moat: ParsableCommand {
    static func main() {
        // memcached users type `moat -h` for the flags: show the server's help rather than the overview.
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["-h"] || arguments == ["--help"] {
            print(Moat.helpMessage(for: Serve.self))
            return
        }
        main(arguments)
    }

    static let configuration = CommandConfiguration(
        commandName: "moat",
        abstract: "A memcached-compatible cache server that is secure by default.",
        discussion:
            "Run `moat serve --help` for memcached's flags. `moat [flags]` is the same as `moat serve [flags]`.",
        subcommands: [
            Serve.self, UserCommand.self, AuditCommand.self, CheckCommand.self, FirewallCommand.self, TopCommand.self,
        ],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    // `moat --help` shows this (serve is the default), so it also names the other subcommands.
    static let configuration = CommandConfiguration(
        abstract: "Run the cache server (memcached's flags; loopback only by default).",
        discussion: otherSubcommands)

    static var otherSubcommands: String {
        let others: [any ParsableCommand.Type] = [
            UserCommand.self, AuditCommand.self, CheckCommand.self, FirewallCommand.self, TopCommand.self,
        ]
        let names = others.map { "moat \($0.configuration.commandName ?? "")" }
        return "`moat [flags]` is `moat serve [flags]`. The other subcommands: \(names.joined(separator: ", ")) "
            + "(`moat help <subcommand>` describes each)."
    }

    @OptionGroup var options: ServeOptions

    func run() throws {
        if options.showVersion {
            print("moat \(MoatVersion.moat) (memcached \(MoatVersion.memcachedCompatible) protocol)")
            return
        }
        // First, while the process has one thread: no exec from any thread may gain privileges.
        try Privileges.forbidNewPrivileges()
        let configuration: ServerConfiguration
        let configFile: ConfigFile?
        let configPath: String?
        let logFormatName: String
        do {
            let options: ServeOptions
            (options, configFile, configPath) = try Self.withConfigFile(self.options)
            logFormatName = options.logFormat ?? "auto"
            configuration = try options.resolve()
            if let configFile, !configFile.tenants.buckets.isEmpty || configFile.tenants.users != nil,
                configuration.authentication == nil
            {
                throw ConfigurationError(
                    """
                    \(configPath ?? ""): buckets and users need authentication: give --credentials FILE (or \
                    `credentials:` under server)
                    """
                )
            }
        } catch let error as ConfigurationError {
            FileHandleStandardError.write("moat: \(error.description)\n")
            throw ExitCode(64)
        }
        let level: Logger.Level
        switch configuration.verbosity {
        case 0: level = .notice
        case 1: level = .info
        case 2: level = .debug
        default: level = .trace
        }
        guard let logFormat = LogFormat(rawValue: logFormatName) else {
            FileHandleStandardError.write("moat: --log-format: expected auto, human or json\n")
            throw ExitCode(64)
        }
        LogFormat.bootstrap(logFormat, level: level)
        let logger = Logger(label: "moat")
        // Read now, while still root if started as root: the file may then stay readable by root alone.
        let authentication: AuthenticationSettings?
        do {
            authentication = try configuration.authentication.map { try loadAuthentication($0, logger: logger) }
        } catch {
            FileHandleStandardError.write("moat: \(error)\n")
            throw ExitCode(64)
        }
        // The snapshot key too: a systemd credential or a root-only file.
        let snapshotKey: SnapshotKey?
        do {
            snapshotKey = try configuration.snapshot?.keyPath.map { try SnapshotKey(path: $0) }
        } catch {
            FileHandleStandardError.write("moat: -o restore_key: \(error)\n")
            throw ExitCode(64)
        }
        let securityLogSink: SecurityLogSink
        do {
            securityLogSink = try SecurityLogSink(destination: configuration.securityLog)
        } catch {
            FileHandleStandardError.write("moat: \(error)\n")
            throw ExitCode(64)
        }
        let certificates: TLSCertificates?
        do {
            certificates = try configuration.tls.map { try TLSCertificates(options: $0) }
        } catch {
            FileHandleStandardError.write("moat: \(error)\n")
            throw ExitCode(64)
        }
        let server = Server(
            configuration: configuration, logger: logger, authentication: authentication,
            securityLogSink: securityLogSink,
            tlsCertificates: certificates, snapshotKey: snapshotKey)
        do {
            try server.engine.reconfigure(
                tenants: configFile?.tenants ?? TenantPlan(), credentials: authentication?.store)
        } catch {
            FileHandleStandardError.write("moat: \(configPath ?? ""): \(error)\n")
            throw ExitCode(64)
        }
        let reloader = Reloader(
            path: configPath, started: configFile, authentication: configuration.authentication, engine: server.engine,
            logger: logger)
        // SIGHUP reloads the TLS certificates (as `refresh_certs` does), the credentials, and the
        // configuration file's buckets and users.
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            if configuration.tls != nil { _ = server.reloadCertificates() }
            reloader.reload()
        }
        hangup.resume()
        // SIGUSR2 saves a snapshot while serving (-e); the cache is locked while it is written.
        signal(SIGUSR2, SIG_IGN)
        let snapshotSignal = DispatchSource.makeSignalSource(signal: SIGUSR2, queue: .global())
        snapshotSignal.setEventHandler {
            if configuration.snapshot == nil {
                logger.warning("SIGUSR2: no -e FILE, nothing to save")
            } else {
                server.saveSnapshot()
            }
        }
        snapshotSignal.resume()
        // swift-service-lifecycle owns SIGTERM and SIGINT: a graceful shutdown stops accepting, lets
        // buffered requests finish and drains replies (Server.stop / waitUntilStopped), then exits 0.
        // The server is started inside the group, once its signal handlers are in place.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(
                        service: MoatService(server: server), successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                ],
                // SIGUSR1: memcached's stop that keeps its memory file (-e); here a stop like SIGTERM's.
                gracefulShutdownSignals: [.sigterm, .sigint, .sigusr1], logger: logger))
        let outcome = Mutex<Error?>(nil)
        let finished = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await group.run()
            } catch {
                outcome.withLock { $0 = error }
            }
            finished.signal()
        }
        finished.wait()
        withExtendedLifetime((hangup, snapshotSignal)) {}
        if let error = outcome.withLock({ $0 }) {
            logger.critical("moat cannot start: \(error)")
            throw ExitCode(1)
        }
        logger.notice("moat stopped")
    }

    /// The options with a configuration file's server settings underneath the command line's (see
    /// `ServeArguments.load`).
    static func withConfigFile(_ options: ServeOptions) throws -> (ServeOptions, ConfigFile?, String?) {
        var commandLine = Array(CommandLine.arguments.dropFirst())
        if commandLine.first == "serve" { commandLine.removeFirst() }
        let loaded = try ServeArguments.load(commandLine, parsed: options)
        return (loaded.options, loaded.file, loaded.path)
    }
}

/// SIGHUP: reads the credentials and the configuration file again and applies buckets, users and
/// permissions. A file with an error changes nothing (the log names its line); server settings need a restart.
final class Reloader: Sendable {
    let path: String?
    let started: ConfigFile?
    let authentication: AuthenticationOptions?
    let engine: Engine
    let logger: Logger

    init(path: String?, started: ConfigFile?, authentication: AuthenticationOptions?, engine: Engine, logger: Logger) {
        self.path = path
        self.started = started
        self.authentication = authentication
        self.engine = engine
        self.logger = logger
    }

    func reload() {
        do {
            var plan = TenantPlan()
            if let path {
                let file = try ConfigFile.parse(try readTextFile(path), path: path)
                if file.server != started?.server {
                    logger.warning("\(path): the server section changed; those settings apply at the next restart")
                }
                plan = file.tenants
            }
            let credentials = try authentication.map {
                try loadCredentials($0, logger: logger, previous: engine.authenticator?.store)
            }
            try engine.reconfigure(tenants: plan, credentials: credentials)
            let detail =
                "\(plan.buckets.count) buckets, "
                + (plan.users.map { "\($0.count) users" } ?? "every user of the credentials")
            logger.notice("configuration reloaded: \(detail)")
            engine.securityLog.record(.configReload(applied: true, detail: detail))
        } catch {
            logger.error("configuration not reloaded; the previous one stays in use: \(error)")
            engine.securityLog.record(.configReload(applied: false, detail: "\(error)"))
        }
    }
}

enum FileHandleStandardError {
    static func write(_ text: String) {
        writeAll(text, to: 2)
    }
}

enum FileHandleStandardOutput {
    static func write(_ text: String) {
        writeAll(text, to: 1)
    }
}

/// All of `text` to a descriptor (a pipe may take it in parts); gives up on an error such as EPIPE.
func writeAll(_ text: String, to fd: Int32) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}

/// Runs `body` on a detached thread of its own (Foundation's `Thread` without Foundation).
func detachThread(_ body: @escaping @Sendable () -> Void) throws {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Body(body))
    let created = pthread_create(
        &thread, nil,
        { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
    guard created == 0 else {
        box.release()
        throw ThreadError(description: "cannot start thread: \(String(cString: strerror(created)))")
    }
    pthread_detach(thread)
}

struct ThreadError: Error, CustomStringConvertible {
    var description: String
}

/// The server as a swift-service-lifecycle service: started when the group runs, stopped on its
/// graceful shutdown (SIGTERM, SIGINT), and finished once every connection has drained. A `shutdown`
/// command (-A) ends it too, which shuts the group down.
struct MoatService: Service, CustomStringConvertible {
    let server: Server
    var description: String { "moat" }

    func run() async throws {
        try server.start()
        try await withGracefulShutdownHandler {
            // waitUntilStopped blocks (NIO closeFuture waits, the epoll threads' joins): on a thread of
            // its own, not the cooperative pool.
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                do {
                    try detachThread {
                        do {
                            try server.waitUntilStopped()
                            continuation.resume()
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        } onGracefulShutdown: {
            server.stop()
        }
    }
}
