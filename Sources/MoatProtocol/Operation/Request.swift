/// One decoded request of any dialect: the command as the client named it, what it asks for, and
/// how its reply must look. Borrowed (`RequestView`) as the decoders hand it out, owned
/// (`OwnedRequest`) for tests and tools.
public struct Request<Bytes> {
    /// The command as sent (for the security log and for memcached's accounting, which depends on
    /// the command as well as on what it does).
    public var verb: Verb
    public var operation: Operation<Bytes>
    public var reply: ReplyForm<Bytes>

    public init(_ verb: Verb, _ operation: Operation<Bytes>, reply: ReplyForm<Bytes>) {
        self.verb = verb
        self.operation = operation
        self.reply = reply
    }

    public func map<Other>(_ transform: (Bytes) -> Other) -> Request<Other> {
        Request<Other>(verb, operation.map(transform), reply: reply.map(transform))
    }

    /// A copy that owns its bytes. Its lists (a multi-get's keys, `stats` arguments, meta flag tokens)
    /// are spaced canonically, one space between tokens: spacing carries no meaning on the wire.
    public func owned() -> OwnedRequest where Bytes == UnsafeRawBufferPointer {
        func list(_ bytes: UnsafeRawBufferPointer) -> [UInt8] { Array(TokenList(bytes).joined(separator: [0x20])) }
        var copy = map { Array($0) }
        switch operation {
        case .getMany(let keys, let options): copy.operation = .getMany(keys: list(keys), options)
        case .stats(let arguments): copy.operation = .stats(arguments: list(arguments))
        case .lruCrawler(let arguments): copy.operation = .lruCrawler(arguments: list(arguments))
        default: break
        }
        if case .meta(let form) = reply {
            copy.reply = .meta(MetaReturn(tokens: list(form.tokens), letters: form.letters))
        }
        return copy
    }
}

extension Request: Equatable where Bytes: Equatable {}
extension Request: Sendable where Bytes: Sendable {}

/// A request whose bytes point into the decoder's input: valid only inside the decoder's callback.
public typealias RequestView = Request<UnsafeRawBufferPointer>
public typealias OwnedRequest = Request<[UInt8]>

/// The commands of every dialect, by the name the client used.
public enum Verb: UInt8, Sendable, Equatable, CaseIterable {
    case get, gets, gat, gats, set, add, replace, append, prepend, cas, delete, incr, decr, touch
    case flushAll, version, verbosity, quit, shutdown, stats, lruCrawler, watch, refreshCerts, cacheMemlimit
    case mg, ms, md, ma, mn, me
    /// Binary only.
    case noop, saslListMechanisms, saslAuth, saslStep
    /// Nothing that decoded as a command.
    case none

    public var name: String {
        switch self {
        case .flushAll: return "flush_all"
        case .lruCrawler: return "lru_crawler"
        case .refreshCerts: return "refresh_certs"
        case .cacheMemlimit: return "cache_memlimit"
        case .saslListMechanisms: return "sasl_list_mechs"
        case .saslAuth: return "sasl_auth"
        case .saslStep: return "sasl_step"
        default: return "\(self)"
        }
    }

    /// The text protocol's storage command of that name.
    public init(_ store: StoreVerb) {
        switch store {
        case .set: self = .set
        case .add: self = .add
        case .replace: self = .replace
        case .append: self = .append
        case .prepend: self = .prepend
        case .cas: self = .cas
        }
    }
}

/// How a request's reply is shaped: which dialect answers, and what it echoes of the request.
public enum ReplyForm<Bytes> {
    /// Classic text: `noreply` silences the reply; `gets` and `gats` report CAS uniques.
    case text(noreply: Bool, withCAS: Bool)
    case meta(MetaReturn<Bytes>)
    case binary(BinaryReturn)

    public func map<Other>(_ transform: (Bytes) -> Other) -> ReplyForm<Other> {
        switch self {
        case .text(let noreply, let withCAS): return .text(noreply: noreply, withCAS: withCAS)
        case .meta(let meta): return .meta(MetaReturn(tokens: transform(meta.tokens), letters: meta.letters))
        case .binary(let binary): return .binary(binary)
        }
    }
}

extension ReplyForm: Equatable where Bytes: Equatable {}
extension ReplyForm: Sendable where Bytes: Sendable {}

/// What a meta reply reports and echoes: the flag tokens in request order (`O` and `k` come back as
/// sent, `s t c f l h` report the item), and which letters were given.
public struct MetaReturn<Bytes> {
    public var tokens: Bytes
    public var letters: MetaLetters

    public init(tokens: Bytes, letters: MetaLetters) {
        self.tokens = tokens
        self.letters = letters
    }

    /// `q`: the nominal reply (HD, or EN for mg) is not sent.
    public var quiet: Bool { letters.has("q") }
    /// `b`: the key was sent base64-encoded and goes back so.
    public var base64Key: Bool { letters.has("b") }
}

extension MetaReturn: Equatable where Bytes: Equatable {}
extension MetaReturn: Sendable where Bytes: Sendable {}

/// The flag letters of a meta request, one bit each ("A" through "z" fit in 58 bits).
public struct MetaLetters: Sendable, Equatable {
    public private(set) var bits: UInt64 = 0

    public init() {}

    @inline(__always)
    static func bit(_ letter: UInt8) -> UInt64 { 1 << UInt64(letter &- 0x41) }

    @inline(__always)
    public func has(_ letter: Unicode.Scalar) -> Bool { bits & Self.bit(UInt8(letter.value)) != 0 }

    @inline(__always)
    func contains(_ letter: UInt8) -> Bool { bits & Self.bit(letter) != 0 }

    mutating func insert(_ letter: UInt8) { bits |= Self.bit(letter) }
}

/// What a binary reply echoes: the request's header (its opcode and opaque), whether the opcode is
/// a quiet one, and whether a get's reply carries the key (getk, gatk).
public struct BinaryReturn: Sendable, Equatable {
    public var header: BinaryHeader
    public var quiet: Bool
    public var includeKey: Bool

    public init(header: BinaryHeader, quiet: Bool = false, includeKey: Bool = false) {
        self.header = header
        self.quiet = quiet
        self.includeKey = includeKey
    }
}
