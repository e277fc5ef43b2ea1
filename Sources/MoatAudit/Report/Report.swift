#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What one `moat audit` or `moat check` run found, ready for any output format.
package struct Report: Sendable {
    package enum Command: String, Sendable { case audit, check }

    package var command: Command
    package var toolVersion: String
    package var generated: Date
    /// The targets as given (audit) or the configuration sources (check).
    package var inputs: [String]
    /// Endpoints probed (audit only).
    package var endpointsScanned: Int?
    /// Endpoints where a memcached-protocol service answered (audit only).
    package var services: [ServiceObservation]
    package var findings: [Finding]
    package var failOn: Severity
    /// For check: the configuration file, as a SARIF artifact location.
    package var configurationFile: String?

    package init(
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
    package var failed: Bool { findings.contains { $0.severity >= failOn } }

    package var rules: [Rule] { command == .audit ? AuditRules.all : CheckRules.all }

    func count(_ severity: Severity) -> Int { findings.filter { $0.severity == severity }.count }

    static func tlsName(_ observation: ServiceObservation) -> String {
        switch observation.tls {
        case .notProbed: "not-probed"
        case .notOffered: "not-offered"
        case .offered: observation.tlsRequired ? "required" : "offered"
        }
    }
}

package enum ReportFormat: String, Sendable, CaseIterable {
    case table, json, sarif
}

extension Report {
    package func render(_ format: ReportFormat, color: Bool = false) -> String {
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
