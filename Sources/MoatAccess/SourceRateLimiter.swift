import Synchronization

/// Per-source token buckets in datagrams and bytes (UDP): a source may send `datagramsPerSecond` and
/// `bytesPerSecond` on average, with bursts of one second's worth. The table of sources is bounded:
/// when it is full, idle sources are forgotten, and a new source that still finds no room is refused
/// (failing closed: spoofed addresses must not grow memory).
public final class SourceRateLimiter: Sendable {
    public struct Limits: Sendable, Equatable {
        public var datagramsPerSecond: Double
        public var bytesPerSecond: Double
        public var maximumSources: Int

        public init(
            datagramsPerSecond: Double = 1000, bytesPerSecond: Double = 256 * 1024, maximumSources: Int = 65_536
        ) {
            self.datagramsPerSecond = datagramsPerSecond
            self.bytesPerSecond = bytesPerSecond
            self.maximumSources = maximumSources
        }
    }

    struct Bucket {
        var datagrams: Double
        var bytes: Double
        var updated: Double
    }

    public let limits: Limits
    private let now: @Sendable () -> Double
    private let table = Mutex<[String: Bucket]>([:])

    public init(limits: Limits, now: @escaping @Sendable () -> Double) {
        self.limits = limits
        self.now = now
    }

    /// True when `source` may send a datagram of `bytes` now (and the tokens are taken).
    public func admit(_ source: String, bytes: Int) -> Bool {
        let time = now()
        let limits = self.limits
        return table.withLock { table in
            var bucket: Bucket
            if let existing = table[source] {
                bucket = existing
                let elapsed = max(0, time - bucket.updated)
                bucket.datagrams = min(
                    limits.datagramsPerSecond, bucket.datagrams + elapsed * limits.datagramsPerSecond)
                bucket.bytes = min(limits.bytesPerSecond, bucket.bytes + elapsed * limits.bytesPerSecond)
            } else {
                if table.count >= limits.maximumSources {
                    // Sources idle for a second are full again: forgetting them changes nothing.
                    table = table.filter { time - $0.value.updated < 1 }
                    guard table.count < limits.maximumSources else { return false }
                }
                bucket = Bucket(datagrams: limits.datagramsPerSecond, bytes: limits.bytesPerSecond, updated: time)
            }
            bucket.updated = time
            let cost = Double(bytes)
            guard bucket.datagrams >= 1, bucket.bytes >= cost else {
                table[source] = bucket
                return false
            }
            bucket.datagrams -= 1
            bucket.bytes -= cost
            table[source] = bucket
            return true
        }
    }

    public var trackedSources: Int { table.withLock { $0.count } }
}
