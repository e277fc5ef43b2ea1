import Logging
import MoatEngine
import NIOCore

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
    private var counted = false

    static let tooManyConnections: StaticString = "ERROR Too many open connections\r\n"

    init(engine: Engine, logger: Logger, onShutdown: @escaping @Sendable () -> Void) {
        self.engine = engine
        self.session = engine.makeSession()
        self.logger = logger
        self.onShutdown = onShutdown
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: 1024)
        session = engine.makeSession(peer: context.channel.remoteAddress?.ipAddress ?? "unix")
    }

    func channelActive(context: ChannelHandlerContext) {
        let connections = engine.connections
        let current = connections.current.wrappingAdd(1, ordering: .relaxed).newValue
        counted = true
        connections.total.wrappingAdd(1, ordering: .relaxed)
        if current > engine.settings.maxConnections {
            connections.rejected.wrappingAdd(1, ordering: .relaxed)
            logger.notice("connection refused: too many open connections", metadata: ["peer": "\(peerDescription(context))"])
            closing = true
            var reply = context.channel.allocator.buffer(capacity: 40)
            reply.writeStaticString(Self.tooManyConnections)
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            context.close(promise: nil)
            return
        }
        logger.info("connection opened", metadata: ["peer": "\(peerDescription(context))"])
        if let deadline = engine.authenticator?.settings.timeout, deadline > 0 {
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(deadline))) { [self] in
                guard !session.isAuthenticated, !closing else { return }
                logger.info("connection closed: not authenticated in time", metadata: ["peer": "\(peerDescription(context))"])
                close(context: context)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted {
            engine.connections.current.wrappingSubtract(1, ordering: .relaxed)
            counted = false
        }
        session.publishCounters()
        logger.info("connection closed", metadata: ["peer": "\(peerDescription(context))"])
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        session.countReceived(incoming.readableBytes)
        if input.readableBytes == 0 {
            input = incoming
        } else {
            input.writeBuffer(&incoming)
        }
        if !suspended { drive(context: context) }
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
                    suspended = true
                    return
                }
            case .close:
                close(context: context)
                return
            case .shutdown:
                logger.notice("shutdown requested by a client", metadata: ["peer": "\(peerDescription(context))"])
                close(context: context)
                onShutdown()
                return
            }
        }
    }

    private func close(context: ChannelHandlerContext) {
        closing = true
        flushOutput(context: context)
        session.publishCounters()
        context.close(promise: nil)
    }

    /// Hands the replies to the channel and flushes. Once the socket has taken them (usually at
    /// once) the channel lets go of the buffer, so `clear()` reuses its memory instead of allocating.
    private func flushOutput(context: ChannelHandlerContext) {
        guard output.readableBytes > 0 else { return }
        session.countSent(output.readableBytes)
        context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        output.clear()
    }

    // MARK: back-pressure

    func read(context: ChannelHandlerContext) {
        if suspended || !context.channel.isWritable {
            readRequested = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if suspended {
                suspended = false
                drive(context: context)
                flushOutput(context: context)
            }
            if readRequested, !suspended, !closing {
                readRequested = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            logger.info("connection closed: idle timeout", metadata: ["peer": "\(peerDescription(context))"])
            closing = true
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["peer": "\(peerDescription(context))", "error": "\(error)"])
        closing = true
        context.close(promise: nil)
    }

    private func peerDescription(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress.map { "\($0)" } ?? "unix"
    }
}
