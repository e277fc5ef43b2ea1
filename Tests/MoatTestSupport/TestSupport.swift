import MoatStorage
import Synchronization

// What several test targets need: clocks a test moves by hand (no sleeping), a reproducible random
// generator and bytes from text. One copy here, a dependency of each test target that uses it.

/// The cache's wall clock (whole seconds since the epoch), moved by hand.
public final class ManualClock: CacheClock {
    private let time: Mutex<Int64>

    public init(_ start: Int64 = 1_700_000_000) { time = Mutex(start) }

    public func now() -> Int64 { time.withLock { $0 } }

    public func advance(by seconds: Int64) { time.withLock { $0 += seconds } }

    public func set(_ value: Int64) { time.withLock { $0 = value } }
}

/// A monotonic clock in fractional seconds (the guessing throttle's, the UDP rate limiter's), moved by hand.
public final class ManualSeconds: Sendable {
    private let time: Mutex<Double>

    public init(_ start: Double = 1000) { time = Mutex(start) }

    public func now() -> Double { time.withLock { $0 } }

    public func advance(_ seconds: Double) { time.withLock { $0 += seconds } }
}

/// SplitMix64: a small deterministic generator for reproducible random tests.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The UTF-8 bytes of `text`.
public func b(_ text: String) -> [UInt8] { Array(text.utf8) }
