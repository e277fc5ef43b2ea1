#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock seconds, injected so that expiry can be tested without sleeping.
public protocol CacheClock: Sendable {
    /// Seconds since the Unix epoch.
    func now() -> Int64
}

public struct SystemClock: CacheClock {
    public init() {}
    public func now() -> Int64 { Int64(time(nil)) }
}

/// memcached's expiry rules, turned into an absolute deadline.
public enum Expiry {
    /// Relative expiries up to this many seconds; anything larger is an absolute Unix time.
    public static let relativeLimit: Int64 = 60 * 60 * 24 * 30

    /// 0 means never; negative means already expired; up to 30 days is relative to `now`;
    /// above that an absolute Unix time. Returns 0 for "never", otherwise the second at which
    /// the item stops being visible.
    public static func deadline(for exptime: Int64, now: Int64) -> Int64 {
        if exptime == 0 { return 0 }
        if exptime < 0 { return now - 1 < 1 ? 1 : now - 1 }
        if exptime <= relativeLimit { return now + exptime }
        // An absolute time in the past is "already expired", which a deadline <= now expresses.
        return exptime
    }
}
