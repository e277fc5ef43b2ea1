import MoatAccess
import MoatProtocol
import MoatStorage
import NIOCore

/// What the connection should do after a call to `Session.process`.
public enum SessionAction: Sendable, Equatable {
    /// All complete requests were answered; read more input.
    case needInput
    /// The output reached its high-water mark; flush it, then call `process` again.
    case outputFull
    /// Flush what was written, then close the connection.
    case close
    /// Flush, close, and stop the server (`shutdown` with `-A`).
    case shutdown
}

/// One connection's protocol state: decodes requests, runs them against the cache, encodes replies.
/// Synchronous and free of channels, so it can be driven byte by byte in tests.
public struct Session {
    public let engine: Engine
    var decoder: TextDecoder
    var binaryDecoder: BinaryDecoder
    var counters = CommandCounters()
    private var sniffed = false
    /// Where the paused multi-get stopped: bytes into the keys it was handed (the decoder resumes there
    /// without walking, validating or authorizing the answered keys again).
    private var resumeKeyOffset: Int?
    /// The tenancy generation under which the paused multi-get's keys were authorized (nil: not paused).
    private var resumeAuthorizedGeneration: Int?
    /// Decided by the first byte (`-B auto`) or by `-B`, for the connection's lifetime.
    private var speaksBinary = false
    /// True while the decoders hold the tighter limits of an unauthenticated connection.
    var limitedBeforeAuthentication = false
    /// Past this many buffered reply bytes, `process` stops so the caller can flush (and apply back-pressure).
    public var outputHighWater = 256 * 1024

    let counterSlot: Int

    /// The client's address (no port), for the log.
    public let peer: String
    /// What the guessing throttle counts this client's failures under (its IPv6 /64, or its IPv4 address).
    let throttleKey: String
    /// True once the client has authenticated, or from the start when authentication is off.
    public internal(set) var isAuthenticated: Bool
    /// A reload removed this session's user or moved it to another bucket (`revalidate`): the connection
    /// closes, for the reason `access_revoked`.
    public internal(set) var accessRevoked = false
    /// Failed or refused attempts on this connection; it is closed at the configured maximum.
    var authFailures = 0
    /// A SASL exchange waiting for the client's next step.
    var sasl: SASLExchange?
    var saslMechanism = SASLMechanism.plain
    /// The credential the user logged in with (nil for a client certificate): a reload that removes
    /// or changes it closes the connection.
    var loginCredential: UserCredential?
    var loggedInByCertificate = false

    /// The bucket this connection's commands use: the default one until a user of another logs in.
    public internal(set) var bucket: Bucket
    /// The authenticated user (nil before authentication, or when authentication is off).
    public internal(set) var user: String?
    /// What the user may do; `restricted` is false when no check can fail, so the hot path skips them.
    var grant = AccessGrant.unrestricted
    var restricted = false
    /// The tenancy generation this session's bucket and grant come from.
    var generationSeen: Int

    init(engine: Engine, counterSlot: Int, peer: String, throttleKey: String? = nil) {
        self.engine = engine
        self.counterSlot = counterSlot
        self.peer = peer
        self.throttleKey = throttleKey ?? AuthThrottle.addressKey(peer)
        self.isAuthenticated = engine.authenticator == nil
        self.bucket = engine.tenancy.defaultBucket
        self.generationSeen = engine.tenancy.generation.load(ordering: .acquiring)
        // Before authentication only what authentication needs is buffered (see beforeAuthentication).
        let limits = isAuthenticated ? engine.settings.limits : engine.settings.limits.beforeAuthentication
        self.limitedBeforeAuthentication = !isAuthenticated
        self.decoder = TextDecoder(limits: limits)
        self.binaryDecoder = BinaryDecoder(limits: limits)
    }

    /// The full limits, once, when the connection has just authenticated (nil otherwise).
    @inline(__always)
    mutating func limitsToLift() -> ProtocolLimits? {
        guard limitedBeforeAuthentication, isAuthenticated else { return nil }
        limitedBeforeAuthentication = false
        return engine.settings.limits
    }

