/// What a request asks of the cache or the server, whichever dialect carried it: a classic text
/// command, a meta command, a binary request, or a text command in a UDP frame. Meta is the superset,
/// so its flags name the options: a classic `gat` is a get with a touch TTL, a binary set whose
/// header carries a CAS is a `cas`, and `ma` with `N` and a binary incr with an expiry both create
/// a missing counter. How the reply looks is not here but in the request's `ReplyForm`.
///
/// Generic over its bytes: the decoders hand out `Operation<UnsafeRawBufferPointer>` pointing into
/// the input buffer (valid only inside their callback, no copy); `map { Array($0) }` makes an owned,
/// comparable copy for tests and tools.
public enum Operation<Bytes> {
    /// One key: `mg`, binary get/getk/gat/gatk and their quiet forms.
    case get(key: Bytes, GetOptions)
    /// Space-separated keys (`get`, `gets`, `gat`, `gats`): each answered as a `get`, then the end of the list.
    case getMany(keys: Bytes, GetOptions)
    case store(key: Bytes, value: Bytes, StoreOptions)
    /// A store whose value is over `-I`: refused from its command line or header; the value is being
    /// swallowed, never buffered.
    case storeTooLarge(key: Bytes, StoreOptions)
    case delete(key: Bytes, DeleteOptions)
    case arithmetic(key: Bytes, ArithmeticOptions)
    case touch(key: Bytes, ttl: Int64)
    /// One named item's metadata (`me`).
    case inspect(key: Bytes)
    /// `mn`, binary noop.
    case noop
    case flushAll(delay: Int64)
    case version
    case verbosity(level: UInt32)
    case quit
    case shutdown
    /// `stats` and its arguments (binary: the request's key), space separated.
    case stats(arguments: Bytes)
    case lruCrawler(arguments: Bytes)
    /// memcached's live stream of other clients' commands and keys (refused by Moat).
    case watch
    /// Reload the TLS certificate files (memcached's `refresh_certs`).
    case refreshCerts
    case cacheMemlimit(megabytes: UInt64)
    case saslListMechanisms
    /// A new SASL exchange: the mechanism's name and the client's first message.
    case saslStart(mechanism: Bytes, data: Bytes)
    /// The client's next message in the exchange under way.
    case saslStep(data: Bytes)
    /// A SASL request naming a mechanism longer than any (over 32 bytes): its body is skipped unread.
    case saslMechanismTooLong
    /// What decoded only as an error, with what happens to the connection after it is answered.
    case error(ErrorReply)

    public func map<Other>(_ transform: (Bytes) -> Other) -> Operation<Other> {
        switch self {
        case .get(let key, let options): return .get(key: transform(key), options)
        case .getMany(let keys, let options): return .getMany(keys: transform(keys), options)
        case .store(let key, let value, let options):
            return .store(key: transform(key), value: transform(value), options)
        case .storeTooLarge(let key, let options): return .storeTooLarge(key: transform(key), options)
        case .delete(let key, let options): return .delete(key: transform(key), options)
        case .arithmetic(let key, let options): return .arithmetic(key: transform(key), options)
        case .touch(let key, let ttl): return .touch(key: transform(key), ttl: ttl)
        case .inspect(let key): return .inspect(key: transform(key))
        case .noop: return .noop
        case .flushAll(let delay): return .flushAll(delay: delay)
        case .version: return .version
        case .verbosity(let level): return .verbosity(level: level)
        case .quit: return .quit
        case .shutdown: return .shutdown
        case .stats(let arguments): return .stats(arguments: transform(arguments))
        case .lruCrawler(let arguments): return .lruCrawler(arguments: transform(arguments))
        case .watch: return .watch
        case .refreshCerts: return .refreshCerts
        case .cacheMemlimit(let megabytes): return .cacheMemlimit(megabytes: megabytes)
        case .saslListMechanisms: return .saslListMechanisms
        case .saslStart(let mechanism, let data):
            return .saslStart(mechanism: transform(mechanism), data: transform(data))
        case .saslStep(let data): return .saslStep(data: transform(data))
        case .saslMechanismTooLong: return .saslMechanismTooLong
        case .error(let reply): return .error(reply)
        }
    }
}

extension Operation: Equatable where Bytes: Equatable {}
extension Operation: Sendable where Bytes: Sendable {}

