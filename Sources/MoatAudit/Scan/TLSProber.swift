import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// Does the endpoint complete a TLS handshake, and does memcached answer inside it? The scanner
/// checks the door, not the identity behind it, so certificates are not verified here.
final class TLSProber: Sendable {
    let group: MultiThreadedEventLoopGroup
    let context: NIOSSLContext

    init() throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        context = try NIOSSLContext(configuration: configuration)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    func shutdown() {
        try? group.syncShutdownGracefully()
    }

    /// What TLS at the endpoint allows: whether it is offered, and how memcached answers `version` inside it.
    func probe(_ endpoint: Endpoint, timeout: Double) -> (ServiceObservation.TLS, ServiceObservation.Access, version: String?) {
        let loop = group.next()
        let promise = loop.makePromise(of: Outcome.self)
        let context = self.context
        let limit = TimeAmount.milliseconds(Int64(timeout * 1000))
        let connected = ClientBootstrap(group: loop)
            .connectTimeout(limit)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(context: context, serverHostname: nil)
                    try channel.pipeline.syncOperations.addHandlers(handler, TLSProbeHandler(promise: promise))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        connected.whenFailure { promise.fail($0) }
        // Bounded whatever the peer does: a server that accepts and then says nothing ends here.
        let timer = loop.scheduleTask(in: limit) { promise.fail(ProbeFailure.timedOut) }
        let outcome = try? promise.futureResult.wait()
        timer.cancel()
        if let channel = try? connected.wait() { try? channel.close().wait() }
        switch outcome {
        case .answered(let line):
            let trimmed = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if trimmed.hasPrefix("VERSION ") {
                return (.offered(clientCertificateRequired: false), .open, String(trimmed.dropFirst(8)))
            }
            let authentication = EndpointProber.isError(trimmed) && trimmed.lowercased().contains("auth")
            return (.offered(clientCertificateRequired: false), authentication ? .authenticationRequired : .notServed, nil)
        case .endedAfterHandshake(let reason):
            return (.offered(clientCertificateRequired: reason.uppercased().contains("CERTIFICATE")), .notServed, nil)
        case .handshakeOnly:
            return (.offered(clientCertificateRequired: false), .notServed, nil)
        case nil:
            return (.notOffered, .notServed, nil)
        }
    }

    enum Outcome: Sendable {
        case answered(String)
        case endedAfterHandshake(String)
        case handshakeOnly
    }
}

/// Sends `version` once the handshake completes and reports the first line back.
private final class TLSProbeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let promise: EventLoopPromise<TLSProber.Outcome>
    var handshakeDone = false
    var received: [UInt8] = []

    init(promise: EventLoopPromise<TLSProber.Outcome>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            handshakeDone = true
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "version\r\n")), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readBytes(length: min(buffer.readableBytes, 4_096 - received.count)) ?? []
        if let end = received.firstIndex(of: 10) ?? (received.count >= 4_096 ? received.count - 1 : nil) {
            promise.succeed(.answered(String(decoding: received[..<end], as: UTF8.self)))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if handshakeDone {
            promise.succeed(.endedAfterHandshake("\(error)"))
        } else {
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if handshakeDone {
            promise.succeed(.handshakeOnly)
        } else {
            promise.fail(ProbeFailure.refused)
        }
        context.fireChannelInactive()
    }
}
