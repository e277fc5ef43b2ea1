import MoatProtocol
import MoatStorage

/// The commands an operator may switch off, and `stats` and its groups: decided here once, for the
/// text and the binary protocol alike, which only encode the answer.
extension Session {
    /// Commands that change or reveal the whole server, each behind a setting.
    enum GuardedCommand: String {
        case flushAll = "flush_all"
        case verbosity
        case shutdown
        case refreshCerts = "refresh_certs"
        case cacheMemlimit = "cache_memlimit"
    }

    /// Whether the server's settings allow `command`; every use, allowed or refused, goes to the
    /// security log as a `dangerous_command`.
    func allows(_ command: GuardedCommand) -> Bool {
        let allowed: Bool
        switch command {
        case .flushAll: allowed = engine.settings.flushEnabled
        case .verbosity: allowed = engine.settings.verbosityEnabled
        case .shutdown: allowed = engine.settings.shutdownEnabled
        case .refreshCerts: allowed = true  // the certificates the operator already installed
        case .cacheMemlimit: allowed = false  // -m is fixed at start: not changed from the network
        }
        dangerous(command.rawValue, allowed: allowed)
        return allowed
    }

    /// What a `stats` request is answered with.
    enum StatsAnswer {
        case lines([Stat])
        /// `stats reset` done.
        case reset
        /// `stats detail on|off`: accepted, changing nothing.
        case accepted
        /// Key dumps, other clients' key prefixes and addresses: not offered.
        case refused
        /// A group Moat does not have.
        case unknown
    }

    /// Answers `stats` and its group (`words`), recording what the security log must see.
    mutating func answerStats(_ words: [String]) -> StatsAnswer {
        switch words.first {
        case "reset":
            resetStats()
            return .reset
        case "cachedump":
            engine.securityLog.record(.keyDumpAttempt(peer: peer, command: "stats cachedump"))
            return .refused
        case "detail" where Self.isDetailToggle(words):
            dangerous("stats detail \(words[1])", allowed: true)
            return .accepted
        case "detail", "conns":
            dangerous("stats \(words[0])", allowed: false)
            return .refused
        default:
            return statLines(words.first).map { .lines($0) } ?? .unknown
        }
    }

    /// The stat lines of a `stats` group (nil: unknown group).
    mutating func statLines(_ group: String?) -> [Stat]? {
        switch group {
        case nil:
            publishCounters()
            return engine.statsSnapshot(for: bucket).general(serverWide: grant.permissions.contains(.admin))
        case "settings": return engine.settings.settingsReport.map { Stat($0.0, .text($0.1)) }
        case "items": return StatsSnapshot.items(bucket.cache.counters())
        case "slabs": return StatsSnapshot.slabs(bucket.cache.counters())
        case "buckets": return engine.bucketStats().flatMap(\.lines)
        case "users": return engine.userStats()
        default: return nil
        }
    }

    /// `stats reset`: every bucket's counters for an administrator, only the caller's bucket's otherwise.
    mutating func resetStats() {
        publishCounters()
        if grant.permissions.contains(.admin) {
            engine.resetTotals()
        } else {
            bucket.resetTotals()
        }
    }
}
