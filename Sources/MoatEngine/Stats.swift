import MoatStorage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One `stats` value, typed: `stats` (text and binary STAT) prints `text`, the metrics endpoint reads
/// `number`, and no figure goes through a string and back.
public enum StatValue: Sendable, Equatable {
    case count(UInt64)
    /// CPU time; memcached prints it as seconds with six decimals.
    case seconds(Int, microseconds: Int)
    case text(String)

    public var text: String {
        switch self {
        case .count(let value):
            return String(value)
        case .seconds(let seconds, let microseconds):
            let micros = String(microseconds)
            return "\(seconds)." + String(repeating: "0", count: max(0, 6 - micros.count)) + micros
        case .text(let text):
            return text
        }
    }

    /// The value as a metric; nil for text (a version, a bucket's name).
    public var number: Double? {
        switch self {
        case .count(let value): return Double(value)
        case .seconds(let seconds, let microseconds): return Double(seconds) + Double(microseconds) / 1_000_000
        case .text: return nil
        }
    }
}

/// One `stats` line: memcached's name (or Moat's) and its value.
public struct Stat: Sendable, Equatable {
    public let name: String
    public let value: StatValue

    public init(_ name: String, _ value: StatValue) {
        self.name = name
        self.value = value
    }

    /// A count or gauge; negative values (none are expected) print as 0.
    public init(_ name: String, _ count: some BinaryInteger) {
        self.init(name, .count(UInt64(clamping: count)))
    }
}

/// Authentication totals (memcached's `auth_cmds`, `auth_errors`; Moat's refusals and lockouts).
public struct AuthTotals: Sendable, Equatable {
    public var attempts: UInt64 = 0
    public var failures: UInt64 = 0
    public var refusals: UInt64 = 0
    public var lockouts: UInt64 = 0
}

/// Everything `stats` reports, read once from the engine's counters: the text protocol, the binary
/// protocol and the metrics endpoint each render from this one value.
public struct StatsSnapshot: Sendable {
    public var pid: Int32
    public var uptime: Int64
    public var time: Int64
    public var version: String
    public var cpuUser: (seconds: Int, microseconds: Int)
    public var cpuSystem: (seconds: Int, microseconds: Int)
    public var maxConnections: Int
    public var threads: Int
    public var currentConnections: Int
    public var totalConnections: UInt64
    public var rejectedConnections: UInt64
    public var refusedByFilter: UInt64
    public var refusedPerAddress: UInt64
    public var tlsHandshakeErrors: UInt64
    /// The bucket's commands (or every bucket's, summed).
    public var commands: CommandCounters
    /// The bucket's items and memory (or every bucket's, summed).
    public var storage: ShardCounters
    public var memoryLimit: Int
    public var auth: AuthTotals
    public var aclDenied: UInt64
    /// The security log's counts (`security_*`).
    public var security: [Stat]
    /// UDP's counts (`udp_*`), when `-U` is on.
    public var udp: [Stat]?
    /// The bucket's name when there is more than the default one (or the session is in another).
    public var bucket: String?

