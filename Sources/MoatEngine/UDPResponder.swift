import MoatAccess
import MoatProtocol
import NIOCore
import Synchronization

/// Counts of what the UDP port received and did, for `stats`.
public final class UDPCounters: Sendable {
    public let datagrams = Atomic<UInt64>(0)
    public let requestBytes = Atomic<UInt64>(0)
    public let replies = Atomic<UInt64>(0)
    public let replyBytes = Atomic<UInt64>(0)
    public let refusedSource = Atomic<UInt64>(0)
    public let rateLimited = Atomic<UInt64>(0)
    public let malformed = Atomic<UInt64>(0)
    public let refusedCommand = Atomic<UInt64>(0)
    public let oversized = Atomic<UInt64>(0)

    public init() {}

    func stats() -> [Stat] {
        [
            Stat("udp_datagrams", datagrams.load(ordering: .relaxed)),
            Stat("udp_request_bytes", requestBytes.load(ordering: .relaxed)),
            Stat("udp_replies", replies.load(ordering: .relaxed)),
            Stat("udp_reply_bytes", replyBytes.load(ordering: .relaxed)),
            Stat("udp_refused_source", refusedSource.load(ordering: .relaxed)),
            Stat("udp_rate_limited", rateLimited.load(ordering: .relaxed)),
            Stat("udp_malformed", malformed.load(ordering: .relaxed)),
            Stat("udp_refused_command", refusedCommand.load(ordering: .relaxed)),
            Stat("udp_oversized", oversized.load(ordering: .relaxed)),
        ]
    }
}

/// memcached's UDP protocol, made useless as a reflector: only allowed sources are answered, each
/// within a per-source rate, one command per datagram, and a reply never exceeds `amplification`
/// times the request's bytes (headers included) nor one datagram. Pure: bytes and a source address in,
/// the reply datagram (or nothing) out; the server does the sockets.
public final class UDPResponder: Sendable {
    public struct Policy: Sendable, Equatable {
        /// Reply bytes may be at most this multiple of the request's (QUIC's 3 before an address is validated).
        public var amplification: Int
        /// memcached's UDP payload limit: replies never span datagrams.
        public var maximumDatagram: Int
        /// Whether commands that change the cache are served (`-o udp_writes`); refused by default, since
        /// a forged source address would let anyone write as an allowed client.
        public var allowsWrites: Bool

        public init(amplification: Int = 3, maximumDatagram: Int = 1400, allowsWrites: Bool = false) {
            self.amplification = amplification
            self.maximumDatagram = maximumDatagram
            self.allowsWrites = allowsWrites
        }
    }

    /// Why a datagram got no reply (or only an error), for counters and the log.
    public enum Refusal: String, Sendable, Equatable {
        case refusedSource = "refused_source"
        case rateLimited = "rate_limited"
        case malformed
        case refusedCommand = "refused_command"
        case oversized
    }

    public let engine: Engine
    public let policy: Policy
    public let filter: AddressFilter
    public let limiter: SourceRateLimiter

    static let refusedReply = Array("CLIENT_ERROR not allowed over UDP\r\n".utf8)
    static let oversizedReply = Array("SERVER_ERROR reply too large for UDP\r\n".utf8)

    public init(engine: Engine, policy: Policy, filter: AddressFilter, limiter: SourceRateLimiter) {
        self.engine = engine
        self.policy = policy
        self.filter = filter
        self.limiter = limiter
    }

