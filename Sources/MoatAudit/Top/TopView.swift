/// What `moat top` shows for one server, from two `stats` readings: rates over the interval between
/// them, gauges from the second. Pure, so that its arithmetic and layout are tested alone.
package struct TopFigures: Equatable, Sendable {
    package var server: String
    package var version: String
    /// Hits per get over the interval (nil: no gets in it).
    package var hitRatio: Double?
    /// Operations per second by command, in `TopFigures.commands` order.
    package var rates: [Double]
    package var bytes: Double
    package var limit: Double
    package var evictionsPerSecond: Double
    package var connections: Double
    /// Moat's security counters per second, in `TopFigures.securityEvents` order; nil for a server that
    /// has none (memcached).
    package var security: [Double]?

    package static let commands: [(label: String, stats: [String])] = [
        ("get", ["cmd_get"]), ("set", ["cmd_set"]), ("delete", ["delete_hits", "delete_misses"]),
        ("incr", ["incr_hits", "incr_misses", "decr_hits", "decr_misses"]), ("touch", ["cmd_touch"]),
        ("cas", ["cas_hits", "cas_misses", "cas_badval"]),
    ]
    package static let securityEvents: [(label: String, stat: String)] = [
        ("refused", "security_connections_refused"), ("authfail", "security_auth_failures"),
        ("lockout", "security_lockouts"), ("denied", "security_permission_denials"),
        ("keydump", "security_key_dump_attempts"), ("canary", "security_canary_reads"),
    ]

    package var totalRate: Double { rates.reduce(0, +) }

    /// From two readings `seconds` apart (the first nil: rates are 0 and the hit ratio is the lifetime one).
    package init(
        server: String, before: [String: String]?, after: [String: String], seconds: Double
    ) {
        func number(_ stats: [String: String]?, _ name: String) -> Double {
            stats?[name].flatMap(Double.init) ?? 0
        }
        func rate(_ names: [String]) -> Double {
            guard let before, seconds > 0 else { return 0 }
            let delta = names.reduce(0.0) { $0 + max(0, number(after, $1) - number(before, $1)) }
            return delta / seconds
        }
        self.server = server
        version = after["version"] ?? "?"
        let hits = number(after, "get_hits") - number(before, "get_hits")
        let misses = number(after, "get_misses") - number(before, "get_misses")
        hitRatio = hits + misses > 0 ? max(0, hits) / (max(0, hits) + max(0, misses)) : nil
        rates = Self.commands.map { rate($0.stats) }
        bytes = number(after, "bytes")
        limit = number(after, "limit_maxbytes")
        evictionsPerSecond = rate(["evictions"])
        connections = number(after, "curr_connections")
        security = after["security_auth_failures"] == nil ? nil : Self.securityEvents.map { rate([$0.stat]) }
    }
}

/// The table `moat top` prints: one row per server (busiest first), one per server that could not be
/// read, then a line of security events per second for the servers that count them. Colour (ANSI) only
/// on a terminal: a falling hit ratio, memory near the limit with evictions, and any security event
/// stand out.
package enum TopView {
    package enum Row: Sendable {
        case figures(TopFigures)
        case failed(server: String, why: String)
    }

    package static func render(_ rows: [Row], colour: Bool) -> [String] {
        func paint(_ text: String, _ code: String, when condition: Bool) -> String {
            colour && condition ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
        }
        func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
            let padding = String(repeating: " ", count: max(0, width - text.count))
            return left ? text + padding : padding + text
        }
        func fixed(_ value: Double, _ digits: Int) -> String {
            let scale = digits == 0 ? 1 : digits == 1 ? 10 : 100
            let scaled = Int((max(0, value) * Double(scale)).rounded())
            guard digits > 0 else { return "\(scaled)" }
            let fraction = "\(scaled % scale)"
            return "\(scaled / scale)." + String(repeating: "0", count: digits - fraction.count) + fraction
        }
        func size(_ bytes: Double) -> String {
            let gib = Double(1 << 30)
            return bytes >= gib ? fixed(bytes / gib, 1) + "G" : fixed(bytes / Double(1 << 20), 1) + "M"
        }
        let figures: [TopFigures] = rows.compactMap {
            if case .figures(let f) = $0 { return f } else { return nil }
        }.sorted { $0.totalRate != $1.totalRate ? $0.totalRate > $1.totalRate : $0.server < $1.server }
        let failed: [(String, String)] = rows.compactMap {
            if case .failed(let server, let why) = $0 { return (server, why) } else { return nil }
        }.sorted { $0.0 < $1.0 }
        let width = max(6, (figures.map(\.server) + failed.map(\.0)).map(\.count).max() ?? 6)
        var lines: [String] = []
        var header = pad("server", width, left: true) + "  " + pad("hit%", 6)
        for command in TopFigures.commands { header += " " + pad(command.label + "/s", 9) }
        header += " " + pad("memory", 15) + " " + pad("evict/s", 8) + " " + pad("conns", 6)
        lines.append(paint(header, "1", when: true))
        for server in figures {
            var line = pad(server.server, width, left: true) + "  "
            let ratio = server.hitRatio.map { fixed($0 * 100, 1) } ?? "-"
            line += paint(pad(ratio, 6), "31", when: (server.hitRatio ?? 1) < 0.5)
            for rate in server.rates { line += " " + pad(fixed(rate, 0), 9) }
            let full = server.limit > 0 && server.bytes / server.limit > 0.9
            line += " " + paint(pad(size(server.bytes) + "/" + size(server.limit), 15), "33", when: full)
            line += " " + paint(pad(fixed(server.evictionsPerSecond, 0), 8), "33", when: server.evictionsPerSecond > 0)
            line += " " + pad(fixed(server.connections, 0), 6)
            lines.append(line)
        }
        for (server, why) in failed {
            lines.append(pad(server, width, left: true) + "  " + paint("unreachable: \(why)", "31", when: true))
        }
        let watched = figures.filter { $0.security != nil }
        if !watched.isEmpty {
            var title = pad("security", width, left: true) + "  "
            for event in TopFigures.securityEvents { title += " " + pad(event.label + "/s", 10) }
            lines.append(paint(title, "1", when: true))
            for server in watched {
                var line = pad(server.server, width, left: true) + "  "
                for value in server.security ?? [] {
                    line += " " + paint(pad(fixed(value, 1), 10), "31", when: value > 0)
                }
                lines.append(line)
            }
        }
        return lines
    }
}
