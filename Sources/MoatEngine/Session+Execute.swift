import MoatAccess
import MoatProtocol
import MoatStorage
import NIOCore

/// The one executor: every dialect's requests run here. Authentication, permissions, canaries, the
/// guarded commands, size limits, counters and security events are decided once, on the operation;
/// the request's `ReplyForm` picks the encoder that turns each outcome into the dialect's bytes.
/// Adding a command is a decoder case per dialect that speaks it, one case here, and one encoder
/// case per dialect (see docs/architecture.md).
extension Session {
    /// Runs one decoded request. `redeliver`: set when a multi-get paused at the output high-water
    /// mark, so that the decoder hands it over again, from where it stopped.
    @inline(__always)
    mutating func execute(_ request: RequestView, redeliver: inout Bool, into out: inout ByteBuffer)
        -> SessionAction?
    {
        requestsHandled &+= 1
        switch request.reply {
        case .text(let noreply, let withCAS):
            return run(
                request.verb, request.operation, TextReplies(noreply: noreply, withCAS: withCAS), redeliver: &redeliver,
                into: &out)
        case .meta(let form):
            return run(
                request.verb, request.operation, MetaReplies(verb: request.verb, form: form), redeliver: &redeliver,
                into: &out)
        case .binary(let form):
            return run(
                request.verb, request.operation, BinaryReplies(verb: request.verb, form: form), redeliver: &redeliver,
                into: &out)
        }
    }

    private mutating func run<Reply: ReplyEncoder>(
        _ verb: Verb, _ operation: Operation<UnsafeRawBufferPointer>, _ reply: Reply, redeliver: inout Bool,
        into out: inout ByteBuffer
    ) -> SessionAction? {
        guard isAuthenticated || Self.allowedBeforeAuthentication(operation) else {
            return refuseUnauthenticated(verb, operation, reply, into: &out)
        }
        // A resumed multi-get's keys were all authorized when it started (unless the grants changed since).
        let resumed = resumeAuthorizedGeneration
        resumeAuthorizedGeneration = nil
        if restricted, resumed != generationSeen, let category = missing(for: operation) {
            deny(Self.logName(verb, operation), category)
            reply.write(.refused(.permission), into: &out)
            return nil
        }
        if !engine.settings.canaryKeys.isEmpty, let key = Self.keyLearned(operation) { checkCanary(key) }
        let cache = bucket.cache
        switch operation {
        case .get(let key, let options):
            lookUp(key, options, verb, reply, into: &out)

        case .getMany(let keys, let options):
            // One line may name a large value many times: stop at the output high-water mark and
            // resume from the next key once the client has taken what was written.
            for key in TokenList(keys) {
                if out.readableBytes >= outputHighWater, let start = keys.baseAddress, let at = key.baseAddress {
                    resumeKeyOffset = start.distance(to: at)
                    resumeAuthorizedGeneration = generationSeen
                    redeliver = true
                    return .outputFull
                }
                if !engine.settings.canaryKeys.isEmpty { checkCanary(key) }
                lookUp(key, options, verb, reply, into: &out)
            }
            reply.write(.end, into: &out)

        case .store(let key, let value, let options):
            let (outcome, cas) = cache.store(
                StoreMode(options), key: key, value: value, flags: options.flags, exptime: options.ttl,
                compareCAS: options.compareCAS, newCAS: options.newCAS, invalidate: options.invalidate)
            account(outcome, key: key, unlinksStale: verb.unlinksOnRefusedStore)
            if options.verb == .cas { counters.countCAS(outcome) }
            reply.write(Outcome(outcome, cas: cas), key: key, into: &out)

        case .storeTooLarge(let key, _):
            refuseStore(key: key, tooLarge: true, unlinksStale: verb.unlinksOnRefusedStore)
            reply.write(.tooLarge, key: key, into: &out)

        case .delete(let key, let options):
            let outcome = cache.delete(
                key, compareCAS: options.compareCAS, invalidate: options.invalidate, removeValue: options.removeValue,
                newExptime: options.ttl, newCAS: options.newCAS)
            countDelete(outcome, verb, options)
            reply.write(Outcome(outcome), key: key, into: &out)

        case .arithmetic(let key, let options):
            let result = cache.arithmetic(
                key, delta: options.delta, increment: options.increment, compareCAS: options.compareCAS,
                newCAS: options.newCAS, vivifyExptime: options.vivifyTTL, initial: options.initial,
                touchExptime: options.touchTTL)
            countArithmetic(result.outcome, increment: options.increment)
            reply.write(Outcome(result), key: key, into: &out)

        case .touch(let key, let ttl):
            counters.cmdTouch &+= 1
            if let (flags, cas) = cache.touch(key, exptime: ttl, { ($0.flags, $0.cas) }) {
                counters.touchHits &+= 1
                reply.write(.touched(flags: flags, cas: cas), key: key, into: &out)
            } else {
                counters.touchMisses &+= 1
                reply.write(.notFound, key: key, into: &out)
            }

        case .inspect(let key):
            // One named item's metadata: not a key dump (which Moat refuses), as the client must know the key.
            reply.write(cache.inspect(key).map(Outcome.info) ?? .miss, key: key, into: &out)

        case .noop:
            reply.write(.noop, into: &out)

        case .flushAll(let delay):
            guard allows(.flushAll) else {
                reply.write(.refused(.notAllowed(.flushAll)), into: &out)
                return nil
            }
            counters.cmdFlush &+= 1
            cache.flushAll(delay: delay)
            reply.write(.ok, into: &out)

        case .version:
            // Before authentication: the protocol level clients parse, not the build.
            reply.write(.version(isAuthenticated ? engine.settings.version : Self.anonymousVersion), into: &out)

        case .verbosity(let level):
            guard allows(.verbosity) else {
                reply.write(.refused(.notAllowed(.verbosity)), into: &out)
                return nil
            }
            engine.verbosity.store(level, ordering: .relaxed)
            reply.write(.ok, into: &out)

        case .quit:
            reply.write(.quit, into: &out)
            return .close

        case .shutdown:
            guard allows(.shutdown) else {
                reply.write(.refused(.notAllowed(.shutdown)), into: &out)
                return nil
            }
            return .shutdown

        case .stats(let arguments):
            let words = TokenList(arguments).strings
            reply.write(.stats(answerStats(words), arguments: words), into: &out)

        case .lruCrawler(let arguments):
            let first = TokenList(arguments).first.map { String(decoding: $0, as: UTF8.self) }
            if let first, first == "metadump" || first == "mgdump" {
                engine.securityLog.record(.keyDumpAttempt(peer: peer, command: "lru_crawler \(first)"))
                reply.write(.refused(.keyDump(.lruCrawler)), into: &out)
            } else {
                reply.write(.refused(.unsupported(.lruCrawler)), into: &out)
            }

        case .watch:
            // A live feed of other clients' keys: a dump by another name.
            engine.securityLog.record(.keyDumpAttempt(peer: peer, command: "watch"))
            reply.write(.refused(.keyDump(.watch)), into: &out)

        case .refreshCerts:
            guard let reload = engine.certificateReloader else {
                reply.write(.refused(.tlsNotEnabled), into: &out)
                return nil
            }
            _ = allows(.refreshCerts)
            reply.write(.certificatesRefreshed(reload() == nil), into: &out)

        case .cacheMemlimit:
            _ = allows(.cacheMemlimit)
            reply.write(.refused(.notAllowed(.cacheMemlimit)), into: &out)

        case .saslListMechanisms, .saslStart, .saslStep, .saslMechanismTooLong:
            return authenticate(operation, reply, into: &out)

        case .error(let error):
            return protocolError(error, reply, into: &out)
        }
        return nil
    }

