import Logging
import MoatAccess
import MoatEngine
import MoatTLS
import NIOCore

/// What one read of the socket brought (the transport's `read(2)`, told to the core).
enum ReadOutcome: Equatable {
    case received(Int)
    case wouldBlock
    case peerClosed
    case failed
}

/// What one write to the socket took (`send(2)`, told to the core).
enum WriteOutcome: Equatable {
    case sent(Int)
    case wouldBlock
    case failed
}

/// What the transport does after the core handled an event.
enum ConnectionStep: Equatable {
    /// Everything received was answered and sent: wait for the socket to be readable.
    case waitForInput
    /// Replies do not drain: stop reading and wait for the socket to be writable (then `writable`).
    case waitForWritable
    /// Stopping, and the last reply is out: half-close the socket (FIN) and keep reading; the core drops
    /// what still arrives, and says `close(.shutdown)` when the client closes too.
    case halfClose
    /// Close the socket, then call `finish(_:)` with the reason.
    case close(CloseReason)
    /// A client asked the server to stop (`shutdown` with `-A`): close, then stop the server.
    case closeAndStopServer
}

/// What a connection core needs from the loop that serves it: the same for all of that loop's
/// connections, and used by one thread at a time.
final class ConnectionContext {
    let engine: Engine
    let gate: ConnectionGate
    let logger: Logger
    let limits: ConnectionDeadlines.Limits
    /// `-o ssl_cert_auth`.
    let certificateAuthentication: Bool
    /// TLS records are read here, then decrypted into the connection's input.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    init(
        engine: Engine, gate: ConnectionGate, logger: Logger, limits: ConnectionDeadlines.Limits,
        certificateAuthentication: Bool
    ) {
        self.engine = engine
        self.gate = gate
        self.logger = logger
        self.limits = limits
        self.certificateAuthentication = certificateAuthentication
    }

    deinit { scratch.deallocate() }
}

/// One client connection's whole life, whatever carries it (TCP, a unix socket, TLS): the read →
/// session → write drive loop, back-pressure (the high-water pause of a long multi-get and its resume),
/// the output budget, every deadline, the drain on stop, the close reasons, the counters and the
/// security-log events. Sans-I/O: the transport passes in events ("readable", "writable", "tick",
/// "stop") with closures that read or write its socket, and does what the returned `ConnectionStep`
/// says; the core never sees a file descriptor or a clock, so it is tested with a manual clock and
/// in-memory "sockets" (ConnectionCoreTests). Admission happens before a core exists (ConnectionGate).
final class ConnectionCore {
    typealias Read = (UnsafeMutableRawBufferPointer) -> ReadOutcome
    typealias Send = (UnsafeRawBufferPointer) -> WriteOutcome

    static let readChunk = 16 * 1024
    /// What an idle connection holds instead of buffers (shared; the first write to it allocates).
    static let noBuffer = ByteBuffer()
    /// A connection quiet this long gives its (empty) buffers back, so that thousands of idle
    /// connections hold no buffer memory; busy ones keep theirs and pay nothing per request.
    static let bufferReleaseMilliseconds: Int64 = 1000

    let context: ConnectionContext
    private(set) var session: Session
    /// Plaintext requests and replies (decrypted and not yet encrypted, on TLS).
    private(set) var input = ConnectionCore.noBuffer
    private(set) var output = ConnectionCore.noBuffer
    /// TLS only: the transform, and the records not yet taken by the socket.
    let tls: TLSStream?
    private(set) var cipher = ConnectionCore.noBuffer
    /// Replies are not draining: reading is paused until the socket is writable again.
    private(set) var blocked = false
    /// Output bytes charged to the engine's output budget while `blocked`.
    private(set) var charged = 0
    private(set) var deadlines: ConnectionDeadlines
    /// The server is stopping: answer what is buffered, then half-close.
    private(set) var draining = false
    /// TLS only: close_notify has been queued (on a drain).
    private var closeNotified = false
    private(set) var halfClosed = false
    private(set) var finished = false
    let peer: String
    /// Who the client is, read from the socket address (what the gate counts).
    let address: PeerAddress?
    /// The address without the port, for the security log.
    let host: String

    init(context: ConnectionContext, address: PeerAddress?, peer: String, tls: TLSStream?, now: Int64) {
        self.context = context
        self.session = context.engine.makeSession(address: address)
        self.tls = tls
        self.deadlines = ConnectionDeadlines(limits: context.limits, now: now, tls: tls != nil)
        self.peer = peer
        self.address = address
        self.host = address?.description ?? "unknown"
    }

    /// What is waiting for the socket: replies, or on TLS their records.
    var pending: ByteBuffer { tls == nil ? output : cipher }

    /// Buffer memory this connection holds (0 once idle buffers were given back).
    var bufferCapacity: Int { input.capacity + output.capacity + cipher.capacity }

    // MARK: events

