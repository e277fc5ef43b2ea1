import MoatAccess
import MoatStorage
import Synchronization

/// One bucket's storage and running totals. Sessions of the bucket's users publish their command
/// counters here, so `stats` can answer per bucket; the server-wide totals add the buckets up.
public final class Bucket: Sendable {
    public let name: String
    public let cache: Cache
    private let slots: [CounterSlot]

    init(name: String, cache: Cache, slotCount: Int) {
        self.name = name
        self.cache = cache
        self.slots = (0..<slotCount).map { _ in CounterSlot() }
    }

    func merge(_ counters: CommandCounters, slot: Int) {
        slots[slot & (slots.count - 1)].counters.withLock { $0.add(counters) }
    }

    public func commandTotals() -> CommandCounters {
        var sum = CommandCounters()
        for slot in slots { sum.add(slot.counters.withLock { $0 }) }
        return sum
    }

    func resetTotals() {
        for slot in slots { slot.counters.withLock { $0 = CommandCounters() } }
        cache.resetCounters()
    }
}

/// Per-user counts for `stats users`.
public struct UserCounters: Sendable, Equatable {
    public var authSuccesses: UInt64 = 0
    public var authFailures: UInt64 = 0
    public var denied: UInt64 = 0
    public init() {}
}

/// The buckets and who may use which. Read by sessions when they authenticate (and after a reload),
/// never per request: a session keeps its bucket and grant until `generation` moves.
public final class Tenancy: Sendable {
    struct State {
        var buckets: [String: Bucket]
        var plan: TenantPlan
        var usersByName: [String: UserPlan] = [:]
        var usersBySubject: [String: String] = [:]
        var userCounters: [String: UserCounters] = [:]
        /// Totals of buckets removed by a reload, kept so the server-wide totals do not go backwards.
        var retired = CommandCounters()
    }

    public let defaultBucket: Bucket
    /// Moves on every reload; sessions compare it with the one they saw to notice a change.
    public let generation = Atomic<Int>(0)
    private let state: Mutex<State>
    private let baseConfiguration: CacheConfiguration
    private let clock: any CacheClock
    private let slotCount: Int

    /// The default bucket uses `cache`, with all of its memory until `apply` gives a plan with buckets.
    public init(cache: Cache, slotCount: Int = 16) {
        self.baseConfiguration = cache.configuration
        self.clock = cache.clock
        self.slotCount = slotCount
        let bucket = Bucket(name: TenantPlan.defaultBucket, cache: cache, slotCount: slotCount)
        self.defaultBucket = bucket
        self.state = Mutex(State(buckets: [TenantPlan.defaultBucket: bucket], plan: TenantPlan()))
    }

    /// Applies a plan: new buckets are created, removed ones dropped, changed quotas applied (items of
    /// a shrunk bucket are evicted until it fits), users replaced. Validated first: on error nothing changes.
    public func apply(_ plan: TenantPlan) throws(TenantPlanError) {
        let total = baseConfiguration.memoryLimit
        let quotas: [BucketPlan]
        switch plan.quotas(total: total, defaultEvicts: baseConfiguration.evictionsEnabled) {
        case .success(let result): quotas = result
        case .failure(let error): throw error
        }
        state.withLock { state in
            var kept: [String: Bucket] = [:]
            // Shrink before growing, so the buckets together never hold more than the limit.
            let ordered = quotas.sorted { a, b in
                let aShrinks = a.memoryLimit < (state.buckets[a.name]?.cache.memoryLimit ?? Int.max)
                let bShrinks = b.memoryLimit < (state.buckets[b.name]?.cache.memoryLimit ?? Int.max)
                return aShrinks && !bShrinks
            }
            for name in state.buckets.keys where !quotas.contains(where: { $0.name == name }) {
                if let gone = state.buckets[name] {
                    state.retired.add(gone.commandTotals())
                    gone.cache.resize(memoryLimit: 0, evictionsEnabled: true)
                }
            }
            for spec in ordered {
                if let existing = state.buckets[spec.name] {
                    existing.cache.resize(memoryLimit: spec.memoryLimit, evictionsEnabled: spec.evictionsEnabled)
                    kept[spec.name] = existing
                } else {
                    var configuration = baseConfiguration
                    configuration.memoryLimit = spec.memoryLimit
                    configuration.evictionsEnabled = spec.evictionsEnabled
                    configuration.shardCount = nil
                    configuration.segmentSize = nil
                    kept[spec.name] = Bucket(
                        name: spec.name, cache: Cache(configuration: configuration, clock: clock), slotCount: slotCount)
                }
            }
            state.buckets = kept
            state.plan = plan
            state.usersByName = [:]
            state.usersBySubject = [:]
            for user in plan.users ?? [] {
                state.usersByName[user.name] = user
                for subject in user.certificateSubjects { state.usersBySubject[subject] = user.name }
            }
            state.userCounters = state.userCounters.filter { plan.users == nil || state.usersByName[$0.key] != nil }
        }
        generation.add(1, ordering: .releasing)
    }

    /// True when the configuration lists users: only they may log in.
    public var restrictsUsers: Bool { state.withLock { $0.plan.users != nil } }

    /// True when `user` may log in (listed, or no list).
    public func admits(user: String) -> Bool {
        state.withLock { $0.plan.users == nil || $0.usersByName[user] != nil }
    }

    /// The bucket and grant of a user that has authenticated; nil when it may not log in (now).
    public func resolve(user: String) -> (bucket: Bucket, grant: AccessGrant)? {
        state.withLock { state in
            guard state.plan.users != nil else { return (defaultBucket, .unrestricted) }
            guard let plan = state.usersByName[user], let bucket = state.buckets[plan.bucket] else { return nil }
            return (bucket, plan.grant)
        }
    }

    /// The user a verified client certificate's common name logs in as: a user that lists the name in
    /// `certificate_subjects`, else a user of that name.
    public func user(forCertificateSubject subject: String) -> String? {
        state.withLock { $0.usersBySubject[subject] }
    }

    public var buckets: [Bucket] {
        state.withLock { state in state.buckets.values.sorted { $0.name < $1.name } }
    }

    func retiredTotals() -> CommandCounters { state.withLock { $0.retired } }

    func resetRetired() { state.withLock { $0.retired = CommandCounters() } }

    /// Counters of a session whose bucket a reload removed: added to the server-wide totals if the
    /// bucket is gone (its own totals were folded in at removal), else merged into the bucket.
    func publish(_ counters: CommandCounters, from bucket: Bucket, slot: Int) {
        let retired = state.withLock { state in
            guard state.buckets[bucket.name] !== bucket else { return false }
            state.retired.add(counters)
            return true
        }
        if !retired { bucket.merge(counters, slot: slot) }
    }

    func count(user: String, _ update: (inout UserCounters) -> Void) {
        state.withLock { state in
            // Only users the server knows: names sent by clients must not grow the table.
            guard state.plan.users == nil || state.usersByName[user] != nil,
                state.userCounters.count < 100_000 || state.userCounters[user] != nil
            else {
                return
            }
            update(&state.userCounters[user, default: UserCounters()])
        }
    }

    public func userCounters() -> [(String, UserCounters)] {
        state.withLock { $0.userCounters.sorted { $0.key < $1.key } }
    }

    public func userPlans() -> [UserPlan] {
        state.withLock { state in (state.plan.users ?? []).sorted { $0.name < $1.name } }
    }
}
