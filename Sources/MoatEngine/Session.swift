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
    var resumeKeyOffset: Int?
    /// The tenancy generation under which the paused multi-get's keys were authorized (nil: not paused).
    var resumeAuthorizedGeneration: Int?
    /// Decided by the first byte (`-B auto`) or by `-B`, for the connection's lifetime.
    private var speaksBinary = false
    /// True while the decoders hold the tighter limits of an unauthenticated connection.
    var limitedBeforeAuthentication = false
    /// Past this many buffered reply bytes, `process` stops so the caller can flush (and apply back-pressure).
    public var outputHighWater = 256 * 1024
    /// Requests decoded so far (the connection's command deadline restarts when one completes).
    public internal(set) var requestsHandled: UInt64 = 0

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
            let outcome: SessionAction?? = decoder.decode(&input) { request, redeliver in
                execute(request, redeliver: &redeliver, into: &output)
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

    private mutating func processBinary(_ input: inout ByteBuffer, into output: inout ByteBuffer) -> SessionAction {
        var decoder = self.binaryDecoder
        defer { self.binaryDecoder = decoder }
        while output.readableBytes < outputHighWater {
            let outcome: SessionAction?? = decoder.decode(&input) { request in
                var redeliver = false  // only a text multi-get pauses
                return execute(request, redeliver: &redeliver, into: &output)
            }
            if let full = limitsToLift() {
                decoder.limits = full
                self.decoder.limits = full
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
}