    /// The socket is readable: one read, then the session answers what is complete, and the replies go out.
    func readable(at now: Int64, read: Read, send: Send) -> ConnectionStep {
        if halfClosed { return discardInput(read) }
        var outcome = ReadOutcome.wouldBlock
        if tls != nil {
            outcome = read(context.scratch)
        } else {
            let wanted = input.readableBytes == 0 ? Self.readChunk : max(Self.readChunk, input.readableBytes)
            _ = input.writeWithUnsafeMutableBytes(minimumWritableBytes: min(wanted, 1 << 20)) { target in
                outcome = read(target)
                if case .received(let count) = outcome { return count }
                return 0
            }
        }
        let count: Int
        switch outcome {
        case .received(let received): count = received
        case .wouldBlock: return .waitForInput
        case .peerClosed: return .close(.normal)
        case .failed: return .close(.error)
        }
        deadlines.received(at: now)
        var peerClosed = false
        if let tls {
            let decrypted = decrypt(tls, UnsafeRawBufferPointer(rebasing: context.scratch[0..<count]), send: send)
            if let step = decrypted.failed { return step }
            peerClosed = decrypted.peerClosed
        } else {
            session.countReceived(count)
        }
        let handled = session.requestsHandled
        let step = drive(send, at: now)
        switch step {
        case .close, .closeAndStopServer: return step
        default: break
        }
        if peerClosed { return .close(.normal) }
        deadlines.request(
            incomplete: session.hasPartialRequest(pendingInput: input.readableBytes),
            completedAny: session.requestsHandled != handled, at: now)
        return step
    }

    /// The socket became writable while replies were blocked: send them, then answer what arrived meanwhile.
    func writable(at now: Int64, send: Send) -> ConnectionStep {
        guard blocked else { return draining ? endDrain(send, at: now) : .waitForInput }
        if let step = flush(send, at: now) { return step }
        blocked = false
        deadlines.drained()
        context.engine.outputBudget.release(charged)
        charged = 0
        // Requests that arrived while paused are still buffered.
        return drive(send, at: now)
    }

    /// The server is stopping: nothing new is read, but what is buffered is answered and sent; then the
    /// connection half-closes (on TLS after close_notify, which says the end is not a truncation).
    func stop(at now: Int64, send: Send) -> ConnectionStep {
        draining = true
        deadlines.forgetRequest()
        if blocked { return .waitForWritable }
        return endDrain(send, at: now)
    }

    /// What the loop's quarter-second tick finds: a reload that revoked this client's access, buffers to
    /// give back, a deadline passed.
    enum TickOutcome: Equatable {
        case keep
        case releasedBuffers
        case close(CloseReason)
    }

    /// `tenancyChanged`: a reload removed users or moved them to another bucket since the last tick;
    /// their connections go, idle or not.
    func tick(at now: Int64, tenancyChanged: Bool) -> TickOutcome {
        if tenancyChanged, !session.revalidate() { return .close(.accessRevoked) }
        var outcome = TickOutcome.keep
        if now - deadlines.lastReceived >= Self.bufferReleaseMilliseconds, !blocked, input.readableBytes == 0,
            output.readableBytes == 0, cipher.readableBytes == 0, bufferCapacity > 0
        {
            input = Self.noBuffer
            output = Self.noBuffer
            cipher = Self.noBuffer
            tls?.releaseBuffers()
            outcome = .releasedBuffers
        }
        if context.limits.any, let reason = deadlines.expired(at: now, isAuthenticated: session.isAuthenticated) {
            return .close(reason)
        }
        return outcome
    }

    /// The connection is gone (the transport closed the socket): give back what it held and say why,
    /// once: the budget, the gate's slots, the counters, the log line and, for a limit, the security log.
    func finish(_ reason: CloseReason) {
        guard !finished else { return }
        finished = true
        let engine = context.engine
        engine.outputBudget.release(charged)
        charged = 0
        session.publishCounters()
        context.gate.leave(peer: address)
        if reason == .tlsError || reason == .tlsHandshakeTimeout {
            engine.connections.tlsHandshakeErrors.add(1, ordering: .relaxed)
        }
        context.logger.info("connection closed", metadata: ["peer": "\(peer)", "reason": "\(reason.rawValue)"])
        if reason.isLimit { engine.securityLog.record(.connectionClosed(peer: host, reason: reason)) }
    }

    // MARK: the drive loop

    /// Runs the session over buffered input, sending replies; pauses when they do not drain.
    private func drive(_ send: Send, at now: Int64) -> ConnectionStep {
        while true {
            switch session.process(&input, into: &output) {
            case .needInput:
                if input.readableBytes == 0 {
                    input.clear()
                } else if input.readerIndex > 64 * 1024 {
                    input.discardReadBytes()
                }
                // Counters first: a client that has its reply may ask `stats` on another connection
                // at once, and must see its request counted (memcached counts before it replies).
                session.publishCounters()
                if let step = flush(send, at: now) { return step }
                return draining ? endDrain(send, at: now) : .waitForInput
            case .outputFull:
                session.publishCounters()
                if let step = flush(send, at: now) { return step }
            case .close:
                session.publishCounters()
                _ = flush(send, at: now)
                return .close(session.accessRevoked ? .accessRevoked : .normal)
            case .shutdown:
                session.publishCounters()
                _ = flush(send, at: now)
                context.logger.notice("shutdown requested by a client")
                return .closeAndStopServer
            }
        }
    }