    /// A lookup of one key (a get, gat or mg, or one key of a multi-get); a hit is written while its
    /// shard is locked.
    @inline(__always)
    private mutating func lookUp<Reply: ReplyEncoder>(
        _ key: UnsafeRawBufferPointer, _ options: GetOptions, _ verb: Verb, _ reply: Reply, into out: inout ByteBuffer
    ) {
        var lookup = LookupOptions()
        lookup.bump = options.bump
        lookup.touchExptime = options.touchTTL
        lookup.vivifyExptime = options.vivifyTTL
        lookup.recacheExptime = options.recacheTTL
        lookup.newCAS = options.newCAS
        lookup.grantsTokens = options.grantsTokens
        let hit = bucket.cache.lookup(key, lookup) { item in reply.write(.hit(item), key: key, into: &out) } != nil
        if !hit { reply.write(.miss, key: key, into: &out) }
        countLookup(hit: hit, verb, touches: options.touchTTL != nil)
    }

    /// Counts a protocol error and answers it; closes as its disposition says.
    mutating func protocolError<Reply: ReplyEncoder>(
        _ error: ErrorReply, _ reply: Reply, into out: inout ByteBuffer
    ) -> SessionAction? {
        counters.protocolErrors &+= 1
        reply.write(.error(error), into: &out)
        return error.disposition == .reply ? nil : .close
    }

    /// The key whose existence a single-key command learns (add's NOT_STORED, touch's TOUCHED): a canary
    /// read. A plain set reveals nothing and is how canaries are planted; a multi-get checks each key as it goes.
    static func keyLearned(_ operation: Operation<UnsafeRawBufferPointer>) -> UnsafeRawBufferPointer? {
        switch operation {
        case .get(let key, _), .delete(let key, _), .arithmetic(let key, _), .touch(let key, _), .inspect(let key):
            return key
        case .store(let key, _, let options), .storeTooLarge(let key, let options):
            return options.verb == .set ? nil : key
        default:
            return nil
        }
    }
}

extension StoreMode {
    /// The cache's store for a request's options (a compare-and-swap carries the unique it compares).
    @inline(__always)
    init(_ options: StoreOptions) {
        switch options.verb {
        case .set: self = .set
        case .add: self = .add
        case .replace: self = .replace
        case .append: self = .append
        case .prepend: self = .prepend
        case .cas: self = .cas(options.compareCAS ?? 0)
        }
    }
}
