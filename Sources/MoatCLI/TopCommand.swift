import ArgumentParser
import MoatAudit
import MoatEngine
import MoatTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `moat top`: a live view of memcached-protocol servers (Moat or memcached), from `stats` every
/// interval, in the manner of memcached-tool and mctop.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Watch servers live: hit ratio, operations, memory, evictions, connections, security events.",
        discussion: """
            SERVER is an address, host name, host:port or [v6]:port (default 127.0.0.1:11211); Moat or \
            memcached. Every --interval seconds each server is asked `stats` over the text protocol (after \
            memcached's ASCII auth with --user; over TLS with --tls) and shown as rates over the interval, \
            busiest first. On a terminal the screen is redrawn and coloured; otherwise (or with --once) \
            plain lines are printed. The password comes from --password-file, the MOAT_PASSWORD \
            environment variable or a prompt; never from the command line.
            """)

    @Argument(help: "Servers to watch.")
    var servers: [String] = ["127.0.0.1"]

    @Option(name: .customLong("interval"), help: "Seconds between readings (0.2-3600).")
    var interval: Double = 1

    @Flag(name: .customLong("once"), help: "Print one snapshot (two readings --interval apart) and exit.")
    var once = false

    @Option(name: .customLong("iterations"), help: "Stop after this many refreshes (default: until interrupted).")
    var iterations: Int?

    @Option(name: .customLong("user"), help: "Log in as this user (memcached's ASCII auth).")
    var user: String?

    @Option(name: .customLong("password-file"), help: "Read the password from this file (its first line).")
    var passwordFile: String?

    @Flag(name: .customLong("tls"), help: "Connect with TLS (needs --ca-file).")
    var tls = false

    @Option(name: .customLong("ca-file"), help: "CA certificates (PEM) that the servers' certificates must chain to.")
    var caFile: String?

    @Option(name: .customLong("cert"), help: "Client certificate (PEM), for servers that require one.")
    var certificate: String?

    @Option(name: .customLong("key"), help: "The client certificate's private key (PEM).")
    var key: String?

    @Option(
        name: .customLong("server-name"), help: "The name the servers' certificates carry (default: the host given).")
    var serverName: String?

    @Option(name: .customLong("timeout"), help: "Seconds each connect and reply may take.")
    var timeout: Double = 3

    @Option(name: .customLong("color"), help: "auto (on a terminal, unless NO_COLOR), always or never.")
    var color = "auto"

    func validate() throws {
        guard interval >= 0.2, interval <= 3600 else { throw ValidationError("--interval: 0.2 to 3600 seconds") }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout: more than 0 and at most 60 seconds") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations: at least 1") }
        if tls && caFile == nil {
            throw ValidationError(
                "--tls needs --ca-file: the password is sent only to a server whose certificate is verified")
        }
        if !tls && (caFile != nil || certificate != nil || key != nil || serverName != nil) {
            throw ValidationError("--ca-file, --cert, --key and --server-name need --tls")
        }
        if (certificate == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if passwordFile != nil && user == nil { throw ValidationError("--password-file needs --user") }
        guard ["auto", "always", "never"].contains(color) else {
            throw ValidationError("--color: auto, always or never")
        }
    }

    func run() throws {
        let endpoints: [Endpoint]
        do {
            endpoints = try TargetList(ports: [11211], limit: 64) { try readTextFile($0) }.expand(servers)
        } catch let error as TargetError {
            throw ValidationError(error.description)
        }
        var options = StatsConnectionOptions(serverName: serverName, user: user, timeout: timeout)
        if user != nil { options.password = try password() }
        if tls {
            do {
                options.tls = try TLSContext.client(ca: caFile, certificate: certificate, key: key)
            } catch {
                throw ValidationError("TLS: \(error)")
            }
        }
        let terminal = isatty(1) == 1
        let colour = color == "always" || (color == "auto" && terminal && getenv("NO_COLOR") == nil)
        var connections: [Endpoint: StatsConnection] = [:]
        var previous: [Endpoint: (stats: [String: String], at: Double)] = [:]

        func read() -> [TopView.Row] {
            endpoints.map { endpoint in
                do {
                    let connection: StatsConnection
                    if let open = connections[endpoint] {
                        connection = open
                    } else {
                        connection = try StatsConnection(host: endpoint.host, port: endpoint.port, options: options)
                        connections[endpoint] = connection
                    }
                    let stats = Dictionary(try connection.stats().map { ($0.name, $0.value) }) { $1 }
                    let now = monotonicSeconds()
                    let before = previous[endpoint]
                    previous[endpoint] = (stats, now)
                    return .figures(
                        TopFigures(
                            server: endpoint.description, before: before?.stats, after: stats,
                            seconds: before.map { now - $0.at } ?? 0))
                } catch {
                    connections[endpoint] = nil
                    previous[endpoint] = nil
                    return .failed(server: endpoint.description, why: "\(error)")
                }
            }
        }

        var rows = read()
        if once {
            sleepSeconds(interval)
            rows = read()
            FileHandleStandardOutput.write(TopView.render(rows, colour: colour).joined(separator: "\n") + "\n")
            if rows.allSatisfy({ if case .failed = $0 { return true } else { return false } }) { throw ExitCode(1) }
            return
        }
        var shown = 0
        while iterations.map({ shown < $0 }) ?? true {
            sleepSeconds(interval)
            rows = read()
            let lines = TopView.render(rows, colour: colour)
            if terminal {
                // Home, clear, then the table with a title line.
                let title = "moat top: \(endpoints.count) server(s), every \(interval) s (Ctrl-C quits)"
                FileHandleStandardOutput.write(
                    "\u{1B}[H\u{1B}[2J" + title + "\n\n" + lines.joined(separator: "\n") + "\n")
            } else {
                FileHandleStandardOutput.write(lines.joined(separator: "\n") + "\n\n")
            }
            shown += 1
        }
    }

    /// From --password-file, MOAT_PASSWORD, or a prompt on the terminal; never from the command line.
    func password() throws -> String {
        if let passwordFile {
            let text = try readTextFile(passwordFile)
            return String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        }
        if let value = getenv("MOAT_PASSWORD") { return String(cString: value) }
        guard isatty(0) == 1 else {
            throw ValidationError("--user needs a password: --password-file, MOAT_PASSWORD or a terminal to ask on")
        }
        return String(decoding: try promptWithoutEcho("Password for \(user ?? ""): "), as: UTF8.self)
    }
}

private func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

private func sleepSeconds(_ seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
}