    /// Answers every complete request in `input` (consuming it) into `output`.
    public mutating func process(_ input: inout ByteBuffer, into output: inout ByteBuffer) -> SessionAction {
        if engine.tenancy.generation.load(ordering: .relaxed) != generationSeen, !revalidate() { return .close }
        if !sniffed, let first = input.getInteger(at: input.readerIndex, as: UInt8.self) {
            sniffed = true
            switch engine.settings.protocolMode {
            case .auto: speaksBinary = first == BinaryMagic.request
            case .ascii: speaksBinary = false
            // Only binary is served: a text client is hung up on (the decoder closes on a bad magic byte).
            case .binary: speaksBinary = true
            }
        }
        if speaksBinary { return processBinary(&input, into: &output) }
        // The decoder works on a local copy so that executing a request may mutate the session.
        var decoder = self.decoder
        defer { self.decoder = decoder }
        while output.readableBytes < outputHighWater {
            let outcome: SessionAction?? = decoder.decode(&input) { command, redeliver in
                execute(command, redeliver: &redeliver, into: &output)
            }
            if let offset = resumeKeyOffset {
                decoder.advanceResumedKeys(by: offset)
                resumeKeyOffset = nil
            }
            if let full = limitsToLift() {
                decoder.limits = full
                binaryDecoder.limits = full
            }
            guard let outcome else { return .needInput }
            if let action = outcome { return action }
        }
        return .outputFull
    }

    /// Records a use of a command the operator may switch off, whether it ran or was refused.
    func dangerous(_ command: String, allowed: Bool) {
        engine.securityLog.record(.dangerousCommand(peer: peer, command: command, allowed: allowed))
    }

    /// Records a read of a canary key (called only when some are configured).
    func checkCanary(_ key: UnsafeRawBufferPointer) {
        for canary in engine.settings.canaryKeys where canary.count == key.count && canary.elementsEqual(key) {
            engine.securityLog.record(.canaryRead(peer: peer, key: String(decoding: key, as: UTF8.self)))
            return
        }
    }

    /// True while a request has started arriving but is not complete: `input` still holds part of one,
    /// or a refused value is being swallowed (the server's command deadline runs while this holds).
    public func hasPartialRequest(pendingInput: Int) -> Bool {
        pendingInput > 0 || decoder.isMidRequest || binaryDecoder.isMidRequest
    }

    /// Bytes that arrived from the client (counted on arrival, as memcached's `bytes_read`).
    public mutating func countReceived(_ count: Int) {
        counters.bytesRead &+= UInt64(count)
    }

    /// Bytes handed to the transport for the client.
    public mutating func countSent(_ count: Int) {
        counters.bytesWritten &+= UInt64(count)
    }

    /// Merges this session's counters into the engine's totals (call once per read batch and at close).
    public mutating func publishCounters() {
        guard !counters.isZero else { return }
        bucket.merge(counters, slot: counterSlot)
        counters = CommandCounters()
    }

    // MARK: execution

    /// The key whose existence a single-key command learns (add's NOT_STORED, touch's TOUCHED): a canary
    /// read. A plain set reveals nothing and is how canaries are planted; a multi-get checks each key as it goes.
    private static func keyLearnedOf(_ command: TextCommand) -> UnsafeRawBufferPointer? {
        switch command {
        case .store(let verb, let key, _, _, _, _, _), .storeTooLarge(let verb, let key, _):
            return verb == .set ? nil : key
        case .delete(let key, _), .arithmetic(let key, _, _, _), .touch(let key, _, _):
            return key
        default:
            return nil
        }
    }

