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
