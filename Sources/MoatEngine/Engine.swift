import MoatAccess
import MoatStorage
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Connection counts kept by the server and reported by `stats`.
public final class ConnectionCounters: Sendable {
    public let current = Atomic<Int>(0)
    public let total = Atomic<UInt64>(0)
    public let rejected = Atomic<UInt64>(0)
    /// Refused by the allow/deny lists, and by the per-address cap (`rejected` counts `-c`, as memcached).
    public let refusedByFilter = Atomic<UInt64>(0)
    public let refusedPerAddress = Atomic<UInt64>(0)
    /// TLS handshakes that failed or timed out (memcached's `ssl_handshake_errors`).
    public let tlsHandshakeErrors = Atomic<UInt64>(0)

    public init() {}
}

final class CounterSlot: Sendable {
    let counters = Mutex(CommandCounters())
}

/// Everything the connections share: the buckets, the settings and the running totals.
public final class Engine: Sendable {
    /// The default bucket's cache (all of `-m` when no buckets are configured).
    public let cache: Cache
    public let settings: EngineSettings
    public let connections = ConnectionCounters()
    /// Unread replies held across all connections (see `OutputBudget`).
    public let outputBudget: OutputBudget
    /// What the UDP port received and answered (`-U`).
    public let udp = UDPCounters()
    public let verbosity = Atomic<UInt32>(0)
    /// Present when authentication is on: every session must authenticate before using the cache.
    public let authenticator: Authenticator?
    /// Buckets and the users allowed into them.
    public let tenancy: Tenancy
    /// Where security events go (the server routes them to the JSON log).
    public let securityLog: SecurityLog
    /// Reloads the TLS certificates (`refresh_certs`); nil without TLS. Returns nil on success, else why not.
    public let certificateReloader: (@Sendable () -> String?)?
    /// Commands refused for want of a permission (`acl_denied`).
    let deniedCommands = Atomic<UInt64>(0)
    /// Sessions publish their counters into one of several independently locked slots of their
    /// bucket, so that sessions on different event loops rarely contend; `stats` adds them up.
    private let nextSlot = Atomic<Int>(0)
    let startedAt: Int64

    public init(
        cache: Cache, settings: EngineSettings, authenticator: Authenticator? = nil,
        securityLog: SecurityLog = SecurityLog(),
        certificateReloader: (@Sendable () -> String?)? = nil
    ) {
        self.certificateReloader = certificateReloader
        self.cache = cache
        self.settings = settings
        self.outputBudget = OutputBudget(limit: settings.outputBudgetBytes)
        self.authenticator = authenticator
        self.securityLog = securityLog
        self.startedAt = cache.now()
        self.tenancy = Tenancy(cache: cache)
    }

    /// A session for a new connection from `peer` (its address without the port; "unix" for a unix socket).
    public func makeSession(peer: String = "local") -> Session {
        let slot = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue
        return Session(engine: self, counterSlot: slot, peer: peer)
    }

    /// A session for a client whose socket address the server read (nil: unknown): logged as its
    /// numeric address, throttled by `PeerAddress.throttleKey`.
    public func makeSession(address: PeerAddress?) -> Session {
        let slot = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue
        return Session(
            engine: self, counterSlot: slot, peer: address?.description ?? "unknown", throttleKey: address?.throttleKey)
    }

    /// Applies buckets, users and credentials (at start and on reload). With a list of users, only they
    /// can authenticate: the others are taken out of the credentials the sessions check. Validated
    /// first; on error nothing changes.
    public func reconfigure(tenants plan: TenantPlan, credentials: CredentialStore?) throws(TenantPlanError) {
        if let authenticator, let credentials {
            var admitted = credentials
            if let users = plan.users {
                let listed = Set(users.map(\.name))
                for name in credentials.userNames where !listed.contains(name) { _ = admitted.remove(user: name) }
            }
            try tenancy.apply(plan)
            authenticator.replaceStore(admitted)
            // Again, now that the new credentials are in place: a session that revalidated between the
            // two steps checked the old ones, and every session must check its user against the new.
            tenancy.generation.add(1, ordering: .releasing)
        } else {
            try tenancy.apply(plan)
        }
    }

    /// Server-wide totals: every bucket's, and those of buckets since removed.
    public func commandTotals() -> CommandCounters {
        var sum = tenancy.retiredTotals()
        for bucket in tenancy.buckets { sum.add(bucket.commandTotals()) }
        return sum
    }

    func resetTotals() {
        for bucket in tenancy.buckets { bucket.resetTotals() }
        tenancy.resetRetired()
        connections.total.store(0, ordering: .relaxed)
        connections.rejected.store(0, ordering: .relaxed)
    }

