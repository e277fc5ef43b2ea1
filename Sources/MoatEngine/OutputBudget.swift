import Synchronization

/// Reply bytes held for clients that stopped reading them, across every connection (`-o output_budget`).
/// One connection's held output is bounded (the session's high-water mark plus one value), but a
/// thousand stalled readers would still hold gigabytes: a connection whose stall would take the total
/// past the budget is closed instead.
public final class OutputBudget: Sendable {
    /// Bytes; 0: no global budget (only the per-connection bound and `-o output_timeout`).
    public let limit: Int
    private let held = Atomic<Int>(0)

    public init(limit: Int) { self.limit = max(0, limit) }

    public var bytesHeld: Int { held.load(ordering: .relaxed) }

    /// Charges `bytes`; false (charging nothing) when that would pass the limit.
    public func charge(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        let total = held.wrappingAdd(bytes, ordering: .relaxed).newValue
        if limit > 0, total > limit {
            held.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    public func release(_ bytes: Int) {
        if bytes > 0 { held.wrappingSubtract(bytes, ordering: .relaxed) }
    }
}
