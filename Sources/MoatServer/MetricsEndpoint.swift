import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatMetrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `-o metrics_port=N`: `GET /metrics` in Prometheus's text format on its own listener (loopback by
/// default). Scrapes are rare and small, so one event loop serves them; every connection is bounded:
/// at most 16 at once (4 per client address, so one host cannot take them all), 10 s idle, the
/// request head capped by NIOHTTP1's parser limit, bodies ignored.
final class MetricsEndpoint: Sendable {
    static let maximumConnections = 16
    static let maximumPerAddress = 4

    let address: ListenAddress
    let exporter = StatsExporter()
    let engine: Engine
    let filter: AddressFilter
    let logger: Logger
    private let channel = Mutex<Channel?>(nil)
    /// Open connections: all of them, and per client (`PeerAddress.throttleKey`: an IPv6 /64).
    private let open = Mutex(SlotsPerKey())

    init(address: ListenAddress, engine: Engine, filter: AddressFilter, logger: Logger) {
        self.address = address
        self.engine = engine
        self.filter = filter
        self.logger = logger
    }

    /// Binds (while still root, accepting paused until `resume`).
    func bind(on group: EventLoopGroup) throws {
        let bound = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 16)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelInitializer { [self] channel in
                let peer = peerAddress(of: channel)
                let key = peer?.throttleKey ?? "unknown"
                guard filter.decision(for: peer) == .allowed, admit(key) else { return channel.close() }
                channel.closeFuture.whenComplete { [self] _ in release(key) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandlers(
                        IdleStateHandler(allTimeout: .seconds(10)), MetricsHTTPHandler(endpoint: self))
                }
            }
            .bind(host: address.host, port: address.port).wait()
        channel.withLock { $0 = bound }
    }

    /// Takes a slot for `key` if one is free overall and `key` holds fewer than its share.
    private func admit(_ key: String) -> Bool {
        open.withLock { open in
            open.total < Self.maximumConnections && open.take(key, limit: Self.maximumPerAddress)
        }
    }

    private func release(_ key: String) {
        open.withLock { $0.give(key) }
    }

    func resume() throws {
        try channel.withLock { $0 }?.setOption(ChannelOptions.autoRead, value: true).wait()
    }

    func stop() {
        channel.withLock { $0 }?.close(promise: nil)
    }

    func wait() {
        try? channel.withLock { $0 }?.closeFuture.wait()
    }

    /// The exposition text: every bucket summed in memcached_exporter's names, plus per-bucket lines.
    func render() -> String {
        let snapshot = engine.statsSnapshot(summed: true)
        let figures = snapshot.general().compactMap { stat in stat.value.number.map { (stat.name, $0) } }
        let buckets = engine.bucketStats().flatMap { bucket in
            bucket.fields.compactMap { field in field.value.number.map { (bucket.name, field.field, $0) } }
        }
        return exporter.scrape(stats: figures, version: snapshot.version, buckets: buckets)
    }
}

private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let endpoint: MetricsEndpoint
    var head: HTTPRequestHead?

    init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break  // a scrape has no body; whatever comes is dropped, not buffered
        case .end:
            guard let request = head else { return }
            head = nil
            respond(to: request, context: context)
        }
    }

    func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        let status: HTTPResponseStatus
        var body: String
        var contentType = "text/plain; charset=utf-8"
        if path != "/metrics" {
            (status, body) = (.notFound, "moat serves /metrics only\n")
        } else if request.method != .GET && request.method != .HEAD {
            (status, body) = (.methodNotAllowed, "GET /metrics\n")
        } else {
            status = .ok
            body = endpoint.render()
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        }
        let bytes = ByteBuffer(string: body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
            promise: nil)
        if request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil) }
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
