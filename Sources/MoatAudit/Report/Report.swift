import Foundation

/// What one `moat audit` or `moat check` run found, ready for any output format.
public struct Report: Sendable {
    public enum Command: String, Sendable { case audit, check }

    public var command: Command
    public var toolVersion: String
    public var generated: Date
    /// The targets as given (audit) or the configuration sources (check).
    public var inputs: [String]
    /// Endpoints probed (audit only).
    public var endpointsScanned: Int?
    /// Endpoints where a memcached-protocol service answered (audit only).
    public var services: [ServiceObservation]
    public var findings: [Finding]
    public var failOn: Severity
    /// For check: the configuration file, as a SARIF artifact location.
    public var configurationFile: String?

    public init(
        command: Command, toolVersion: String, generated: Date = Date(), inputs: [String], endpointsScanned: Int? = nil,
        services: [ServiceObservation] = [], findings: [Finding], failOn: Severity, configurationFile: String? = nil
    ) {
        self.command = command
        self.toolVersion = toolVersion
        self.generated = generated
        self.inputs = inputs
        self.endpointsScanned = endpointsScanned
        self.services = services
        self.findings = Finding.ordered(findings)
        self.failOn = failOn
        self.configurationFile = configurationFile
    }

    /// True when a finding reaches `--fail-on`: the exit status is then non-zero.
    public var failed: Bool { findings.contains { $0.severity >= failOn } }

    public var rules: [Rule] { command == .audit ? AuditRules.all : CheckRules.all }

    func count(_ severity: Severity) -> Int { findings.filter { $0.severity == severity }.count }

    static func tlsName(_ observation: ServiceObservation) -> String {
        switch observation.tls {
        case .notProbed: "not-probed"
        case .notOffered: "not-offered"
        case .offered: observation.tlsRequired ? "required" : "offered"
        }
    }
}

public enum ReportFormat: String, Sendable, CaseIterable {
    case table, json, sarif
}

extension Report {
    public func render(_ format: ReportFormat, color: Bool = false) -> String {
        switch format {
        case .table: tableText(color: color)
        case .json: jsonText()
        case .sarif: sarifText()
        }
    }

    static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return jsonPrintable(String(decoding: data, as: UTF8.self)) + "\n"
    }
}
