import MoatProtocol
import MoatStorage
import NIOCore

/// What running one operation came to, whichever dialect asked: the executor decides it once and the
/// request's `ReplyEncoder` turns it into that dialect's bytes. A hit is handed over while its shard is
/// locked, so that its value is written from the item's memory (no copy): an outcome lives only for
/// the encoder's call.
enum Outcome {
    /// A lookup found the item (get, gat, mg).
    case hit(ItemDetails)
    /// A lookup, or `me`, found nothing.
    case miss
    /// The end of a text multi-get.
    case end
    case stored(cas: UInt64)
    case notStored
    case exists
    case notFound
    /// A value over `-I`.
    case tooLarge
    case noMemory
    case deleted
    /// An incr or decr's result (`created`: the counter was made on a miss).
    case number(UInt64, cas: UInt64, ttl: Int64, created: Bool)
    case nonNumeric
    case touched(flags: UInt32, cas: UInt64)
    /// One item's metadata (`me`).
    case info(ItemInfo)
    case noop
    /// flush_all or verbosity done.
    case ok
    case quit
    case version(String)
    case stats(Session.StatsAnswer, arguments: [String])
    /// refresh_certs: whether the certificates reloaded.
    case certificatesRefreshed(Bool)
    case refused(Refusal)
    case authenticated
    case authenticationFailed
    case saslMechanisms([UInt8])
    case saslChallenge([UInt8])
    /// A protocol error (the connection's fate is the executor's, from the error's disposition).
    case error(ErrorReply)

    /// A store's outcome, with the stored item's CAS unique.
    init(_ outcome: StoreOutcome, cas: UInt64) {
        switch outcome {
        case .stored: self = .stored(cas: cas)
        case .notStored: self = .notStored
        case .exists: self = .exists
        case .notFound: self = .notFound
        case .tooLarge: self = .tooLarge
        case .noMemory: self = .noMemory
        }
    }

    init(_ outcome: DeleteOutcome) {
        switch outcome {
        case .deleted: self = .deleted
        case .notFound: self = .notFound
        case .exists: self = .exists
        }
    }

    init(_ result: ArithmeticResult) {
        switch result.outcome {
        case .value(let value): self = .number(value, cas: result.cas, ttl: result.ttl, created: false)
        case .created(let value): self = .number(value, cas: result.cas, ttl: result.ttl, created: true)
        case .notFound: self = .notFound
        case .notStored: self = .notStored
        case .exists: self = .exists
        case .nonNumeric: self = .nonNumeric
        case .noMemory: self = .noMemory
        }
    }
}

/// Why a request was not run.
enum Refusal {
    /// The user's grant lacks the category the command needs.
    case permission
    /// The connection has not authenticated.
    case unauthenticated
    /// The operator switched the command off (or, for cache_memlimit, Moat never serves it).
    case notAllowed(Session.GuardedCommand)
    /// A command that lists other clients' keys (lru_crawler metadump, watch).
    case keyDump(Verb)
    /// lru_crawler's other subcommands.
    case unsupported(Verb)
    /// refresh_certs without TLS.
    case tlsNotEnabled
}

/// One dialect's replies: constructed per request from its `ReplyForm` (what it echoes, whether it
/// is quiet), it writes each outcome as that dialect answers it.
protocol ReplyEncoder {
    /// Whether a store may carry memcached's ASCII authentication ("user password" as its value):
    /// the text protocol's, and meta's by extension; binary clients use SASL.
    var carriesASCIIAuthentication: Bool { get }

    /// Writes `outcome` for the request's `key` (the one looked up, for a multi-get; empty when none).
    func write(_ outcome: Outcome, key: UnsafeRawBufferPointer, into out: inout ByteBuffer)
}

extension ReplyEncoder {
    /// For outcomes that concern no key.
    @inline(__always)
    func write(_ outcome: Outcome, into out: inout ByteBuffer) {
        write(outcome, key: UnsafeRawBufferPointer(start: nil, count: 0), into: &out)
    }
}
