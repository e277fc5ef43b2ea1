import Testing

@testable import MoatAudit

/// `moat top`'s arithmetic and layout, without a server.
@Suite struct TopViewTests {
    let before: [String: String] = [
        "version": "1.6.21-moat-0.1.0", "cmd_get": "1000", "cmd_set": "100", "get_hits": "900", "get_misses": "100",
        "delete_hits": "5", "delete_misses": "5", "evictions": "0", "bytes": "1048576",
        "limit_maxbytes": "67108864", "curr_connections": "3", "security_auth_failures": "0",
        "security_connections_refused": "10", "security_lockouts": "0", "security_permission_denials": "0",
        "security_key_dump_attempts": "0", "security_canary_reads": "0",
    ]

    func after(_ changes: [String: String]) -> [String: String] { before.merging(changes) { $1 } }

    @Test func ratesAreOverTheIntervalAndTheHitRatioIsTheIntervals() throws {
        let figures = TopFigures(
            server: "127.0.0.1:11211", before: before,
            after: after([
                "cmd_get": "1200", "cmd_set": "150", "get_hits": "950", "get_misses": "250", "delete_hits": "9",
                "evictions": "20", "security_auth_failures": "4", "curr_connections": "7",
            ]), seconds: 2)
        #expect(figures.rates == [100, 25, 2, 0, 0, 0])
        #expect(try #require(figures.hitRatio) == 0.25)  // 50 hits of 200 gets in the interval
        #expect(figures.evictionsPerSecond == 10)
        #expect(figures.connections == 7)
        #expect(figures.security == [0, 2, 0, 0, 0, 0])
        #expect(figures.totalRate == 127)
    }

    @Test func aFirstReadingHasNoRatesAndTheLifetimeHitRatio() {
        let figures = TopFigures(server: "s", before: nil, after: before, seconds: 0)
        #expect(figures.rates.allSatisfy { $0 == 0 })
        #expect(figures.hitRatio == 0.9)
    }

    @Test func memcachedHasNoSecurityLineAndACounterResetIsNoNegativeRate() {
        var plain = before.filter { !$0.key.hasPrefix("security_") }
        plain["cmd_get"] = "5000"
        let figures = TopFigures(server: "m", before: plain, after: plain.merging(["cmd_get": "10"]) { $1 }, seconds: 1)
        #expect(figures.security == nil)
        #expect(figures.rates[0] == 0)
        let lines = TopView.render([.figures(figures)], colour: false)
        #expect(lines.count == 2)
        #expect(!lines.joined().contains("security"))
    }

    @Test func busiestFirstFailuresAfterSecurityLastAndColourOnlyWhenAsked() {
        let quiet = TopFigures(server: "10.0.0.2:11211", before: before, after: before, seconds: 1)
        let busy = TopFigures(
            server: "10.0.0.1:11211", before: before,
            after: after(["cmd_get": "3000", "get_hits": "1000", "get_misses": "2000", "security_lockouts": "1"]),
            seconds: 1)
        let rows: [TopView.Row] = [
            .figures(quiet), .failed(server: "10.0.0.3:11211", why: "no answer"), .figures(busy),
        ]
        let lines = TopView.render(rows, colour: false)
        #expect(lines[0].hasPrefix("server"))
        #expect(lines[1].hasPrefix("10.0.0.1:11211") && lines[1].contains("2000"))
        #expect(lines[2].hasPrefix("10.0.0.2:11211"))
        #expect(lines[3] == "10.0.0.3:11211  unreachable: no answer")
        #expect(lines[4].hasPrefix("security"))
        #expect(lines[5].hasPrefix("10.0.0.1:11211") && lines[5].contains("1.0"))
        #expect(lines.allSatisfy { !$0.contains("\u{1B}[") })
        let coloured = TopView.render(rows, colour: true)
        // The busy server's hit ratio (5%) and its lockout are red.
        #expect(coloured[1].contains("\u{1B}[31m   5.0\u{1B}[0m"))
        #expect(coloured[5].contains("\u{1B}[31m"))
    }
}
