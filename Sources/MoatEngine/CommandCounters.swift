import MoatStorage

/// Per-command counters with memcached's meanings. A session counts into its own copy and merges
/// it into the shared totals once per batch of input, so the hot path takes no lock per command.
public struct CommandCounters: Sendable, Equatable {
    public var cmdGet: UInt64 = 0
    public var cmdSet: UInt64 = 0
    public var cmdFlush: UInt64 = 0
    public var cmdTouch: UInt64 = 0
    public var getHits: UInt64 = 0
    public var getMisses: UInt64 = 0
    public var deleteHits: UInt64 = 0
    public var deleteMisses: UInt64 = 0
    public var incrHits: UInt64 = 0
    public var incrMisses: UInt64 = 0
    public var decrHits: UInt64 = 0
    public var decrMisses: UInt64 = 0
    public var casHits: UInt64 = 0
    public var casMisses: UInt64 = 0
    public var casBadval: UInt64 = 0
    public var touchHits: UInt64 = 0
    public var touchMisses: UInt64 = 0
    public var storeTooLarge: UInt64 = 0
    public var storeNoMemory: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    public var protocolErrors: UInt64 = 0

    public init() {}

    public var isZero: Bool { self == CommandCounters() }

    /// memcached's cas_hits / cas_badval / cas_misses for the outcome of a compare-and-swap (any protocol).
    mutating func countCAS(_ outcome: StoreOutcome) {
        switch outcome {
        case .stored: casHits &+= 1
        case .exists: casBadval &+= 1
        case .notFound: casMisses &+= 1
        default: break
        }
    }

    public mutating func add(_ other: CommandCounters) {
        cmdGet &+= other.cmdGet
        cmdSet &+= other.cmdSet
        cmdFlush &+= other.cmdFlush
        cmdTouch &+= other.cmdTouch
        getHits &+= other.getHits
        getMisses &+= other.getMisses
        deleteHits &+= other.deleteHits
        deleteMisses &+= other.deleteMisses
        incrHits &+= other.incrHits
        incrMisses &+= other.incrMisses
        decrHits &+= other.decrHits
        decrMisses &+= other.decrMisses
        casHits &+= other.casHits
        casMisses &+= other.casMisses
        casBadval &+= other.casBadval
        touchHits &+= other.touchHits
        touchMisses &+= other.touchMisses
        storeTooLarge &+= other.storeTooLarge
        storeNoMemory &+= other.storeNoMemory
        bytesRead &+= other.bytesRead
        bytesWritten &+= other.bytesWritten
        protocolErrors &+= other.protocolErrors
    }
}
