import Testing

@testable import MoatMetrics

@Suite struct StatsExporterTests {
    /// The sample lines of `text` whose metric name is `name` (labels included), as a dictionary.
    func samples(_ text: String, _ name: String) -> [String: Double] {
        var found: [String: Double] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == name || parts[0].hasPrefix(name + "{") else { continue }
            found[String(parts[0])] = Double(parts[1])
        }
        return found
    }

    @Test func statsBecomeMemcachedExporterMetrics() {
        let exporter = StatsExporter()
        let text = exporter.scrape(
            stats: [
                ("curr_items", 3), ("get_hits", 5), ("get_misses", 2), ("cmd_set", 4), ("evictions", 1),
                ("rusage_user", 0.25), ("security_key_dump_attempts", 2), ("udp_datagrams", 7), ("not_a_metric", 1),
            ], version: "1.6.21")
        #expect(samples(text, "memcached_up") == ["memcached_up": 1])
        #expect(samples(text, "memcached_version") == [#"memcached_version{version="1.6.21"}"#: 1])
        #expect(samples(text, "memcached_current_items") == ["memcached_current_items": 3])
        #expect(
            samples(text, "memcached_commands_total")[#"memcached_commands_total{command="get",status="hit"}"#] == 5)
        #expect(
            samples(text, "memcached_commands_total")[#"memcached_commands_total{command="get",status="miss"}"#] == 2)
        #expect(samples(text, "memcached_items_evicted_total") == ["memcached_items_evicted_total": 1])
        #expect(
            samples(text, "memcached_process_user_cpu_seconds_total") == [
                "memcached_process_user_cpu_seconds_total": 0.25
            ])
        #expect(
            samples(text, "moat_security_events_total") == [
                #"moat_security_events_total{event="key_dump_attempts"}"#: 2
            ])
        #expect(samples(text, "moat_udp_datagrams_total") == ["moat_udp_datagrams_total": 7])
        #expect(text.contains("# TYPE memcached_commands_total counter"))
        #expect(text.contains("# TYPE memcached_current_items gauge"))
        #expect(!text.contains("not_a_metric"))
    }

    @Test func countersFollowTheTotalsAcrossScrapes() {
        let exporter = StatsExporter()
        _ = exporter.scrape(stats: [("get_hits", 5), ("curr_items", 3)])
        var text = exporter.scrape(stats: [("get_hits", 9), ("curr_items", 1)])
        #expect(
            samples(text, "memcached_commands_total")[#"memcached_commands_total{command="get",status="hit"}"#] == 9)
        #expect(samples(text, "memcached_current_items") == ["memcached_current_items": 1])
        // A total that went down (counters reset with `stats reset`) starts over rather than going negative.
        text = exporter.scrape(stats: [("get_hits", 2)])
        #expect(
            samples(text, "memcached_commands_total")[#"memcached_commands_total{command="get",status="hit"}"#] == 2)
    }

    @Test func bucketsGetALabel() {
        let exporter = StatsExporter()
        let text = exporter.scrape(
            stats: [], buckets: [("shop", "curr_items", 4), ("blog", "get_hits", 6), ("x", "no_such_field", 1)])
        #expect(samples(text, "moat_bucket_current_items") == [#"moat_bucket_current_items{bucket="shop"}"#: 4])
        #expect(samples(text, "moat_bucket_get_total") == [#"moat_bucket_get_total{bucket="blog",status="hit"}"#: 6])
    }
}
