import MoatStorage
import Testing

@testable import MoatEngine

@Suite struct StatsTests {
    func engine(udp: Bool = false) -> Engine {
        let cache = Cache(
            configuration: CacheConfiguration(memoryLimit: 8 << 20, maxItemSize: 1 << 20, evictionsEnabled: true))
        var settings = EngineSettings()
        settings.udpEnabled = udp
        return Engine(cache: cache, settings: settings)
    }

    @Test func valuesPrintAsMemcachedAndReadAsNumbers() {
        #expect(StatValue.count(42).text == "42" && StatValue.count(42).number == 42)
        #expect(StatValue.seconds(3, microseconds: 250_000).text == "3.250000")
        #expect(StatValue.seconds(0, microseconds: 5).text == "0.000005")
        #expect(StatValue.seconds(0, microseconds: 5).number == 0.000005)
        #expect(StatValue.text("1.6.21").text == "1.6.21" && StatValue.text("1.6.21").number == nil)
        #expect(Stat("bytes", -1).value == .count(0))  // a gauge never prints negative
    }

    @Test func generalStatsInMemcachedsOrderAndTenantsSeeLess() {
        let snapshot = engine(udp: true).statsSnapshot()
        let names = snapshot.general().map(\.name)
        #expect(
            Array(names.prefix(8)) == [
                "pid", "uptime", "time", "version", "pointer_size", "rusage_user", "rusage_system", "max_connections",
            ])
        #expect(names.contains("security_canary_reads") && names.contains("udp_datagrams"))
        #expect(Set(names).count == names.count)
        let tenant = snapshot.general(serverWide: false).map(\.name)
        for hidden in [
            "rusage_user", "curr_connections", "auth_cmds", "auth_lockouts", "acl_denied", "ssl_handshake_errors",
        ] {
            #expect(names.contains(hidden) && !tenant.contains(hidden))
        }
        #expect(!tenant.contains { $0.hasPrefix("security_") || $0.hasPrefix("udp_") })
        #expect(tenant.contains("get_hits") && tenant.contains("limit_maxbytes"))
        #expect(!engine().statsSnapshot().general().contains { $0.name.hasPrefix("udp_") })  // no -U
    }

    /// The text protocol's `stats` and the snapshot are one rendering: the same names and figures.
    @Test func textStatsAreTheSnapshotsLines() {
        let engine = engine()
        var session = engine.makeSession()
        _ = drive(&session, Array("set k 0 0 1\r\nv\r\nget k\r\nget nope\r\n".utf8))
        let reply = String(decoding: drive(&session, Array("stats\r\n".utf8)).replies, as: UTF8.self)
        var text: [String: String] = [:]
        for line in reply.split(separator: "\r\n") where line.hasPrefix("STAT ") {
            let parts = line.split(separator: " ", maxSplits: 2)
            text[String(parts[1])] = String(parts[2])
        }
        let snapshot = engine.statsSnapshot()
        #expect(text.count == snapshot.general().count)
        #expect(
            snapshot.commands.getHits == 1 && snapshot.commands.getMisses == 1 && snapshot.storage.currentItems == 1)
        for stat in snapshot.general() where !["uptime", "time", "rusage_user", "rusage_system"].contains(stat.name) {
            #expect(text[stat.name] == stat.value.text, "\(stat.name)")
        }
        #expect(StatsSnapshot.items(snapshot.storage).first == Stat("items:1:number", 1))
        let buckets = engine.bucketStats()
        #expect(buckets.count == 1)
        #expect(buckets[0].lines.contains(Stat("bucket:\(buckets[0].name):get_hits", 1)))
        #expect(buckets[0].fields.contains { $0.field == "get_misses" && $0.value == .count(1) })
    }
}