    private mutating func execute(_ command: TextCommand, redeliver: inout Bool, into out: inout ByteBuffer)
        -> SessionAction?
    {
        guard isAuthenticated else { return executeUnauthenticated(command, into: &out) }
        // A resumed multi-get's keys were all authorized when it started (unless the grants changed since).
        let resumed = resumeAuthorizedGeneration
        resumeAuthorizedGeneration = nil
        if restricted, resumed != generationSeen, !permits(command, into: &out) { return nil }
        if !engine.settings.canaryKeys.isEmpty, let key = Self.keyLearnedOf(command) { checkCanary(key) }
        let cache = bucket.cache
        switch command {
        case .retrieve(let keys, let withCAS, let touchExptime):
            // One line may name a large value many times: stop at the output high-water mark and
            // resume from the next key once the client has taken what was written.
            for key in keys {
                if out.readableBytes >= outputHighWater, let start = keys.bytes.baseAddress, let at = key.baseAddress {
                    resumeKeyOffset = start.distance(to: at)
                    resumeAuthorizedGeneration = generationSeen
                    redeliver = true
                    return .outputFull
                }
                counters.cmdGet &+= 1
                if !engine.settings.canaryKeys.isEmpty { checkCanary(key) }
                let hit =
                    cache.read(key, touchExptime: touchExptime) { item in
                        TextEncoder.writeValue(
                            key: item.key, flags: item.flags, data: item.value, cas: withCAS ? item.cas : nil,
                            into: &out)
                    } != nil
                if touchExptime != nil {
                    counters.cmdTouch &+= 1
                    if hit { counters.touchHits &+= 1 } else { counters.touchMisses &+= 1 }
                }
                if hit { counters.getHits &+= 1 } else { counters.getMisses &+= 1 }
            }
            TextEncoder.write(.end, into: &out)

        case .store(let verb, let key, let flags, let exptime, let value, let casUnique, let noreply):
            let outcome = cache.store(
                StoreMode(verb, cas: casUnique), key: key, value: value, flags: flags, exptime: exptime)
            account(outcome, key: key, unlinksStale: verb == .set)
            if verb == .cas { counters.countCAS(outcome) }
            let reply: TextReply
            switch outcome {
            case .stored: reply = .stored
            case .notStored: reply = .notStored
            case .exists: reply = .exists
            case .notFound: reply = .notFound
            case .tooLarge:
                if !noreply { TextEncoder.writeError(.tooLarge, into: &out) }
                return nil
            case .noMemory: reply = .outOfMemory
            }
            if !noreply { TextEncoder.write(reply, into: &out) }

        case .storeTooLarge(let verb, let key, let noreply):
            refuseStore(key: key, tooLarge: true, unlinksStale: verb == .set)
            if !noreply { TextEncoder.writeError(.tooLarge, into: &out) }

        case .delete(let key, let noreply):
            let outcome = cache.delete(key)
            if outcome == .deleted { counters.deleteHits &+= 1 } else { counters.deleteMisses &+= 1 }
            if !noreply { TextEncoder.write(outcome == .deleted ? .deleted : .notFound, into: &out) }

        case .arithmetic(let key, let delta, let increment, let noreply):
            let outcome = increment ? cache.increment(key, by: delta) : cache.decrement(key, by: delta)
            switch outcome {
            case .value(let value):
                if increment { counters.incrHits &+= 1 } else { counters.decrHits &+= 1 }
                if !noreply { TextEncoder.writeNumber(value, into: &out) }
            case .notFound:
                if increment { counters.incrMisses &+= 1 } else { counters.decrMisses &+= 1 }
                if !noreply { TextEncoder.write(.notFound, into: &out) }
            case .noMemory:
                counters.storeNoMemory &+= 1
                if !noreply { TextEncoder.write(.outOfMemory, into: &out) }
            case .exists:
                break  // only when a CAS is given, which the text protocol never does
            case .nonNumeric:
                if !noreply {
                    TextEncoder.writeLine("CLIENT_ERROR cannot increment or decrement non-numeric value", into: &out)
                }
            }

        case .touch(let key, let exptime, let noreply):
            counters.cmdTouch &+= 1
            let outcome = cache.touch(key, exptime: exptime)
            if outcome == .touched { counters.touchHits &+= 1 } else { counters.touchMisses &+= 1 }
            if !noreply { TextEncoder.write(outcome == .touched ? .touched : .notFound, into: &out) }

        case .flushAll(let delay, let noreply):
            guard allows(.flushAll) else {
                if !noreply { TextEncoder.writeLine("CLIENT_ERROR flush_all not allowed", into: &out) }
                return nil
            }
            counters.cmdFlush &+= 1
            cache.flushAll(delay: delay)
            if !noreply { TextEncoder.write(.ok, into: &out) }

        case .version:
            TextEncoder.writeLine("VERSION \(engine.settings.version)", into: &out)

        case .verbosity(let level, let noreply):
            guard allows(.verbosity) else {
                TextEncoder.writeLine("CLIENT_ERROR verbosity not allowed", into: &out)
                return nil
            }
            engine.verbosity.store(level, ordering: .relaxed)
            if !noreply { TextEncoder.write(.ok, into: &out) }

        case .quit:
            return .close

        case .shutdown:
            guard allows(.shutdown) else {
                TextEncoder.writeLine("ERROR: shutdown not enabled", into: &out)
                return nil
            }
            return .shutdown

        case .stats(let arguments):
            stats(arguments.strings, into: &out)

        case .lruCrawler(let arguments):
            let first = arguments.strings.first
            if first == "metadump" || first == "mgdump" {
                engine.securityLog.record(.keyDumpAttempt(peer: peer, command: "lru_crawler \(first!)"))
                TextEncoder.writeLine("ERROR key dumping not allowed", into: &out)
            } else {
                TextEncoder.writeLine("ERROR lru_crawler is not supported", into: &out)
            }

        case .refreshCerts:
            guard let reload = engine.certificateReloader else {
                TextEncoder.writeLine("CLIENT_ERROR SSL not enabled", into: &out)
                return nil
            }
            _ = allows(.refreshCerts)
            TextEncoder.writeLine(reload() == nil ? "OK" : "ERROR: Failed to refresh SSL keys", into: &out)

        case .watch:
            // A live feed of other clients' keys: a dump by another name.
            engine.securityLog.record(.keyDumpAttempt(peer: peer, command: "watch"))
            TextEncoder.writeLine("CLIENT_ERROR watch not allowed", into: &out)

        case .cacheMemlimit:
            _ = allows(.cacheMemlimit)
            TextEncoder.writeLine("ERROR cache_memlimit not supported", into: &out)

        case .meta(let command):
            return executeMeta(command, into: &out)

        case .error(let error, let noreply):
            return protocolError(error, noreply: noreply, into: &out)
        }
        return nil
    }

