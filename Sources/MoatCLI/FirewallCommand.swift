import ArgumentParser
import MoatConfig
import MoatFirewall

extension FirewallFormat: ExpressibleByArgument {}

/// `moat firewall`: kernel firewall rules that mirror the configured listeners and allow list.
struct FirewallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firewall",
        abstract: "Print nftables, iptables or firewalld rules that mirror the listeners and allow list.",
        discussion: """
            Reads moat serve's flags and --config FILE as moat serve does, and prints rules that drop, per \
            listener (TCP, UDP and the metrics port), what Moat would refuse: sources on the deny list, sources \
            off the allow list, and traffic to a loopback listener from outside lo. docs/firewall.md.
            """)

    @Option(name: .customLong("format"), help: "nftables, iptables (IPv4), ip6tables (IPv6) or firewalld.")
    var format: FirewallFormat = .nftables

    @Argument(parsing: .allUnrecognized, help: "moat serve's flags and --config FILE.")
    var serveArguments: [String] = []

    func run() throws {
        do {
            let loaded = try ServeArguments.load(serveArguments)
            let configuration = try loaded.options.resolve()
            var source = serveArguments.isEmpty ? "the default configuration" : serveArguments.joined(separator: " ")
            // The file read without being named (/etc/moat/moat.conf) is part of what the rules mirror.
            if let path = loaded.path, !serveArguments.contains(where: { $0.hasSuffix(path) }) {
                source += " (with \(path))"
            }
            let text = try FirewallRules.render(configuration, format: format, source: source)
            FileHandleStandardOutput.write(text)
        } catch let error as ConfigurationError {
            FileHandleStandardError.write("moat firewall: \(error.description)\n")
            throw ExitCode(64)
        } catch let error as FirewallError {
            FileHandleStandardError.write("moat firewall: \(error.description)\n")
            throw ExitCode(64)
        }
    }
}
