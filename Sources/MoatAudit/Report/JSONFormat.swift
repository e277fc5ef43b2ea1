/// The JSON report; docs/schemas/moat-report.schema.json describes it and the tests validate against it.
struct JSONReport: Encodable {
    struct Tool: Encodable {
        var name = "moat"
        var command: String
        var version: String
    }
    struct Summary: Encodable {
        var endpoints: Int?
        var services: Int?
        var findings: Int
        var bySeverity: [String: Int]
        var failOn: String
        var failed: Bool
        enum CodingKeys: String, CodingKey {
            case endpoints, services, findings
            case bySeverity = "by_severity"
            case failOn = "fail_on"
            case failed
        }
    }
    struct UDPExchange: Encodable {
        var command: String
        var requestBytes: Int
        var replyBytes: Int
        var datagrams: Int
        var factor: Double
        enum CodingKeys: String, CodingKey {
            case command
            case requestBytes = "request_bytes"
            case replyBytes = "reply_bytes"
            case datagrams, factor
        }
    }
    struct Service: Encodable {
        var endpoint: String
        var host: String
        var port: Int
        var addressClass: String
        var version: String?
        var text: String
        var binary: String
        var saslMechanisms: [String]
        var statsReadable: Bool
        var keyEnumeration: [String: String]
        var writable: Bool?
        var tls: String
        var udp: [UDPExchange]?
        enum CodingKeys: String, CodingKey {
            case endpoint, host, port
            case addressClass = "address_class"
            case version, text, binary
            case saslMechanisms = "sasl_mechanisms"
            case
                statsReadable = "stats_readable"
            case keyEnumeration = "key_enumeration"
            case writable, tls, udp
        }
        // Nil fields are written as null, so every service object has the same keys.
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(endpoint, forKey: .endpoint)
            try container.encode(host, forKey: .host)
            try container.encode(port, forKey: .port)
            try container.encode(addressClass, forKey: .addressClass)
            try container.encode(version, forKey: .version)
            try container.encode(text, forKey: .text)
            try container.encode(binary, forKey: .binary)
            try container.encode(saslMechanisms, forKey: .saslMechanisms)
            try container.encode(statsReadable, forKey: .statsReadable)
            try container.encode(keyEnumeration, forKey: .keyEnumeration)
            try container.encode(writable, forKey: .writable)
            try container.encode(tls, forKey: .tls)
            try container.encode(udp, forKey: .udp)
        }
    }
    struct FindingEntry: Encodable {
        var rule: String
        var name: String
        var severity: String
        var subject: String
        var message: String
        var remedy: String
        var evidence: [String: String]
    }

    var schemaVersion = 1
    var tool: Tool
    var generated: String
    var inputs: [String]
    var services: [Service]?
    var findings: [FindingEntry]
    var summary: Summary
    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case tool, generated, inputs, services, findings, summary
    }
}

extension Report {
    func jsonText() -> String {
        let bySeverity = Dictionary(uniqueKeysWithValues: Severity.allCases.map { ($0.description, count($0)) })
        let services =
            command == .audit
            ? self.services.map { service in
                JSONReport.Service(
                    endpoint: service.endpoint.description, host: service.endpoint.host, port: service.endpoint.port,
                    addressClass: AddressClass(address: service.endpoint.host).rawValue, version: service.version,
                    text: service.text.rawValue, binary: service.binary.rawValue,
                    saslMechanisms: service.saslMechanisms,
                    statsReadable: service.statsReadable, keyEnumeration: service.enumeration,
                    writable: service.writable,
                    tls: Report.tlsName(service),
                    udp: service.udpProbed
                        ? service.udp.map {
                            JSONReport.UDPExchange(
                                command: $0.command, requestBytes: $0.requestBytes, replyBytes: $0.replyBytes,
                                datagrams: $0.datagrams,
                                factor: ($0.factor * 100).rounded() / 100)
                        } : nil)
            } : nil
        let report = JSONReport(
            tool: .init(command: command.rawValue, version: toolVersion),
            generated: generated.formatted(.iso8601), inputs: inputs, services: services,
            findings: findings.map {
                JSONReport.FindingEntry(
                    rule: $0.rule.id, name: $0.rule.name, severity: $0.severity.description, subject: $0.subject,
                    message: $0.message,
                    remedy: $0.rule.remedy, evidence: $0.evidence)
            },
            summary: .init(
                endpoints: endpointsScanned, services: command == .audit ? self.services.count : nil,
                findings: findings.count,
                bySeverity: bySeverity, failOn: failOn.description, failed: failed))
        return Report.encode(report)
    }
}