    /// The datagram to send back to `peer` (read from the datagram's source address; nil when unknown,
    /// refused whenever an address list exists), or nil for none.
    public func respond(to datagram: UnsafeRawBufferPointer, from peer: PeerAddress?) -> [UInt8]? {
        let source = peer?.description ?? "unknown"
        let counters = engine.udp
        counters.datagrams.add(1, ordering: .relaxed)
        counters.requestBytes.add(UInt64(datagram.count), ordering: .relaxed)
        // Spoofable, so checked first and answered with nothing at all.
        guard filter.decision(for: peer) == .allowed else { return refuse(.refusedSource, source) }
        guard limiter.admit(peer?.throttleKey ?? source, bytes: datagram.count) else {
            return refuse(.rateLimited, source)
        }
        guard let header = UDPFrameHeader(datagram), header.isSingleDatagramRequest else {
            return refuse(.malformed, source)
        }
        let payload = UnsafeRawBufferPointer(rebasing: datagram[UDPFrameHeader.size...])
        let limit = min(policy.amplification * datagram.count, policy.maximumDatagram)
        let reply = UDPFrameHeader(requestID: header.requestID)
        var input = ByteBuffer(bytes: payload)
        switch Self.check(input, allowsWrites: policy.allowsWrites, limits: engine.settings.limits) {
        case .malformed:
            return refuse(.malformed, source)
        case .refused:
            _ = refuse(.refusedCommand, source)
            return bounded(reply, Self.refusedReply, limit: limit)
        case .serve:
            break
        }
        var session = engine.makeSession(peer: source)
        var output = ByteBuffer()
        _ = session.process(&input, into: &output)
        session.publishCounters()
        guard output.readableBytes > 0 else { return nil }  // noreply
        if UDPFrameHeader.size + output.readableBytes > limit {
            _ = refuse(.oversized, source)
            return bounded(reply, Self.oversizedReply, limit: limit)
        }
        return bounded(reply, output.readableBytesView, limit: limit)
    }

    private func refuse(_ reason: Refusal, _ source: String) -> [UInt8]? {
        let counters = engine.udp
        switch reason {
        case .refusedSource: counters.refusedSource.add(1, ordering: .relaxed)
        case .rateLimited: counters.rateLimited.add(1, ordering: .relaxed)
        case .malformed: counters.malformed.add(1, ordering: .relaxed)
        case .refusedCommand: counters.refusedCommand.add(1, ordering: .relaxed)
        case .oversized: counters.oversized.add(1, ordering: .relaxed)
        }
        engine.securityLog.record(.udpRefused(peer: source, reason: reason))
        return nil
    }

    /// The reply, or nothing when even it would exceed the bound.
    private func bounded(_ header: UDPFrameHeader, _ body: some Collection<UInt8>, limit: Int) -> [UInt8]? {
        guard UDPFrameHeader.size + body.count <= limit else { return nil }
        engine.udp.replies.add(1, ordering: .relaxed)
        engine.udp.replyBytes.add(UInt64(UDPFrameHeader.size + body.count), ordering: .relaxed)
        return header.bytes + body
    }

    enum Check: Equatable { case serve, refused, malformed }

    /// Decides a datagram by the operation the text decoder reads from it (the one TCP's sessions
    /// use), not by its words: one whole command and nothing after it; single-key retrievals, stores,
    /// deletes, arithmetic, touch, version and the meta commands but `me`. Everything else (stats,
    /// multi-key gets, flush_all, ...) is refused: large replies and destructive commands from a
    /// spoofable source. Writes only with `allowsWrites`. What does not decode as a command, or only
    /// as an error, gets no answer at all.
    /// `payload` is decoded from a copy of its reader index (no copy of its bytes): the caller keeps it whole.
    static func check(_ payload: ByteBuffer, allowsWrites: Bool = false, limits: ProtocolLimits) -> Check {
        guard let first = payload.getInteger(at: payload.readerIndex, as: UInt8.self), first != BinaryMagic.request
        else { return .malformed }  // text only
        var decoder = TextDecoder(limits: limits)
        var input = payload
        guard let verdict = decoder.decode(&input, { classify($0, allowsWrites: allowsWrites) }) else {
            return .malformed  // no whole command
        }
        guard verdict == .serve else { return verdict }
        return input.readableBytes == 0 && !decoder.isMidRequest ? .serve : .refused
    }

    /// UDP's limits on one decoded operation.
    static func classify(_ request: RequestView, allowsWrites: Bool) -> Check {
        let write: Check = allowsWrites ? .serve : .refused
        switch request.operation {
        case .getMany(let keys, let options):
            var iterator = TokenList(keys).makeIterator()
            _ = iterator.next()
            guard iterator.next() == nil else { return .refused }  // one key: no reply built from many
            return options.writes ? write : .serve
        // mg with N creates the item on a miss, and with T sets its TTL: writes.
        case .get(_, let options):
            return options.writes ? write : .serve
        case .store, .storeTooLarge, .delete, .arithmetic, .touch:
            return write
        case .noop, .version:
            return .serve
        case .inspect, .flushAll, .verbosity, .quit, .shutdown, .stats, .lruCrawler, .watch, .refreshCerts,
            .cacheMemlimit, .saslListMechanisms, .saslStart, .saslStep, .saslMechanismTooLong:
            return .refused
        case .error:
            return .malformed
        }
    }
}