    /// `stats` with memcached's names and order; Moat's own additions come after them. Without
    /// `serverWide`, the lines about the whole server (other clients' connections, authentication and
    /// security counters) are left out: what a tenant without the admin permission sees.
    public func general(serverWide: Bool = true) -> [Stat] {
        let c = commands
        let s = storage
        var lines: [Stat] = [
            Stat("pid", pid),
            Stat("uptime", max(0, uptime)),
            Stat("time", time),
            Stat("version", .text(version)),
            Stat("pointer_size", MemoryLayout<Int>.size * 8),
        ]
        if serverWide {
            lines += [
                Stat("rusage_user", .seconds(cpuUser.seconds, microseconds: cpuUser.microseconds)),
                Stat("rusage_system", .seconds(cpuSystem.seconds, microseconds: cpuSystem.microseconds)),
            ]
        }
        lines.append(Stat("max_connections", maxConnections))
        if serverWide {
            lines += [
                Stat("curr_connections", currentConnections),
                Stat("total_connections", totalConnections),
                Stat("rejected_connections", rejectedConnections),
                Stat("connection_structures", currentConnections),
            ]
        }
        lines += [
            Stat("cmd_get", c.cmdGet), Stat("cmd_set", c.cmdSet), Stat("cmd_flush", c.cmdFlush),
            Stat("cmd_touch", c.cmdTouch), Stat("get_hits", c.getHits), Stat("get_misses", c.getMisses),
            Stat("get_expired", s.getExpired), Stat("get_flushed", s.getFlushed),
            Stat("delete_misses", c.deleteMisses), Stat("delete_hits", c.deleteHits),
            Stat("incr_misses", c.incrMisses), Stat("incr_hits", c.incrHits),
            Stat("decr_misses", c.decrMisses), Stat("decr_hits", c.decrHits),
            Stat("cas_misses", c.casMisses), Stat("cas_hits", c.casHits), Stat("cas_badval", c.casBadval),
            Stat("touch_hits", c.touchHits), Stat("touch_misses", c.touchMisses),
            Stat("store_too_large", c.storeTooLarge), Stat("store_no_memory", c.storeNoMemory),
        ]
        if serverWide { lines += [Stat("auth_cmds", auth.attempts), Stat("auth_errors", auth.failures)] }
        lines += [
            Stat("bytes_read", c.bytesRead), Stat("bytes_written", c.bytesWritten),
            Stat("limit_maxbytes", memoryLimit), Stat("accepting_conns", 1), Stat("threads", threads),
            Stat("bytes", s.bytes), Stat("curr_items", s.currentItems), Stat("total_items", s.totalItems),
            Stat("expired_unfetched", s.expiredUnfetched), Stat("evicted_unfetched", s.evictedUnfetched),
            Stat("evictions", s.evictions), Stat("reclaimed", s.reclaimed),
            Stat("crawler_reclaimed", s.crawlerReclaimed), Stat("protocol_errors", c.protocolErrors),
        ]
        if serverWide {
            lines += [
                Stat("ssl_handshake_errors", tlsHandshakeErrors), Stat("rejected_allowlist", refusedByFilter),
                Stat("rejected_per_address", refusedPerAddress), Stat("auth_refused", auth.refusals),
                Stat("auth_lockouts", auth.lockouts), Stat("acl_denied", aclDenied),
            ]
            lines += security
            lines += udp ?? []
        }
        if let bucket { lines.append(Stat("bucket", .text(bucket))) }
        return lines
    }

    /// `stats items`: Moat has no slab classes, so one class, numbered 1, stands for the whole bucket.
    public static func items(_ s: ShardCounters) -> [Stat] {
        guard s.currentItems > 0 else { return [] }
        return [
            Stat("items:1:number", s.currentItems), Stat("items:1:age", s.oldestItemAge),
            Stat("items:1:evicted", s.evictions), Stat("items:1:evicted_unfetched", s.evictedUnfetched),
            Stat("items:1:expired_unfetched", s.expiredUnfetched), Stat("items:1:outofmemory", s.outOfMemory),
            Stat("items:1:reclaimed", s.reclaimed), Stat("items:1:crawler_reclaimed", s.crawlerReclaimed),
        ]
    }

    /// `stats slabs`, in the same one-class terms.
    public static func slabs(_ s: ShardCounters) -> [Stat] {
        var lines: [Stat] = []
        if s.currentItems > 0 { lines += [Stat("1:used_chunks", s.currentItems), Stat("1:mem_requested", s.bytes)] }
        lines += [Stat("active_slabs", s.currentItems > 0 ? 1 : 0), Stat("total_malloced", s.mallocedBytes)]
        return lines
    }
}

/// One bucket's figures for `stats buckets` and the metrics endpoint's `moat_bucket_*`.
public struct BucketStats: Sendable {
    public var name: String
    public var memoryLimit: Int
    public var commands: CommandCounters
    public var storage: ShardCounters

