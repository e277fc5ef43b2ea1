extension Report {
    /// For people: services first (audit), then findings most severe first, each with its remedy.
    /// Every string that came from a server, the command line or a file is `printable`: a version
    /// such as `1.6\u{1B}]0;...` must not drive the terminal that shows the report.
    func tableText(color: Bool) -> String {
        let show = Report.printable
        func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
        }
        func shade(_ severity: Severity) -> String {
            switch severity {
            case .critical: "1;31"
            case .high: "31"
            case .medium: "33"
            case .low: "36"
            case .info: "2"
            }
        }
        var lines: [String] = []
        if command == .audit {
            let count = services.count
            lines.append(
                """
                moat audit: \(endpointsScanned ?? 0) endpoint\(endpointsScanned == 1 ? "" : "s") probed, \(count) \
                memcached-protocol service\(count == 1 ? "" : "s")
                """
            )
            if !services.isEmpty {
                lines.append("")
                let width = max(24, (services.map { show($0.endpoint.description).count }.max() ?? 0) + 2)
                lines.append(
                    paint(
                        pad("ENDPOINT", width) + pad("VERSION", 20) + pad("TEXT", 24) + pad("BINARY", 24)
                            + pad("TLS", 13) + "UDP", "1"))
                for service in services {
                    let udp =
                        service.udpProbed
                        ? (service.udp.isEmpty ? "silent" : "\(AuditAssessment.format(service.udpFactor))x") : "-"
                    lines.append(
                        pad(show(service.endpoint.description), width) + pad(show(service.version ?? "-"), 20)
                            + pad(service.text.rawValue, 24)
                            + pad(service.binary.rawValue, 24) + pad(Report.tlsName(service), 13) + udp)
                }
            }
        } else {
            lines.append("moat check: \(show(inputs.joined(separator: " ")))")
        }
        lines.append("")
        if findings.isEmpty {
            lines.append("no findings")
        } else {
            let width = max(22, (findings.map { show($0.subject).count }.max() ?? 0) + 2)
            lines.append(paint(pad("SEVERITY", 10) + pad("SUBJECT", width) + "FINDING", "1"))
            for finding in findings {
                lines.append(
                    paint(pad(finding.severity.description, 10), shade(finding.severity))
                        + pad(show(finding.subject), width)
                        + "\(finding.rule.name) (\(finding.rule.id)): \(show(finding.message))")
                if finding.severity > .info {
                    lines.append(String(repeating: " ", count: 10 + width) + paint("fix: " + finding.rule.remedy, "2"))
                }
            }
        }
        lines.append("")
        let counts = Severity.allCases.reversed().map { "\(count($0)) \($0)" }.joined(separator: ", ")
        lines.append(
            "\(findings.count) finding\(findings.count == 1 ? "" : "s") (\(counts)); fail on \(failOn): "
                + (failed ? paint("FAILED", "1;31") : "passed"))
        return lines.joined(separator: "\n") + "\n"
    }
}
