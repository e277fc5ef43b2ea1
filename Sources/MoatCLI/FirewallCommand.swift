import ArgumentParser
import MoatConfig
import MoatFirewall

/// `moat firewall`: kernel firewall rules that mirror the configured listeners and allow list.
struct FirewallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firewall",
        abstract: "Print nftables, iptables or firewalld rules that mirror the listeners and allow list.")

    @Argument(parsing: .allUnrecognized, help: "memcached-style flags and --config FILE, as for `moat serve`.")
    var serveArguments: [String] = []

    func run() throws {
        throw ValidationError("not yet built")
    }
}
