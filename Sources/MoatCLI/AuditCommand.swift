import ArgumentParser
import MoatAudit

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Scan for exposed memcached-protocol services.")
    func run() throws { throw ValidationError("not yet built") }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Report a configuration's risks without starting a server.")
    func run() throws { throw ValidationError("not yet built") }
}
