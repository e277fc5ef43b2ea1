import MoatProtocol
import MoatStorage

/// memcached's counters, kept the same way for every dialect. Where memcached counts by the command
/// as well as by what it did, the rule says so (`Verb`).
extension Session {
    /// As memcached: `cmd_set` counts the stores that reached the cache, whatever they answered; one
    /// refused for its size or for memory is a `store_too_large` or a `store_no_memory` and not a
    /// `cmd_set`, and it takes the key's previous value out where memcached does (`unlinksStale`), so
    /// that the old value does not look current after the client was told its write failed.
    @inline(__always)
    mutating func account(_ outcome: StoreOutcome, key: UnsafeRawBufferPointer, unlinksStale: Bool) {
        switch outcome {
        case .tooLarge: refuseStore(key: key, tooLarge: true, unlinksStale: unlinksStale)
        case .noMemory: refuseStore(key: key, tooLarge: false, unlinksStale: unlinksStale)
        case .stored, .notStored, .exists, .notFound: counters.cmdSet &+= 1
        }
    }

    /// A store refused for its size or for memory, whether by the decoder (a value over `-I`, its
    /// data skipped) or by the cache.
    mutating func refuseStore(key: UnsafeRawBufferPointer, tooLarge: Bool, unlinksStale: Bool) {
        if tooLarge { counters.storeTooLarge &+= 1 } else { counters.storeNoMemory &+= 1 }
        if unlinksStale { _ = bucket.cache.delete(key) }
    }

    /// A lookup: memcached counts gat as a get and a touch, and an mg with T as a touch only.
    @inline(__always)
    mutating func countLookup(hit: Bool, _ verb: Verb, touches: Bool) {
        if !(touches && verb == .mg) {
            counters.cmdGet &+= 1
            if hit { counters.getHits &+= 1 } else { counters.getMisses &+= 1 }
        }
        if touches {
            counters.cmdTouch &+= 1
            if hit { counters.touchHits &+= 1 } else { counters.touchMisses &+= 1 }
        }
    }

    /// A delete: an item marked stale (md I) is no delete hit; a CAS that differs is a miss for md
    /// and nothing for the binary protocol's delete, as memcached.
    mutating func countDelete(_ outcome: DeleteOutcome, _ verb: Verb, _ options: DeleteOptions) {
        switch outcome {
        case .deleted: if !options.invalidate { counters.deleteHits &+= 1 }
        case .notFound: counters.deleteMisses &+= 1
        case .exists: if verb == .md { counters.deleteMisses &+= 1 }
        }
    }

    /// incr and decr: a counter created on a miss is neither a hit nor a miss, as memcached.
    mutating func countArithmetic(_ outcome: ArithmeticResult.Outcome, increment: Bool) {
        switch outcome {
        case .value:
            if increment { counters.incrHits &+= 1 } else { counters.decrHits &+= 1 }
        case .notFound:
            if increment { counters.incrMisses &+= 1 } else { counters.decrMisses &+= 1 }
        case .noMemory:
            counters.storeNoMemory &+= 1
        case .created, .notStored, .exists, .nonNumeric:
            break
        }
    }
}

extension Verb {
    /// A store refused for its size or for memory takes the key's old value out: memcached does so
    /// for set (text and binary, not cas) and for every ms.
    var unlinksOnRefusedStore: Bool { self == .set || self == .ms }
}
