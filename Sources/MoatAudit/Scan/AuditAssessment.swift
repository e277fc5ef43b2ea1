/// Findings from one endpoint's observation. Severity follows who can reach the address: an open
/// cache on loopback is how Moat ships, the same cache on the Internet is an incident.
package enum AuditAssessment {
    package static func findings(for observation: ServiceObservation) -> [Finding] {
        guard observation.isMemcached else { return [] }
        let reach = AddressClass(address: observation.endpoint.host)
        let subject = "\(observation.endpoint)/tcp"
        var findings: [Finding] = []
        func graded(_ public: Severity, _ private: Severity, _ loopback: Severity) -> Severity {
            switch reach {
            case .public: `public`
            case .private: `private`
            case .loopback: loopback
            }
        }
        let version = observation.version.map { "memcached \($0)" } ?? "version unknown"

        var openProtocols: [String] = []
        if observation.text == .open { openProtocols.append("text") }
        if observation.binary == .open { openProtocols.append("binary") }
        if observation.tlsText == .open { openProtocols.append("text over TLS") }
        if !openProtocols.isEmpty {
            let where_ = reach == .loopback ? " (loopback: only processes on this host reach it)" : ""
            var evidence = ["protocols": openProtocols.joined(separator: ","), "address_class": reach.rawValue]
            if let v = observation.version { evidence["version"] = v }
            evidence["stats_readable"] = observation.statsReadable ? "yes" : "no"
            findings.append(
                Finding(
                    rule: AuditRules.unauthenticatedAccess, severity: graded(.critical, .high, .info), subject: subject,
                    message:
                        """
                        answers without authentication on the \(openProtocols.joined(separator: " and ")) \
                        protocol\(openProtocols.count > 1 ? "s" : "") (\(version))
                        """
                            + (observation.statsReadable ? "; stats are readable" : "") + where_,
                    evidence: evidence))
        }
        if !observation.enumeration.isEmpty {
            let listed = observation.enumeration.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            findings.append(
                Finding(
                    rule: AuditRules.keyEnumeration, severity: graded(.critical, .high, .medium), subject: subject,
                    message: "keys can be listed without authentication (\(listed.joined(separator: "; ")))",
                    evidence: observation.enumeration))
        }
        if observation.writable == true {
            findings.append(
                Finding(
                    rule: AuditRules.unauthenticatedWrite, severity: graded(.critical, .high, .low), subject: subject,
                    message: "an unauthenticated client stored and deleted a probe key",
                    evidence: ["address_class": reach.rawValue]))
        }
        if !observation.udp.isEmpty {
            let factor = observation.udpFactor
            let exchanges = observation.udp.map {
                """
                \($0.command): \($0.requestBytes) bytes in, \($0.replyBytes) out in \($0.datagrams) \
                datagram\($0.datagrams == 1 ? "" : "s") (\(format($0.factor))x)
                """
            }
            var evidence = ["amplification": format(factor)]
            for exchange in observation.udp {
                evidence["udp_\(exchange.command)_request_bytes"] = "\(exchange.requestBytes)"
                evidence["udp_\(exchange.command)_reply_bytes"] = "\(exchange.replyBytes)"
            }
            let udpSubject =
                "\(Endpoint(host: observation.endpoint.host, port: observation.udpPort ?? observation.endpoint.port))/udp"
            findings.append(
                Finding(
                    rule: AuditRules.udpAmplification,
                    severity: factor > 1 ? graded(.critical, .high, .medium) : graded(.medium, .low, .low),
                    subject: udpSubject,
                    message:
                        """
                        UDP answers with up to \(format(factor))x the request's bytes \
                        (\(exchanges.joined(separator: "; ")))
                        """,
                    evidence: evidence))
        }
        if reach == .public && (observation.tcpOpen || !observation.udp.isEmpty) {
            findings.append(
                Finding(
                    rule: AuditRules.publicAddress, severity: openProtocols.isEmpty ? .medium : .high, subject: subject,
                    message: "listens on a public address (\(observation.endpoint.host))",
                    evidence: ["address_class": reach.rawValue]))
        }
        let authText = observation.text == .authenticationRequired || observation.tlsText == .authenticationRequired
        let authBinary = observation.binary == .authenticationRequired
        if authText || authBinary {
            var parts: [String] = []
            if authBinary {
                parts.append(
                    "SASL on the binary protocol"
                        + (observation.saslMechanisms.isEmpty
                            ? "" : " (\(observation.saslMechanisms.joined(separator: " ")))"))
            }
            if authText { parts.append("ASCII auth on the text protocol") }
            var evidence: [String: String] = [
                "sasl": authBinary ? "required" : "no", "ascii_auth": authText ? "required" : "no",
            ]
            if !observation.saslMechanisms.isEmpty {
                evidence["sasl_mechanisms"] = observation.saslMechanisms.joined(separator: " ")
            }
            findings.append(
                Finding(
                    rule: AuditRules.authenticationRequired, severity: .info, subject: subject,
                    message: "authentication required: " + parts.joined(separator: "; "), evidence: evidence))
            if !observation.tlsOffered && observation.tls != .notProbed {
                let plain = observation.saslMechanisms.contains("PLAIN") || authText
                findings.append(
                    Finding(
                        rule: AuditRules.plaintextCredentials, severity: graded(.medium, .low, .info), subject: subject,
                        message: "authentication without TLS"
                            + (plain ? ": PLAIN or ASCII auth passwords cross the network readable" : ""),
                        evidence: ["tls": "not offered"]))
            }
        }
        if case .offered(let certificateRequired) = observation.tls {
            var message =
                observation.tlsRequired
                ? "TLS required (plaintext is not answered)" : "TLS offered; plaintext is answered too"
            if certificateRequired { message += "; a client certificate is required" }
            if observation.tlsText == .open { message += "; memcached answers over TLS without authentication" }
            findings.append(
                Finding(
                    rule: AuditRules.tls, severity: .info, subject: subject, message: message,
                    evidence: [
                        "tls": observation.tlsRequired ? "required" : "offered",
                        "client_certificate": certificateRequired ? "required" : "not required",
                    ]))
        }
        return findings
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
