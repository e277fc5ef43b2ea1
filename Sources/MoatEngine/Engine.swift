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

/// Everything the connections share: the cache, the settings and the running totals.
public final class Engine: Sendable {
    public let cache: Cache
    public let settings: EngineSettings
    public let connections = ConnectionCounters()
    public let verbosity = Atomic<UInt32>(0)
    /// Present when authentication is on: every session must authenticate before using the cache.
    public let authenticator: Authenticator?
    /// Where security events go (the server routes them to the JSON log).
    public let securityLog: SecurityLog
    /// Reloads the TLS certificates (`refresh_certs`); nil without TLS. Returns nil on success, else why not.
    public let certificateReloader: (@Sendable () -> String?)?
    /// Command totals in several independently locked slots, so that sessions on different event
    /// loops do not contend on one lock when they publish; `stats` adds the slots up.
    private let totalSlots: [CounterSlot]
    private let nextSlot = Atomic<Int>(0)
    let startedAt: Int64

    public init(
        cache: Cache, settings: EngineSettings, authenticator: Authenticator? = nil, securityLog: SecurityLog = SecurityLog(),
        certificateReloader: (@Sendable () -> String?)? = nil
    ) {
        self.certificateReloader = certificateReloader
        self.cache = cache
        self.settings = settings
        self.authenticator = authenticator
        self.securityLog = securityLog
        self.startedAt = cache.now()
        self.totalSlots = (0..<16).map { _ in CounterSlot() }
    }

    /// A session for a new connection from `peer` (its address without the port; "unix" for a unix socket).
    public func makeSession(peer: String = "local") -> Session {
        let slot = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue & (totalSlots.count - 1)
        return Session(engine: self, counterSlot: slot, peer: peer)
    }

    func merge(_ counters: CommandCounters, slot: Int) {
        totalSlots[slot].counters.withLock { $0.add(counters) }
    }

    public func commandTotals() -> CommandCounters {
        var sum = CommandCounters()
        for slot in totalSlots { sum.add(slot.counters.withLock { $0 }) }
        return sum
    }

    func resetTotals() {
        for slot in totalSlots { slot.counters.withLock { $0 = CommandCounters() } }
        cache.resetCounters()
        connections.total.store(0, ordering: .relaxed)
        connections.rejected.store(0, ordering: .relaxed)
    }

    /// `stats` with memcached's names and order; Moat's own additions come after them.
    public func generalStats() -> [(String, String)] {
        let now = cache.now()
        let c = commandTotals()
        let storage = cache.counters()
        let auth = authenticator?.statLines() ?? (cmds: 0, errors: 0, refused: 0, lockouts: 0)
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        /// memcached prints CPU time as seconds with six decimals.
        func seconds(_ t: timeval) -> String {
            let micros = String(t.tv_usec)
            return "\(t.tv_sec)." + String(repeating: "0", count: max(0, 6 - micros.count)) + micros
        }
        return [
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
            ("limit_maxbytes", "\(cache.configuration.memoryLimit)"),
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
        ] + securityLog.statLines()
    }

    /// Moat has no slab classes: one class, numbered 1, stands for the whole cache.
    public func itemStats() -> [(String, String)] {
        let s = cache.counters()
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

    public func slabStats() -> [(String, String)] {
        let s = cache.counters()
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