    /// Sends what is pending (on TLS, encrypted first: one batch of records per read cycle). Nil when all
    /// of it is out; else what the transport must do (wait for writability, or close).
    private func flush(_ send: Send, at now: Int64) -> ConnectionStep? {
        let result: SendResult
        if let tls {
            if output.readableBytes > 0 {
                session.countSent(output.readableBytes)
                guard tls.encrypt(output) else { return .close(.tlsError) }
                output.clear()
            }
            tls.takeCiphertext(into: &cipher)
            result = Self.transmit(&cipher, send).result
            if result == .done { cipher.clear() }
        } else {
            let sent = Self.transmit(&output, send)
            session.countSent(sent.written)
            result = sent.result
            if result == .done { output.clear() }
        }
        switch result {
        case .done: return nil
        case .wouldBlock: return pause(at: now)
        case .failed: return .close(.error)
        }
    }

    private enum SendResult { case done, wouldBlock, failed }

    /// Sends `buffer`'s readable bytes until they are out or the socket is full.
    private static func transmit(_ buffer: inout ByteBuffer, _ send: Send) -> (result: SendResult, written: Int) {
        var total = 0
        while buffer.readableBytes > 0 {
            switch buffer.withUnsafeReadableBytes(send) {
            case .sent(let written) where written > 0:
                total += written
                buffer.moveReaderIndex(forwardBy: written)
            case .wouldBlock: return (.wouldBlock, total)
            default: return (.failed, total)
            }
        }
        return (.done, total)
    }

    private func pause(at now: Int64) -> ConnectionStep {
        guard !blocked else { return .waitForWritable }
        // The memory held is the buffer's capacity (a value is copied in whole), not just what is left to send.
        let held = pending.capacity
        guard context.engine.outputBudget.charge(held) else { return .close(.outputBudget) }
        charged = held
        blocked = true
        deadlines.stalled(at: now)
        return .waitForWritable
    }

    // MARK: TLS

    /// Ciphertext in, plaintext onto the input; the handshake's end logs in a client certificate's user
    /// (`-o ssl_cert_auth`). `failed`: the record or handshake failed, and the connection closes;
    /// `peerClosed`: the client sent close_notify.
    private func decrypt(_ tls: TLSStream, _ records: UnsafeRawBufferPointer, send: Send) -> (
        failed: ConnectionStep?, peerClosed: Bool
    ) {
        guard tls.receive(records) else { return (.close(.error), false) }
        // At most what one read brought in, decrypted: the input stays bounded as on plaintext.
        let (status, appended) = tls.decrypt(into: &input, limit: .max)
        if deadlines.handshaking, tls.handshakeComplete {
            deadlines.handshakeCompleted()
            if context.certificateAuthentication { authenticateWithCertificate(tls) }
        }
        if case .failed(let why) = status {
            context.logger.debug("TLS error", metadata: ["peer": "\(peer)", "error": "\(why)"])
            // The alert OpenSSL queued tells the client why (once, without waiting for the socket).
            tls.takeCiphertext(into: &cipher)
            _ = Self.transmit(&cipher, send)
            return (.close(.tlsError), false)
        }
        session.countReceived(appended)
        return (nil, status == .closed)
    }

    /// `-o ssl_cert_auth`: the handshake verified the client's certificate; its subject common name logs in
    /// the user of that name, if the credentials hold one (otherwise SASL or ASCII auth is still needed).
    /// A subject with several common names names no one: a CA that signs a requester's chosen subject
    /// ("CN=me, CN=admin") must not let it pick the most powerful of them. Subject alternative names are
    /// not read.
    private func authenticateWithCertificate(_ tls: TLSStream) {
        guard let names = tls.peerCommonNames(), names.count > 0 else { return }
        guard names.count == 1, let name = names.first else {
            context.logger.warning(
                "client certificate with \(names.count) common names: not used to log in", metadata: ["peer": "\(peer)"]
            )
            context.engine.securityLog.record(
                .authentication(.failed(user: nil, peer: host, mechanism: "tls-client-certificate")))
            return
        }
        _ = session.authenticateWithCertificate(user: name)
    }

    // MARK: the drain

    /// The drain's end for this connection: close_notify on TLS, then the half-close.
    private func endDrain(_ send: Send, at now: Int64) -> ConnectionStep {
        if halfClosed { return .waitForInput }
        if let tls, !closeNotified {
            closeNotified = true
            tls.closeNotify()
            if let step = flush(send, at: now) { return step }
        }
        halfClosed = true
        return .halfClose
    }

    /// After the half-close: what the client still sends is read and dropped (closing a socket with unread
    /// input would send a reset, which makes the client's kernel discard replies it has not read yet);
    /// its close, or an error, ends the connection.
    private func discardInput(_ read: Read) -> ConnectionStep {
        while true {
            switch read(context.scratch) {
            case .received: continue
            case .wouldBlock: return .waitForInput
            case .peerClosed, .failed: return .close(.shutdown)
            }
        }
    }
}
