import ArgumentParser
import Dispatch
import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatServer

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
        discussion: "Run `moat serve --help` for memcached's flags. `moat [flags]` is the same as `moat serve [flags]`.",
        subcommands: [Serve.self, UserCommand.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the cache server (memcached's flags; loopback only by default).")

    @OptionGroup var options: ServeOptions

    func run() throws {
        if options.showVersion {
            print("moat \(MoatVersion.moat) (memcached \(MoatVersion.memcachedCompatible) protocol)")
            return
        }
        // First, while the process has one thread: no exec from any thread may gain privileges.
        try Privileges.forbidNewPrivileges()
        let configuration: ServerConfiguration
        do {
            configuration = try options.resolve()
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
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "moat")
        // Read now, while still root if started as root: the file may then stay readable by root alone.
        let authentication: AuthenticationSettings?
        do {
            authentication = try configuration.authentication.map { try loadAuthentication($0, logger: logger) }
        } catch {
            FileHandleStandardError.write("moat: \(error)\n")
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
            configuration: configuration, logger: logger, authentication: authentication, securityLogSink: securityLogSink,
            tlsCertificates: certificates)
        // Before start: a SIGTERM that arrives once clients are served must stop the server, not be lost.
        let signals = installStopSignals { server.stop() }
        do {
            try server.start()
        } catch {
            logger.critical("moat cannot start: \(error)")
            throw ExitCode(1)
        }
        // SIGHUP reloads the TLS certificates, as `refresh_certs` does.
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler { _ = server.reloadCertificates() }
        hangup.resume()
        try server.waitUntilStopped()
        withExtendedLifetime((signals, hangup)) {}
        logger.notice("moat stopped")
    }

    /// SIGTERM and SIGINT stop accepting and close the connections; the process then exits 0.
    private func installStopSignals(_ stop: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler(handler: stop)
            source.resume()
            return source
        }
    }
}

enum FileHandleStandardError {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
