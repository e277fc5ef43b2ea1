/// SARIF 2.1.0, for CI code scanning. Audit results point at the endpoint (a logical location: a
/// network service is not a file); check results point at the configuration file when there is one.
struct SARIFLog: Encodable {
    struct Message: Encodable { var text: String }
    struct Configuration: Encodable { var level: String }
    struct RuleProperties: Encodable {
        var tags: [String]
        var securitySeverity: String
        enum CodingKeys: String, CodingKey {
            case tags
            case securitySeverity = "security-severity"
        }
    }
    struct ReportingDescriptor: Encodable {
        var id: String
        var name: String
        var shortDescription: Message
        var fullDescription: Message
        var help: Message
        var defaultConfiguration: Configuration
        var properties: RuleProperties
    }
    struct Driver: Encodable {
        var name = "moat"
        var version: String
        var informationUri: String?
        var rules: [ReportingDescriptor]
    }
    struct Tool: Encodable { var driver: Driver }
    struct ArtifactLocation: Encodable { var uri: String }
    struct PhysicalLocation: Encodable { var artifactLocation: ArtifactLocation }
    struct LogicalLocation: Encodable {
        var name: String
        var fullyQualifiedName: String
        var kind: String
    }
    struct Location: Encodable {
        var physicalLocation: PhysicalLocation?
        var logicalLocations: [LogicalLocation]?
    }
    struct ResultProperties: Encodable {
        var severity: String
        var subject: String
        var evidence: [String: String]
    }
    struct Result: Encodable {
        var ruleId: String
        var ruleIndex: Int
        var level: String
        var message: Message
        var locations: [Location]
        var partialFingerprints: [String: String]
        var properties: ResultProperties
    }
    struct Invocation: Encodable {
        var executionSuccessful: Bool
        var arguments: [String]
    }
    struct Run: Encodable {
        var tool: Tool
        var invocations: [Invocation]
        var results: [Result]
    }

    var schema = "https://json.schemastore.org/sarif-2.1.0.json"
    var version = "2.1.0"
    var runs: [Run]
    enum CodingKeys: String, CodingKey {
        case schema = "$schema"
        case version, runs
    }
}

extension Report {
    func sarifText() -> String {
        let rules = self.rules
        let descriptors = rules.map { rule in
            SARIFLog.ReportingDescriptor(
                id: rule.id, name: rule.name, shortDescription: .init(text: rule.summary),
                fullDescription: .init(text: rule.summary),
                help: .init(text: rule.remedy), defaultConfiguration: .init(level: rule.ceiling.sarifLevel),
                properties: .init(tags: ["security", "memcached"], securitySeverity: rule.ceiling.securitySeverity))
        }
        let results = findings.map { finding in
            let location: SARIFLog.Location
            if command == .check, let file = configurationFile {
                location = .init(physicalLocation: .init(artifactLocation: .init(uri: file)), logicalLocations: nil)
            } else {
                location = .init(
                    physicalLocation: nil,
                    logicalLocations: [
                        .init(name: finding.subject, fullyQualifiedName: finding.subject, kind: "resource")
                    ])
            }
            return SARIFLog.Result(
                ruleId: finding.rule.id, ruleIndex: rules.firstIndex(of: finding.rule) ?? -1,
                level: finding.severity.sarifLevel,
                message: .init(text: "\(finding.subject): \(finding.message)"), locations: [location],
                partialFingerprints: ["moatFinding/v1": "\(finding.rule.id):\(finding.subject)"],
                properties: .init(
                    severity: finding.severity.description, subject: finding.subject, evidence: finding.evidence))
        }
        let log = SARIFLog(runs: [
            .init(
                tool: .init(driver: .init(version: toolVersion, informationUri: nil, rules: descriptors)),
                invocations: [.init(executionSuccessful: true, arguments: inputs)], results: results)
        ])
        return Report.encode(log)
    }
}