    /// The bucket's `stats buckets` lines, `bucket:NAME:FIELD`.
    public var lines: [Stat] {
        let prefix = "bucket:\(name):"
        return fields.map { Stat(prefix + $0.field, $0.value) }
    }

    /// The same figures by field name, for the metrics endpoint (no `bucket:NAME:` to split again).
    public var fields: [(field: String, value: StatValue)] {
        let c = commands
        let s = storage
        return [
            ("limit_maxbytes", .count(UInt64(clamping: memoryLimit))),
            ("curr_items", .count(UInt64(clamping: s.currentItems))), ("bytes", .count(UInt64(clamping: s.bytes))),
            ("cmd_get", .count(c.cmdGet)), ("cmd_set", .count(c.cmdSet)), ("get_hits", .count(c.getHits)),
            ("get_misses", .count(c.getMisses)), ("evictions", .count(s.evictions)),
            ("store_no_memory", .count(c.storeNoMemory)),
        ]
    }
}

extension Engine {
    /// Reads every figure `stats` reports for `bucket` (default: the default bucket) once.
    /// `summed`: command, item and memory figures summed over every bucket (the metrics endpoint).
    public func statsSnapshot(for bucket: Bucket? = nil, summed: Bool = false) -> StatsSnapshot {
        let bucket = bucket ?? tenancy.defaultBucket
        let now = cache.now()
        let buckets = summed ? tenancy.buckets : [bucket]
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return StatsSnapshot(
            pid: getpid(), uptime: now - startedAt, time: now, version: settings.version,
            cpuUser: (Int(usage.ru_utime.tv_sec), Int(usage.ru_utime.tv_usec)),
            cpuSystem: (Int(usage.ru_stime.tv_sec), Int(usage.ru_stime.tv_usec)),
            maxConnections: settings.maxConnections, threads: settings.threads,
            currentConnections: connections.current.load(ordering: .relaxed),
            totalConnections: connections.total.load(ordering: .relaxed),
            rejectedConnections: connections.rejected.load(ordering: .relaxed),
            refusedByFilter: connections.refusedByFilter.load(ordering: .relaxed),
            refusedPerAddress: connections.refusedPerAddress.load(ordering: .relaxed),
            tlsHandshakeErrors: connections.tlsHandshakeErrors.load(ordering: .relaxed),
            commands: summed ? commandTotals() : bucket.commandTotals(),
            storage: buckets.reduce(ShardCounters()) { $0 + $1.cache.counters() },
            memoryLimit: buckets.reduce(0) { $0 + $1.cache.memoryLimit },
            auth: authenticator?.totals ?? AuthTotals(),
            aclDenied: deniedCommands.load(ordering: .relaxed),
            security: securityLog.stats(),
            udp: settings.udpEnabled ? udp.stats() : nil,
            bucket: bucket !== tenancy.defaultBucket || tenancy.buckets.count > 1 ? bucket.name : nil)
    }

    /// `stats buckets`: each bucket's quota, items, bytes, hits, misses and evictions.
    public func bucketStats() -> [BucketStats] {
        tenancy.buckets.map {
            BucketStats(
                name: $0.name, memoryLimit: $0.cache.memoryLimit, commands: $0.commandTotals(),
                storage: $0.cache.counters())
        }
    }

    /// `stats users`: per configured (or seen) user, authentication successes and failures, and denials.
    public func userStats() -> [Stat] {
        var lines: [Stat] = []
        let counted = Dictionary(uniqueKeysWithValues: tenancy.userCounters())
        var names = tenancy.userPlans().map(\.name)
        for name in counted.keys where !names.contains(name) { names.append(name) }
        for name in names.sorted() {
            let c = counted[name] ?? UserCounters()
            let prefix = "user:\(name):"
            lines += [
                Stat(prefix + "auth_success", c.authSuccesses), Stat(prefix + "auth_failures", c.authFailures),
                Stat(prefix + "acl_denied", c.denied),
            ]
        }
        return lines
    }
}