    mutating func protocolError(_ error: ErrorReply, noreply: Bool, into out: inout ByteBuffer) -> SessionAction? {
        counters.protocolErrors &+= 1
        switch error.disposition {
        case .reply:
            if !noreply { TextEncoder.writeError(error, into: &out) }
        case .replyAndClose:
            TextEncoder.writeError(error, into: &out)
            return .close
        case .close:
            return .close
        }
        return nil
    }

    /// The stat lines of a `stats` group (nil: unknown group).
    mutating func statLines(_ group: String?) -> [Stat]? {
        switch group {
        case nil:
            publishCounters()
            return engine.statsSnapshot(for: bucket).general(serverWide: grant.permissions.contains(.admin))
        case "settings": return engine.settings.settingsReport.map { Stat($0.0, .text($0.1)) }
        case "items": return StatsSnapshot.items(bucket.cache.counters())
        case "slabs": return StatsSnapshot.slabs(bucket.cache.counters())
        case "buckets": return engine.bucketStats().flatMap(\.lines)
        case "users": return engine.userStats()
        default: return nil
        }
    }

    /// `stats reset`: every bucket's counters for an administrator, only the caller's bucket's otherwise.
    mutating func resetStats() {
        publishCounters()
        if grant.permissions.contains(.admin) {
            engine.resetTotals()
        } else {
            bucket.resetTotals()
        }
    }

    private mutating func stats(_ arguments: [String], into out: inout ByteBuffer) {
        switch answerStats(arguments) {
        case .lines(let lines):
            for stat in lines { TextEncoder.writeStat(stat.name, stat.value.text, into: &out) }
            TextEncoder.write(.end, into: &out)
        case .reset: TextEncoder.write(.reset, into: &out)
        case .accepted: TextEncoder.writeLine("OK", into: &out)
        case .refused: TextEncoder.writeLine("CLIENT_ERROR stats \(arguments[0]) not allowed", into: &out)
        case .unknown: TextEncoder.writeError(.error, into: &out)
        }
    }
}
