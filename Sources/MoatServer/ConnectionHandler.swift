import Logging
import MoatAccess
import MoatEngine
import NIOCore
import NIOSSL
import NIOTLS
import X509

/// The channel end of one client connection: bytes go into its `Session`, replies come back out.
///
/// Replies are written as requests are answered and flushed once per read cycle. A client that stops
/// reading its replies stops being read from (the channel turns unwritable, reading is suspended), so a
/// connection's memory is bounded by the session's output high-water mark plus one request.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var session: Session
    private let engine: Engine
    private let logger: Logger
    private let onShutdown: @Sendable () -> Void
    private var input = ByteBuffer()
    private var output = ByteBuffer()
    /// Input is waiting because the peer is not reading what we wrote.
    private var suspended = false
    private var readRequested = false
    private var closing = false
    private let gate: ConnectionGate
    private let deadlineLimits: ConnectionDeadlines.Limits
    /// Its idle, authentication, command and output deadlines (from `channelActive`).
    private var deadlines: ConnectionDeadlines
    private let certificateAuthentication: Bool
    /// Who the client is, from its socket address (nil: unknown, refused when an address list exists).
    private var address: PeerAddress?
    /// The client's address without the port, for the security log ("unix" for a unix socket).
    private var host = "unix"
    /// Holds one of the gate's per-address slots.
    private var admitted = false
    private var watchdog: RepeatedTask?
    /// Bytes the channel held for the client when it stopped draining, charged to the engine's output budget.
    private var charged = 0
    /// The storage size of the last reply buffer handed to the channel.
    private var lastFlushedCapacity = 0
    /// The server is stopping: buffered requests are answered, new input is dropped, and once the
    /// replies are out the output is half-closed (see `beginDrain`).
    private var draining = false
    /// Why the connection ends, logged when it does (a close by the peer is `normal`).
    private var closeReason = CloseReason.normal

    /// Sent through the pipeline by `Server.stop()`.
    struct Drain: Sendable {}


    init(
        engine: Engine, gate: ConnectionGate, deadlines: ConnectionDeadlines.Limits, certificateAuthentication: Bool = false,
        logger: Logger, onShutdown: @escaping @Sendable () -> Void
    ) {
        self.certificateAuthentication = certificateAuthentication
        self.engine = engine
        self.gate = gate
        self.deadlineLimits = deadlines
        self.deadlines = ConnectionDeadlines(limits: deadlines, now: Self.now())
        self.session = engine.makeSession()
        self.logger = logger
        self.onShutdown = onShutdown
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: 1024)
        address = peerAddress(of: context.channel)
        host = address?.description ?? "unknown"
        session = engine.makeSession(address: address)
    }

    func channelActive(context: ChannelHandlerContext) {
        // Before a byte is read or written: a refused client learns nothing but that the port is open.
        switch gate.enter(peer: address, described: peerDescription(context)) {
        case .admitted:
            admitted = true
        case .refused:
            closing = true
            context.close(promise: nil)
            return
        case .tooManyConnections:
            closing = true
            var reply = context.channel.allocator.buffer(capacity: 40)
            reply.writeStaticString(ConnectionGate.tooManyConnectionsReply)
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            context.close(promise: nil)
            return
        }
        deadlines = ConnectionDeadlines(limits: deadlineLimits, now: Self.now())
        // The deadlines, and a reload's revocations (which need authentication), are checked on a tick.
        if deadlineLimits.any || engine.authenticator != nil {
            // Runs on this channel's event loop, as does everything else in this handler.
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
                bound.value.0.checkDeadlines(context: bound.value.1)
            }
        }
        context.fireChannelActive()
    }

    /// Closes a client whose user a reload revoked, or that has passed one of its deadlines.
    private func checkDeadlines(context: ChannelHandlerContext) {
        guard !closing, !draining else { return }
        // A reload removed this connection's user or moved it to another bucket.
        if !session.revalidate() {
            close(context: context, reason: .accessRevoked)
            return
        }
        if let reason = deadlines.expired(at: Self.now(), isAuthenticated: session.isAuthenticated) {
            close(context: context, reason: reason)
        }
    }

    /// Monotonic milliseconds (the deadlines' clock).
    private static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    func channelInactive(context: ChannelHandlerContext) {
        session.publishCounters()
        engine.outputBudget.release(charged)
        charged = 0
        watchdog?.cancel()
        watchdog = nil
        if admitted {
            admitted = false
            gate.leave(peer: address)
            // Logged once, here, whoever closed it.
            logger.info("connection closed", metadata: ["peer": "\(peerDescription(context))", "reason": "\(closeReason.rawValue)"])
            if closeReason.isLimit { engine.securityLog.record(.connectionClosed(peer: host, reason: closeReason.rawValue)) }
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, !draining else { return }
        var incoming = unwrapInboundIn(data)
        session.countReceived(incoming.readableBytes)
        deadlines.received(at: Self.now())
        if input.readableBytes == 0 {
            input = incoming
        } else {
            input.writeBuffer(&incoming)
        }
        if !suspended { drive(context: context) }
        notePartialRequest()
    }

    private func notePartialRequest() {
        deadlines.request(incomplete: session.hasPartialRequest(pendingInput: input.readableBytes), at: Self.now())
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput(context: context)
        session.publishCounters()
        context.fireChannelReadComplete()
    }

    /// Runs the session over buffered input until it needs more bytes, the peer stops reading, or it ends.
    private func drive(context: ChannelHandlerContext) {
        while !closing {
            let action = session.process(&input, into: &output)
            switch action {
            case .needInput:
                if input.readableBytes == 0 {
                    input.clear()
                } else if input.readerIndex > 64 * 1024 {
                    input.discardReadBytes()
                }
                return
            case .outputFull:
                flushOutput(context: context)
                if !context.channel.isWritable {
                    // The memory held is the storage of the buffers waiting (a value is copied in whole), at
                    // least the last one handed over, not just the bytes left to send.
                    let pending = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
                    let held = max(pending, lastFlushedCapacity)
                    guard engine.outputBudget.charge(held) else {
                        close(context: context, reason: .outputBudget)
                        return
                    }
                    charged = held
                    suspended = true
                    deadlines.stalled(at: Self.now())
                    return
                }
            case .close:
                close(context: context)
                return
            case .shutdown:
                logger.notice("shutdown requested by a client", metadata: ["peer": "\(peerDescription(context))"])
                close(context: context, reason: .shutdown)
                onShutdown()
                return
            }
        }
    }

    private func close(context: ChannelHandlerContext, reason: CloseReason = .normal) {
        closeReason = reason
        closing = true
        flushOutput(context: context)
        session.publishCounters()
        context.close(promise: nil)
    }

    /// Hands the replies to the channel and flushes. Once the socket has taken them (usually at
    /// once) the channel lets go of the buffer, so `clear()` reuses its memory instead of allocating.
    private func flushOutput(context: ChannelHandlerContext) {
        guard output.readableBytes > 0 else { return }
        lastFlushedCapacity = output.capacity
        session.countSent(output.readableBytes)
        context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        output.clear()
    }

    // MARK: back-pressure

    func read(context: ChannelHandlerContext) {
        // Draining reads only to drop what the client still sends, until it closes its end.
        if draining {
            context.read()
        } else if suspended || !context.channel.isWritable {
            readRequested = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if suspended {
                suspended = false
                deadlines.drained()
                engine.outputBudget.release(charged)
                charged = 0
                drive(context: context)
                flushOutput(context: context)
                notePartialRequest()
            }
            if draining, !suspended, !closing { finishDrain(context: context) }
            if readRequested, !suspended, !closing {
                readRequested = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// Stop serving without cutting a reply short: replies still waiting on a full socket are written
    /// first; then the output is half-closed (FIN after the last reply) and the connection closes when
    /// the client closes its end (or the server's drain deadline passes). Closing with unread input
    /// would send a reset, and the client's kernel would discard replies not yet read.
    private func beginDrain(context: ChannelHandlerContext) {
        guard !closing, !draining else { return }
        draining = true
        closeReason = .shutdown
        deadlines.forgetRequest()
        if !suspended { finishDrain(context: context) }
        context.read()
    }

    private var halfClosed = false

    private func finishDrain(context: ChannelHandlerContext) {
        guard !halfClosed else { return }
        halfClosed = true
        flushOutput(context: context)
        let promise = context.eventLoop.makePromise(of: Void.self)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenFailure { _ in bound.value.close(promise: nil) }  // no half-close (TLS): close
        context.close(mode: .output, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Drain {
            beginDrain(context: context)
            return
        }
        if certificateAuthentication, let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            authenticateWithClientCertificate(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["peer": "\(peerDescription(context))", "error": "\(error)"])
        // Plaintext on a TLS port, an unknown CA, an expired or missing client certificate: counted and logged.
        if !closing, error is NIOSSLError || error is BoringSSLError {
            engine.connections.tlsHandshakeErrors.add(1, ordering: .relaxed)
            engine.securityLog.record(.connectionClosed(peer: host, reason: "tls_error"))
        }
        closeReason = .error
        closing = true
        context.close(promise: nil)
    }

    /// `-o ssl_cert_auth`: the handshake verified the client's certificate; its subject common name logs in
    /// the user of that name, if the credentials hold one (otherwise SASL or ASCII auth is still needed).
    /// A subject with several common names names no one: a CA that signs a requester's chosen subject
    /// ("CN=me, CN=admin") must not let it pick the most powerful of them. Subject alternative names are
    /// not read.
    private func authenticateWithClientCertificate(context: ChannelHandlerContext) {
        guard let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
            let peer = tls.peerCertificate, let der = try? peer.toDERBytes(),
            let certificate = try? Certificate(derEncoded: der)
        else { return }
        let names = certificate.subject.flatMap { rdn in
            rdn.filter { $0.type == .RDNAttributeType.commonName }.map { String($0.value) }
        }
        guard names.count == 1, let name = names[0] else {
            if !names.isEmpty {
                logger.warning("client certificate with \(names.count) common names: not used to log in", metadata: ["peer": "\(peerDescription(context))"])
                engine.securityLog.record(.authentication(.failed(user: nil, peer: host, mechanism: "tls-client-certificate")))
            }
            return
        }
        _ = session.authenticateWithCertificate(user: name)
    }

    private func peerDescription(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress.map { "\($0)" } ?? "unix"
    }
}
