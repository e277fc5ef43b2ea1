/// How much a finding matters. `--fail-on LEVEL` turns one at or above LEVEL into a non-zero exit.
package enum Severity: Int, Comparable, CaseIterable, Sendable, CustomStringConvertible {
    case info, low, medium, high, critical

    package init?(name: String) {
        guard let match = Severity.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = match
    }

    package var description: String {
        switch self {
        case .info: "info"
        case .low: "low"
        case .medium: "medium"
        case .high: "high"
        case .critical: "critical"
        }
    }

    /// SARIF's `level`: code scanning shows errors and warnings as alerts, notes as hints.
    package var sarifLevel: String {
        switch self {
        case .info, .low: "note"
        case .medium: "warning"
        case .high, .critical: "error"
        }
    }

    /// GitHub code scanning's `security-severity` property (0.1-10, CVSS-like bands).
    package var securitySeverity: String {
        switch self {
        case .info: "0.1"
        case .low: "3.0"
        case .medium: "5.5"
        case .high: "8.0"
        case .critical: "9.5"
        }
    }

    package static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One thing worth telling an operator about a service or a configuration.
package struct Finding: Sendable, Equatable {
    package var rule: Rule
    package var severity: Severity
    /// What it is about: `host:port/tcp`, `host:port/udp`, or a configuration file / "command line".
    package var subject: String
    /// The specific observation, with the evidence (a version, a factor, a mode).
    package var message: String
    /// Measured values, for JSON and SARIF consumers (sorted by name when written).
    package var evidence: [String: String]

    package init(rule: Rule, severity: Severity, subject: String, message: String, evidence: [String: String] = [:]) {
        self.rule = rule
        self.severity = severity
        self.subject = subject
        self.message = message
        self.evidence = evidence
    }

    /// Most severe first, then by subject and rule, so reports read the same from run to run.
    package static func ordered(_ findings: [Finding]) -> [Finding] {
        findings.sorted {
            if $0.severity != $1.severity { return $0.severity > $1.severity }
            if $0.subject != $1.subject { return $0.subject < $1.subject }
            return $0.rule.id < $1.rule.id
        }
    }
}