    /// Expired items out of every bucket, a bounded walk per shard.
    public func reclaimExpired(perShardLimit: Int) {
        for bucket in tenancy.buckets { bucket.cache.reclaimExpired(perShardLimit: perShardLimit) }
    }

    /// `stats` with memcached's names and order; Moat's own additions come after them. The command,
    /// item and memory figures are `bucket`'s (a tenant sees only its own); the lines about the whole
    /// server (its connections, authentication and security counters) only when `serverWide`.
    /// `summed`: command, item and memory figures summed over every bucket (the metrics endpoint).
    public func generalStats(for bucket: Bucket? = nil, serverWide: Bool = true, summed: Bool = false) -> [(
        String, String
    )] {
        let bucket = bucket ?? tenancy.defaultBucket
        let now = cache.now()
        let buckets = summed ? tenancy.buckets : [bucket]
        let c = summed ? commandTotals() : bucket.commandTotals()
        let storage = buckets.reduce(ShardCounters()) { $0 + $1.cache.counters() }
        let memoryLimit = buckets.reduce(0) { $0 + $1.cache.memoryLimit }
        let auth = authenticator?.statLines() ?? (cmds: 0, errors: 0, refused: 0, lockouts: 0)
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        /// memcached prints CPU time as seconds with six decimals.
        func seconds(_ t: timeval) -> String {
            let micros = String(t.tv_usec)
            return "\(t.tv_sec)." + String(repeating: "0", count: max(0, 6 - micros.count)) + micros
        }
        var lines: [(String, String)] =
            [
                ("pid", "\(getpid())"),
                ("uptime", "\(max(0, now - startedAt))"),
                ("time", "\(now)"),
                ("version", settings.version),
                ("pointer_size", "\(MemoryLayout<Int>.size * 8)"),
                ("rusage_user", seconds(usage.ru_utime)),
                ("rusage_system", seconds(usage.ru_stime)),
                ("max_connections", "\(settings.maxConnections)"),
                ("curr_connections", "\(connections.current.load(ordering: .relaxed))"),
                ("total_connections", "\(connections.total.load(ordering: .relaxed))"),
                ("rejected_connections", "\(connections.rejected.load(ordering: .relaxed))"),
                ("connection_structures", "\(connections.current.load(ordering: .relaxed))"),
                ("cmd_get", "\(c.cmdGet)"),
                ("cmd_set", "\(c.cmdSet)"),
                ("cmd_flush", "\(c.cmdFlush)"),
                ("cmd_touch", "\(c.cmdTouch)"),
                ("get_hits", "\(c.getHits)"),
                ("get_misses", "\(c.getMisses)"),
                ("get_expired", "\(storage.getExpired)"),
                ("get_flushed", "\(storage.getFlushed)"),
                ("delete_misses", "\(c.deleteMisses)"),
                ("delete_hits", "\(c.deleteHits)"),
                ("incr_misses", "\(c.incrMisses)"),
                ("incr_hits", "\(c.incrHits)"),
                ("decr_misses", "\(c.decrMisses)"),
                ("decr_hits", "\(c.decrHits)"),
                ("cas_misses", "\(c.casMisses)"),
                ("cas_hits", "\(c.casHits)"),
                ("cas_badval", "\(c.casBadval)"),
                ("touch_hits", "\(c.touchHits)"),
                ("touch_misses", "\(c.touchMisses)"),
                ("store_too_large", "\(c.storeTooLarge)"),
                ("store_no_memory", "\(c.storeNoMemory)"),
                ("auth_cmds", "\(auth.cmds)"),
                ("auth_errors", "\(auth.errors)"),
                ("bytes_read", "\(c.bytesRead)"),
                ("bytes_written", "\(c.bytesWritten)"),
                ("limit_maxbytes", "\(memoryLimit)"),
                ("accepting_conns", "1"),
                ("threads", "\(settings.threads)"),
                ("bytes", "\(storage.bytes)"),
                ("curr_items", "\(storage.currentItems)"),
                ("total_items", "\(storage.totalItems)"),
                ("expired_unfetched", "\(storage.expiredUnfetched)"),
                ("evicted_unfetched", "\(storage.evictedUnfetched)"),
                ("evictions", "\(storage.evictions)"),
                ("reclaimed", "\(storage.reclaimed)"),
                ("crawler_reclaimed", "\(storage.crawlerReclaimed)"),
                ("protocol_errors", "\(c.protocolErrors)"),
                ("ssl_handshake_errors", "\(connections.tlsHandshakeErrors.load(ordering: .relaxed))"),
                ("rejected_allowlist", "\(connections.refusedByFilter.load(ordering: .relaxed))"),
                ("rejected_per_address", "\(connections.refusedPerAddress.load(ordering: .relaxed))"),
                ("auth_refused", "\(auth.refused)"),
                ("auth_lockouts", "\(auth.lockouts)"),
                ("acl_denied", "\(deniedCommands.load(ordering: .relaxed))"),
            ] + securityLog.statLines()
        if settings.udpEnabled { lines += udp.statLines() }
        if !serverWide {
            lines.removeAll {
                Self.serverWideStats.contains($0.0) || $0.0.hasPrefix("security_") || $0.0.hasPrefix("udp_")
            }
        }
        if bucket !== tenancy.defaultBucket || tenancy.buckets.count > 1 { lines.append(("bucket", bucket.name)) }
        return lines
    }

