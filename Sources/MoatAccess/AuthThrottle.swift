import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How hard Moat makes online password guessing from one address.
///
/// The defaults bound guessing from one source to 8 attempts in any minute (3 at once, then after
/// 1, 2, 4, 8 and 16 s) and 10 in any 10 minutes before a 10-minute lockout, while a client whose
/// first attempt carried a stale password, or a neighbour that failed a moment ago, is still
/// checked on its next try.
public struct AuthPolicy: Sendable {
    /// Failures in a row that carry no delay: the delay starts after the `failureBurst`-th.
    /// One (or less) delays after every failure.
    public var failureBurst: Int = 3
    /// Seconds after the burst's last failure before the address may try again; doubles with each
    /// further consecutive failure, up to `maxFailureDelay`. Zero turns the delay off.
    public var failureDelay: Double = 1.0
    public var maxFailureDelay: Double = 30
    /// This many failures within `window` seconds lock the address out for `lockoutDuration`;
    /// zero or less turns lockouts off.
    public var lockoutThreshold: Int = 10
    public var window: Double = 600
    public var lockoutDuration: Double = 600
    /// Addresses remembered at most (bounded memory under a spray from many addresses): when full,
    /// expired entries go first, then the least recently failed.
    public var maxTrackedAddresses: Int = 65_536

    public init() {}
}

/// Whether an address may attempt authentication now.
public enum AuthAdmission: Sendable, Equatable {
    case allowed
    case throttled(retryAfter: Double)
    case lockedOut(retryAfter: Double)
}

/// Tracks authentication failures per client address and slows, then locks out, addresses that
/// keep failing. Shared by all event-loop threads, hence the mutex; every operation is O(1)
/// except the occasional eviction sweep when the table is full.
public final class AuthThrottle: Sendable {
    private struct Entry {
        /// Failures in a row, for the burst and the doubling delay; reset by success and by lockout.
        var consecutive = 0
        var lastFailure: Double = 0
        /// Times of recent failures, oldest first, at most `lockoutThreshold` of them.
        var recent: [Double] = []
        var lockedUntil: Double = -.infinity
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var lockouts: UInt64 = 0
    }

    private let policy: AuthPolicy
    private let now: @Sendable () -> Double
    private let state = Mutex(State())

    /// `now`: monotonic seconds (injectable for tests).
    public init(policy: AuthPolicy, now: @escaping @Sendable () -> Double) {
        self.policy = policy
        self.now = now
    }

    /// The key an address's failures are counted under: an IPv4 address as it is (also when written
    /// IPv4-mapped), an IPv6 address by its /64 prefix, since one host usually holds a whole /64 and
    /// could otherwise rotate through addresses to escape the delay and the lockout.
    public static func addressKey(_ address: String) -> String {
        PeerAddress(address)?.throttleKey ?? address
    }

    /// Lockouts started so far, for stats.
    public var lockouts: UInt64 {
        state.withLock { $0.lockouts }
    }

    /// Addresses currently remembered (for stats and tests).
    public var trackedAddresses: Int {
        state.withLock { $0.entries.count }
    }

    /// Asks, before checking credentials, whether `address` may try now.
    public func admit(_ address: String) -> AuthAdmission {
        let time = now()
        return state.withLock { state in
            guard let entry = state.entries[address] else { return .allowed }
            if isExpired(entry, at: time) {
                state.entries[address] = nil
                return .allowed
            }
            return admission(for: entry, at: time)
        }
    }

    /// Records a failed attempt; returns what the address faces next (`.lockedOut` when this
    /// failure locked it out).
    @discardableResult
    public func recordFailure(_ address: String) -> AuthAdmission {
        let time = now()
        return state.withLock { state in
            var entry: Entry
            if let existing = state.entries[address], !isExpired(existing, at: time) {
                entry = existing
            } else {
                makeRoom(in: &state, at: time)
                entry = Entry()
            }
            if entry.lockedUntil > time {
                // Attempts should not reach here while locked out; if they do, the lockout stands
                // as it is rather than being extended forever by a client that ignores it.
                state.entries[address] = entry
                return .lockedOut(retryAfter: entry.lockedUntil - time)
            }
            entry.consecutive += 1
            entry.lastFailure = time
            if policy.lockoutThreshold > 0 {
                entry.recent.removeAll { $0 <= time - policy.window }
                entry.recent.append(time)
            }
            if policy.lockoutThreshold > 0, entry.recent.count >= policy.lockoutThreshold {
                entry.lockedUntil = time + policy.lockoutDuration
                entry.recent.removeAll()
                entry.consecutive = 0
                state.lockouts += 1
            }
            state.entries[address] = entry
            return admission(for: entry, at: time)
        }
    }

    /// Records a successful login: the delay starts over, but the failures still count towards a
    /// lockout until they leave the window, so logging in with one's own password between guesses
    /// at another user's does not reset the budget. A lockout in force stays (the caller should
    /// not have let the attempt through).
    public func recordSuccess(_ address: String) {
        let time = now()
        state.withLock { state in
            guard var entry = state.entries[address] else { return }
            if isExpired(entry, at: time) {
                state.entries[address] = nil
                return
            }
            entry.consecutive = 0
            state.entries[address] = entry
        }
    }

    // MARK: Internals (called with the lock held)

    private func delay(afterConsecutive failures: Int) -> Double {
        let burst = max(1, policy.failureBurst)
        guard failures >= burst, policy.failureDelay > 0 else { return 0 }
        // Capped exponent: 2^60 seconds is already far past any sane maxFailureDelay.
        let doubled = policy.failureDelay * Double(UInt64(1) << UInt64(min(failures - burst, 60)))
        return min(doubled, policy.maxFailureDelay)
    }

    private func admission(for entry: Entry, at time: Double) -> AuthAdmission {
        if entry.lockedUntil > time {
            return .lockedOut(retryAfter: entry.lockedUntil - time)
        }
        let until = entry.lastFailure + delay(afterConsecutive: entry.consecutive)
        if entry.consecutive > 0, until > time {
            return .throttled(retryAfter: until - time)
        }
        return .allowed
    }

    /// An entry that no longer affects anything: no lockout, no pending delay, and no failure
    /// recent enough to count towards one.
    private func isExpired(_ entry: Entry, at time: Double) -> Bool {
        let lastRelevant = max(policy.window, delay(afterConsecutive: entry.consecutive))
        return entry.lockedUntil <= time && entry.lastFailure + lastRelevant <= time
    }

    /// Before adding an address to a full table: drop expired entries; if that is not enough,
    /// drop the eighth that failed longest ago, so the sweep's cost is spread over many inserts.
    private func makeRoom(in state: inout State, at time: Double) {
        let limit = max(1, policy.maxTrackedAddresses)
        guard state.entries.count >= limit else { return }
        state.entries = state.entries.filter { !isExpired($0.value, at: time) }
        guard state.entries.count >= limit else { return }
        let excess = state.entries.count - limit + 1
        let batch = max(excess, limit / 8)
        let oldest = state.entries.sorted { latest($0.value) < latest($1.value) }.prefix(batch)
        for (address, _) in oldest { state.entries[address] = nil }
    }

    private func latest(_ entry: Entry) -> Double {
        max(entry.lastFailure, entry.lockedUntil)
    }
}
