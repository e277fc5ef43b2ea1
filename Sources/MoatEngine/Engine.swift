import MoatAccess
import MoatStorage
import Synchronization

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
}