    /// What a tenant without the admin permission does not see in `stats`: other clients' activity.
    static let serverWideStats: Set<String> = [
        "rusage_user", "rusage_system", "curr_connections", "total_connections", "rejected_connections",
        "connection_structures",
        "auth_cmds", "auth_errors", "ssl_handshake_errors", "rejected_allowlist", "rejected_per_address",
        "auth_refused",
        "auth_lockouts", "acl_denied",
    ]

    /// `stats buckets`: each bucket's quota, items, bytes, hits, misses and evictions.
    public func bucketStats() -> [(String, String)] {
        var lines: [(String, String)] = []
        for bucket in tenancy.buckets {
            let c = bucket.commandTotals()
            let s = bucket.cache.counters()
            let prefix = "bucket:\(bucket.name):"
            lines += [
                (prefix + "limit_maxbytes", "\(bucket.cache.memoryLimit)"),
                (prefix + "curr_items", "\(s.currentItems)"),
                (prefix + "bytes", "\(s.bytes)"),
                (prefix + "cmd_get", "\(c.cmdGet)"),
                (prefix + "cmd_set", "\(c.cmdSet)"),
                (prefix + "get_hits", "\(c.getHits)"),
                (prefix + "get_misses", "\(c.getMisses)"),
                (prefix + "evictions", "\(s.evictions)"),
                (prefix + "store_no_memory", "\(c.storeNoMemory)"),
            ]
        }
        return lines
    }

    /// `stats users`: per configured (or seen) user, authentication successes and failures, and denials.
    public func userStats() -> [(String, String)] {
        var lines: [(String, String)] = []
        let counted = Dictionary(uniqueKeysWithValues: tenancy.userCounters())
        var names = tenancy.userPlans().map(\.name)
        for name in counted.keys where !names.contains(name) { names.append(name) }
        for name in names.sorted() {
            let c = counted[name] ?? UserCounters()
            let prefix = "user:\(name):"
            lines += [
                (prefix + "auth_success", "\(c.authSuccesses)"),
                (prefix + "auth_failures", "\(c.authFailures)"),
                (prefix + "acl_denied", "\(c.denied)"),
            ]
        }
        return lines
    }

    /// Moat has no slab classes: one class, numbered 1, stands for the whole bucket.
    public func itemStats(for bucket: Bucket? = nil) -> [(String, String)] {
        let s = (bucket ?? tenancy.defaultBucket).cache.counters()
        guard s.currentItems > 0 else { return [] }
        return [
            ("items:1:number", "\(s.currentItems)"),
            ("items:1:age", "\(s.oldestItemAge)"),
            ("items:1:evicted", "\(s.evictions)"),
            ("items:1:evicted_unfetched", "\(s.evictedUnfetched)"),
            ("items:1:expired_unfetched", "\(s.expiredUnfetched)"),
            ("items:1:outofmemory", "\(s.outOfMemory)"),
            ("items:1:reclaimed", "\(s.reclaimed)"),
            ("items:1:crawler_reclaimed", "\(s.crawlerReclaimed)"),
        ]
    }

    public func slabStats(for bucket: Bucket? = nil) -> [(String, String)] {
        let s = (bucket ?? tenancy.defaultBucket).cache.counters()
        var lines: [(String, String)] = []
        if s.currentItems > 0 {
            lines.append(("1:used_chunks", "\(s.currentItems)"))
            lines.append(("1:mem_requested", "\(s.bytes)"))
        }
        lines.append(("active_slabs", s.currentItems > 0 ? "1" : "0"))
        lines.append(("total_malloced", "\(s.mallocedBytes)"))
        return lines
    }
}
