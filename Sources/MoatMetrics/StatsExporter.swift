import CoreMetrics
import Prometheus
import Synchronization

/// Moat's `stats` as Prometheus metrics, recorded through swift-metrics into a swift-prometheus
/// registry. The engine already counts everything (per-shard atomics, read by `stats`), so a scrape
/// reads those totals once and brings the metrics up to date: counters advance by what changed since
/// the last scrape, gauges are set. Names follow memcached_exporter's where it has one, so existing
/// dashboards and alerts work; Moat's own counters are `moat_*`.
package final class StatsExporter: @unchecked Sendable {
    /// Where a `stats` line goes: a counter or gauge, its name and labels.
    package struct Mapping: Sendable, Equatable {
        package enum Kind: Sendable, Equatable { case counter, floatingCounter, gauge }
        package var kind: Kind
        package var name: String
        package var labels: [String: String]

        package init(_ kind: Kind, _ name: String, _ labels: [String: String] = [:]) {
            self.kind = kind
            self.name = name
            self.labels = labels
        }
    }

    package let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    /// Held for a whole scrape: it guards the dictionaries below.
    private let lock = Mutex(())
    private var counters: [String: CoreMetrics.Counter] = [:]
    private var floatingCounters: [String: CoreMetrics.FloatingPointCounter] = [:]
    private var gauges: [String: CoreMetrics.Gauge] = [:]
    private var lastSeen: [String: Double] = [:]

    package init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// The text exposition format (version 0.0.4) for `stats` figures (by their `stats` names, as
    /// numbers), the server's version, and per-bucket figures (by their `stats buckets` field names).
    package func scrape(
        stats: [(name: String, value: Double)], version: String? = nil,
        buckets: [(bucket: String, field: String, value: Double)] = []
    ) -> String {
        lock.withLock { _ in
            record(name: "memcached_up", kind: .gauge, labels: [:], value: 1)
            if let version {
                record(name: "memcached_version", kind: .gauge, labels: ["version": version], value: 1)
            }
            for (name, value) in stats {
                guard let mapping = Self.mapping(for: name) else { continue }
                record(name: mapping.name, kind: mapping.kind, labels: mapping.labels, value: value)
            }
            for (bucket, field, value) in buckets {
                guard let mapping = Self.bucketMapping(for: field) else { continue }
                record(
                    name: mapping.name, kind: mapping.kind, labels: mapping.labels.merging(["bucket": bucket]) { $1 },
                    value: value)
            }
            return registry.emitToString()
        }
    }

    private func record(name: String, kind: Mapping.Kind, labels: [String: String], value: Double) {
        let dimensions = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let key = name + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        switch kind {
        case .gauge:
            let gauge = gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: dimensions, factory: factory)
            gauges[key] = gauge
            gauge.record(value)
        case .counter, .floatingCounter:
            // A total that went down was reset (a bucket recreated by a reload): count from zero again.
            let previous = lastSeen[key] ?? 0
            let delta = value >= previous ? value - previous : value
            lastSeen[key] = value
            if kind == .counter {
                let counter =
                    counters[key] ?? CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
                counters[key] = counter
                if value < previous { counter.reset() }
                if delta > 0 { counter.increment(by: Int64(delta)) }
            } else {
                let counter =
                    floatingCounters[key]
                    ?? CoreMetrics.FloatingPointCounter(label: name, dimensions: dimensions, factory: factory)
                floatingCounters[key] = counter
                if value < previous { counter.reset() }
                if delta > 0 { counter.increment(by: delta) }
            }
        }
    }

    /// memcached_exporter's names for memcached's `stats`; Moat's additions under `moat_`.
    static let mappings: [String: Mapping] = [
        "uptime": .init(.gauge, "memcached_uptime_seconds"),
        "time": .init(.gauge, "memcached_time_seconds"),
        "rusage_user": .init(.floatingCounter, "memcached_process_user_cpu_seconds_total"),
        "rusage_system": .init(.floatingCounter, "memcached_process_system_cpu_seconds_total"),
        "max_connections": .init(.gauge, "memcached_max_connections"),
        "curr_connections": .init(.gauge, "memcached_current_connections"),
        "total_connections": .init(.counter, "memcached_connections_total"),
        "rejected_connections": .init(.counter, "memcached_connections_rejected_total"),
        "cmd_get": .init(.counter, "moat_get_commands_total"),
        "cmd_set": .init(.counter, "memcached_commands_total", ["command": "set", "status": "hit"]),
        "cmd_flush": .init(.counter, "memcached_commands_total", ["command": "flush", "status": "hit"]),
        "cmd_touch": .init(.counter, "moat_touch_commands_total"),
        "get_hits": .init(.counter, "memcached_commands_total", ["command": "get", "status": "hit"]),
        "get_misses": .init(.counter, "memcached_commands_total", ["command": "get", "status": "miss"]),
        "get_expired": .init(.counter, "memcached_items_expired_fetched_total"),
        "get_flushed": .init(.counter, "memcached_items_flushed_fetched_total"),
        "delete_hits": .init(.counter, "memcached_commands_total", ["command": "delete", "status": "hit"]),
        "delete_misses": .init(.counter, "memcached_commands_total", ["command": "delete", "status": "miss"]),
        "incr_hits": .init(.counter, "memcached_commands_total", ["command": "incr", "status": "hit"]),
        "incr_misses": .init(.counter, "memcached_commands_total", ["command": "incr", "status": "miss"]),
        "decr_hits": .init(.counter, "memcached_commands_total", ["command": "decr", "status": "hit"]),
        "decr_misses": .init(.counter, "memcached_commands_total", ["command": "decr", "status": "miss"]),
        "cas_hits": .init(.counter, "memcached_commands_total", ["command": "cas", "status": "hit"]),
        "cas_misses": .init(.counter, "memcached_commands_total", ["command": "cas", "status": "miss"]),
        "cas_badval": .init(.counter, "memcached_commands_total", ["command": "cas", "status": "badval"]),
        "touch_hits": .init(.counter, "memcached_commands_total", ["command": "touch", "status": "hit"]),
        "touch_misses": .init(.counter, "memcached_commands_total", ["command": "touch", "status": "miss"]),
        "store_too_large": .init(.counter, "memcached_item_too_large_total"),
        "store_no_memory": .init(.counter, "memcached_out_of_memory_total"),
        "auth_cmds": .init(.counter, "moat_auth_commands_total"),
        "auth_errors": .init(.counter, "moat_auth_errors_total"),
        "bytes_read": .init(.counter, "memcached_read_bytes_total"),
        "bytes_written": .init(.counter, "memcached_written_bytes_total"),
        "limit_maxbytes": .init(.gauge, "memcached_limit_bytes"),
        "threads": .init(.gauge, "moat_threads"),
        "bytes": .init(.gauge, "memcached_current_bytes"),
        "curr_items": .init(.gauge, "memcached_current_items"),
        "total_items": .init(.counter, "memcached_items_total"),
        "expired_unfetched": .init(.counter, "memcached_items_expired_unfetched_total"),
        "evicted_unfetched": .init(.counter, "memcached_items_evicted_unfetched_total"),
        "evictions": .init(.counter, "memcached_items_evicted_total"),
        "reclaimed": .init(.counter, "memcached_items_reclaimed_total"),
        "crawler_reclaimed": .init(.counter, "moat_items_crawler_reclaimed_total"),
        "protocol_errors": .init(.counter, "moat_protocol_errors_total"),
        "ssl_handshake_errors": .init(.counter, "moat_tls_handshake_errors_total"),
        "rejected_allowlist": .init(.counter, "moat_connections_refused_total", ["reason": "allowlist"]),
        "rejected_per_address": .init(.counter, "moat_connections_refused_total", ["reason": "per_address_limit"]),
        "auth_refused": .init(.counter, "moat_auth_refused_total"),
        "auth_lockouts": .init(.counter, "moat_auth_lockouts_total"),
        "acl_denied": .init(.counter, "moat_acl_denied_total"),
    ]

    /// A `stats` line's metric: the table above, the security log's `security_*` counters as
    /// `moat_security_events_total{event=...}`, and UDP's `udp_*` as `moat_udp_*_total`.
    package static func mapping(for stat: String) -> Mapping? {
        if let mapping = mappings[stat] { return mapping }
        if stat.hasPrefix("security_") {
            return Mapping(.counter, "moat_security_events_total", ["event": String(stat.dropFirst("security_".count))])
        }
        if stat.hasPrefix("udp_") {
            return Mapping(.counter, "moat_\(stat)_total")
        }
        return nil
    }

    /// A `stats buckets` field (`bucket:NAME:FIELD`) as `moat_bucket_*{bucket=NAME}`.
    static func bucketMapping(for field: String) -> Mapping? {
        switch field {
        case "limit_maxbytes": return Mapping(.gauge, "moat_bucket_limit_bytes")
        case "curr_items": return Mapping(.gauge, "moat_bucket_current_items")
        case "bytes": return Mapping(.gauge, "moat_bucket_current_bytes")
        case "cmd_get": return Mapping(.counter, "moat_bucket_get_commands_total")
        case "cmd_set": return Mapping(.counter, "moat_bucket_set_commands_total")
        case "get_hits": return Mapping(.counter, "moat_bucket_get_total", ["status": "hit"])
        case "get_misses": return Mapping(.counter, "moat_bucket_get_total", ["status": "miss"])
        case "evictions": return Mapping(.counter, "moat_bucket_evictions_total")
        case "store_no_memory": return Mapping(.counter, "moat_bucket_out_of_memory_total")
        default: return nil
        }
    }
}
