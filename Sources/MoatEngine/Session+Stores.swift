import MoatProtocol
import MoatStorage

/// How every dialect accounts for a store, in one place (text, binary and meta used to count
/// refused stores differently). As memcached: `cmd_set` counts the stores that reached the cache,
/// whatever they answered; one refused for its size or for memory is a `store_too_large` or a
/// `store_no_memory` and not a `cmd_set`, and it takes the key's previous value out where memcached
/// does (a text or binary `set`, any meta `ms`: `unlinksStale`), so that the old value does not look
/// current after the client was told its write failed.
extension Session {
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
}

/// Which store each dialect's request is, in one place.
extension StoreMode {
    /// A text or binary storage verb; `cas` is what text's `cas` compares (binary turns set, add and
    /// replace into a CAS itself when its header carries one).
    init(_ verb: StoreVerb, cas: UInt64) {
        switch verb {
        case .set: self = .set
        case .add: self = .add
        case .replace: self = .replace
        case .append: self = .append
        case .prepend: self = .prepend
        case .cas: self = .cas(cas)
        }
    }

    /// Meta set's `M` flag (`E` add, `A` append, `P` prepend, `R` replace; anything else, `S`, is set).
    init(metaMode letter: UInt8) {
        switch letter {
        case UInt8(ascii: "E"): self = .add
        case UInt8(ascii: "A"): self = .append
        case UInt8(ascii: "P"): self = .prepend
        case UInt8(ascii: "R"): self = .replace
        default: self = .set
        }
    }
}