/// What a lookup may do besides reading the item.
public struct GetOptions: Sendable, Equatable {
    /// A new expiry for a hit: `gat`, binary gat, `mg` with `T`.
    public var touchTTL: Int64?
    /// `mg N`: on a miss, create an empty item with this expiry and tell this client it won the right to fill it.
    public var vivifyTTL: Int64?
    /// `mg R`: a hit whose TTL left is below this wins the right to recache it.
    public var recacheTTL: Int64?
    /// `mg E`: the CAS unique of an item created on a miss (0: the cache's own).
    public var newCAS: UInt64 = 0
    /// False for `mg u`: no LRU bump, no access time, not marked as fetched.
    public var bump = true
    /// Stale items and recache tokens are handed out (`mg`: only meta replies can tell a client it won).
    public var grantsTokens = false

    public init(
        touchTTL: Int64? = nil, vivifyTTL: Int64? = nil, recacheTTL: Int64? = nil, newCAS: UInt64 = 0,
        bump: Bool = true, grantsTokens: Bool = false
    ) {
        self.touchTTL = touchTTL
        self.vivifyTTL = vivifyTTL
        self.recacheTTL = recacheTTL
        self.newCAS = newCAS
        self.bump = bump
        self.grantsTokens = grantsTokens
    }

    /// Whether the lookup changes the item as well (a new TTL, or one created on a miss).
    public var writes: Bool { touchTTL != nil || vivifyTTL != nil }
}

/// The storage commands: memcached's set, add, replace, append, prepend, and `cas`, the
/// compare-and-swap that every dialect reaches its own way (text `cas`; `ms` with `C` in set or
/// replace mode; a binary set, add or replace whose header carries a CAS).
public enum StoreVerb: Sendable, Equatable {
    case set, add, replace, append, prepend, cas
}

public struct StoreOptions: Sendable, Equatable {
    public var verb: StoreVerb
    /// The client's flags (ignored by append and prepend, which keep the item's).
    public var flags: UInt32 = 0
    public var ttl: Int64 = 0
    /// `cas`: the unique the item must still have. append/prepend: checked when given (binary, `ms C`).
    public var compareCAS: UInt64?
    /// `ms E`: the stored item's CAS unique (0: the cache's own).
    public var newCAS: UInt64 = 0
    /// `ms I`: a CAS older than the item's still stores, as a stale item.
    public var invalidate = false

    public init(
        verb: StoreVerb, flags: UInt32 = 0, ttl: Int64 = 0, compareCAS: UInt64? = nil, newCAS: UInt64 = 0,
        invalidate: Bool = false
    ) {
        self.verb = verb
        self.flags = flags
        self.ttl = ttl
        self.compareCAS = compareCAS
        self.newCAS = newCAS
        self.invalidate = invalidate
    }
}

public struct DeleteOptions: Sendable, Equatable {
    /// Delete only an item with this CAS unique (binary header, `md C`).
    public var compareCAS: UInt64?
    /// `md I`: mark the item stale instead of removing it.
    public var invalidate = false
    /// `md x`: keep the item with an empty value.
    public var removeValue = false
    /// `md I T`: the stale item's new TTL.
    public var ttl: Int64?
    /// `md E`: the item's new CAS unique when it stays.
    public var newCAS: UInt64 = 0

    public init(
        compareCAS: UInt64? = nil, invalidate: Bool = false, removeValue: Bool = false, ttl: Int64? = nil,
        newCAS: UInt64 = 0
    ) {
        self.compareCAS = compareCAS
        self.invalidate = invalidate
        self.removeValue = removeValue
        self.ttl = ttl
        self.newCAS = newCAS
    }
}

public struct ArithmeticOptions: Sendable, Equatable {
    public var increment: Bool
    public var delta: UInt64
    /// The value of a counter created on a miss.
    public var initial: UInt64 = 0
    /// Create a missing counter with this TTL (`ma N`; binary incr/decr unless its expiry is 0xffffffff).
    public var vivifyTTL: Int64?
    /// Only when the item has this CAS unique (binary header, `ma C`).
    public var compareCAS: UInt64?
    /// `ma E`: the counter's new CAS unique.
    public var newCAS: UInt64 = 0
    /// `ma T`: the counter's new TTL.
    public var touchTTL: Int64?

    public init(
        increment: Bool, delta: UInt64, initial: UInt64 = 0, vivifyTTL: Int64? = nil, compareCAS: UInt64? = nil,
        newCAS: UInt64 = 0, touchTTL: Int64? = nil
    ) {
        self.increment = increment
        self.delta = delta
        self.initial = initial
        self.vivifyTTL = vivifyTTL
        self.compareCAS = compareCAS
        self.newCAS = newCAS
        self.touchTTL = touchTTL
    }
}
