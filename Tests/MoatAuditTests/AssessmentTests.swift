import Foundation
import Testing

@testable import MoatAudit

@Suite struct AssessmentTests {
    /// What memcached 1.6 with default flags and UDP on shows the probes.
    func openMemcached(_ host: String) -> ServiceObservation {
        var observation = ServiceObservation(endpoint: Endpoint(host: host, port: 11211))
        observation.tcpOpen = true
        observation.text = .open
        observation.binary = .open
        observation.version = "1.6.18"
        observation.statsReadable = true
        observation.enumeration = ["stats cachedump": "listed 1 keys", "lru_crawler metadump": "listed 1 keys"]
        observation.tls = .notOffered
        observation.udpProbed = true
        observation.udp = [.init(command: "stats", requestBytes: 15, replyBytes: 2_233, datagrams: 2)]
        return observation
    }

    func severities(_ findings: [Finding]) -> [String: Severity] {
        Dictionary(findings.map { ($0.rule.name, $0.severity) }, uniquingKeysWith: max)
    }

    @Test func theSameOpenCacheIsGradedByWhoCanReachIt() {
        let loopback = severities(AuditAssessment.findings(for: openMemcached("127.0.0.1")))
        #expect(
            loopback == ["unauthenticated-access": .info, "key-enumeration": .medium, "udp-amplification": .medium])
        let lan = severities(AuditAssessment.findings(for: openMemcached("10.0.0.5")))
        #expect(lan == ["unauthenticated-access": .high, "key-enumeration": .high, "udp-amplification": .high])
        let internet = severities(AuditAssessment.findings(for: openMemcached("203.0.114.9")))
        #expect(
            internet == [
                "unauthenticated-access": .critical, "key-enumeration": .critical, "udp-amplification": .critical,
                "public-address": .high,
            ])
    }

    @Test func theAmplificationFactorIsMeasuredBytesOverRequestBytes() throws {
        let findings = AuditAssessment.findings(for: openMemcached("127.0.0.1"))
        let udp = try #require(findings.first { $0.rule == AuditRules.udpAmplification })
        #expect(udp.evidence["amplification"] == "148.87")
        #expect(udp.subject == "127.0.0.1:11211/udp")
        var small = openMemcached("127.0.0.1")
        small.udp = [.init(command: "get", requestBytes: 41, replyBytes: 13, datagrams: 1)]
        #expect(severities(AuditAssessment.findings(for: small))["udp-amplification"] == .low)
    }

    @Test func moatsDefaultShowsNothingAboveInfo() {
        var observation = ServiceObservation(endpoint: Endpoint(host: "127.0.0.1", port: 11211))
        observation.tcpOpen = true
        observation.text = .open
        observation.binary = .open
        observation.statsReadable = true
        observation.tls = .notOffered
        let findings = AuditAssessment.findings(for: observation)
        #expect(findings.map(\.rule) == [AuditRules.unauthenticatedAccess])
        #expect(findings.allSatisfy { $0.severity == .info })
    }

    @Test func authenticationAndTLSAreReportedAsInformation() {
        var observation = ServiceObservation(endpoint: Endpoint(host: "10.0.0.7", port: 11211))
        observation.tcpOpen = true
        observation.binary = .authenticationRequired
        observation.saslMechanisms = ["SCRAM-SHA-256", "PLAIN"]
        observation.tls = .notOffered
        var found = severities(AuditAssessment.findings(for: observation))
        #expect(found == ["authentication-required": .info, "plaintext-transport": .low])

        observation.tls = .offered(clientCertificateRequired: true)
        observation.binary = .notServed
        observation.saslMechanisms = []
        found = severities(AuditAssessment.findings(for: observation))
        #expect(found == ["tls": .info])
        #expect(observation.tlsRequired)
    }

    @Test func somethingElseOnThePortIsNotAService() {
        var observation = ServiceObservation(endpoint: Endpoint(host: "127.0.0.1", port: 22))
        observation.tcpOpen = true
        observation.tls = .notOffered
        #expect(!observation.isMemcached)
        #expect(AuditAssessment.findings(for: observation).isEmpty)
    }

    @Test func reportsFailAtTheChosenLevelAndRenderEveryFormat() throws {
        let findings = AuditAssessment.findings(for: openMemcached("127.0.0.1"))
        let passing = Report(
            command: .audit, toolVersion: "t", inputs: ["127.0.0.1"], endpointsScanned: 1,
            services: [openMemcached("127.0.0.1")], findings: findings, failOn: .high)
        #expect(!passing.failed)
        let failing = Report(
            command: .audit, toolVersion: "t", inputs: ["127.0.0.1"], endpointsScanned: 1,
            services: [openMemcached("127.0.0.1")], findings: findings, failOn: .medium)
        #expect(failing.failed)
        #expect(failing.findings.first?.severity == .medium)  // most severe first
        #expect(failing.render(.table).contains("FAILED"))
        #expect(!failing.render(.table).contains("\u{1B}["))
        #expect(failing.render(.table, color: true).contains("\u{1B}["))

        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(failing.render(.json).utf8)) as? [String: Any])
        let summary = try #require(json["summary"] as? [String: Any])
        #expect(summary["failed"] as? Bool == true)
        #expect((json["findings"] as? [[String: Any]])?.count == findings.count)

        let sarif = try #require(
            try JSONSerialization.jsonObject(with: Data(failing.render(.sarif).utf8)) as? [String: Any])
        #expect(sarif["version"] as? String == "2.1.0")
        let run = try #require((sarif["runs"] as? [[String: Any]])?.first)
        let rules = try #require(
            ((run["tool"] as? [String: Any])?["driver"] as? [String: Any])?["rules"] as? [[String: Any]])
        let results = try #require(run["results"] as? [[String: Any]])
        #expect(results.count == findings.count)
        for result in results {
            let index = try #require(result["ruleIndex"] as? Int)
            #expect(rules[index]["id"] as? String == result["ruleId"] as? String)
        }
    }
}
