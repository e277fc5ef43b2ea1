import Logging
import MoatConfig
import MoatEngine
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

/// The server's TLS certificates (`-Z`), loaded at start (while still root) and again on SIGHUP or
/// `refresh_certs`: new connections get the new context, open ones keep theirs, and a broken file
/// leaves the old certificates in place.
public final class TLSCertificates: Sendable {
    public let options: TLSOptions
    private let current: Mutex<NIOSSLContext>

    public init(options: TLSOptions) throws {
        self.options = options
        self.current = Mutex(try Self.makeContext(options))
    }

    var context: NIOSSLContext { current.withLock { $0 } }

    /// Reads the files again; throws (keeping the current certificates) when they do not load.
    public func reload() throws {
        let fresh = try Self.makeContext(options)
        current.withLock { $0 = fresh }
    }

    static func makeContext(_ options: TLSOptions) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(options.chainCertificate).map { NIOSSLCertificateSource.certificate($0) }
            guard !chain.isEmpty else { throw TLSSetupError(description: "\(options.chainCertificate): no certificate in it") }
            let key = try NIOSSLPrivateKey(file: options.privateKey ?? options.chainCertificate, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = options.minimumVersion == "1.3" ? .tlsv13 : .tlsv12
            switch options.verifyMode {
            case 0: configuration.certificateVerification = .none
            case 1: configuration.certificateVerification = .optionalVerification
            default: configuration.certificateVerification = .noHostnameVerification  // a client cert from the CA is required
            }
            if let ca = options.caCertificate {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                configuration.sendCANameList = true
            }
            return try NIOSSLContext(configuration: configuration)
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError(
                description: "cannot load TLS certificates (ssl_chain_cert=\(options.chainCertificate)"
                    + (options.privateKey.map { ", ssl_key=\($0)" } ?? "") + (options.caCertificate.map { ", ssl_ca_cert=\($0)" } ?? "")
                    + "): \(error)")
        }
    }
}

public struct TLSSetupError: Error, CustomStringConvertible {
    public var description: String
}

/// Closes a TLS connection whose handshake has not completed in time (a client that opens the port and
/// sends nothing, or dribbles a ClientHello); removed once the handshake is done.
final class TLSHandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let seconds: Int64
    private let onTimeout: (ChannelHandlerContext) -> Void
    private var deadline: Scheduled<Void>?

    init(seconds: Int, onTimeout: @escaping (ChannelHandlerContext) -> Void) {
        self.seconds = Int64(seconds)
        self.onTimeout = onTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .seconds(seconds)) {
            let (handler, context) = bound.value
            handler.onTimeout(context)
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Pass the event on first: once removed, this handler's context forwards nothing.
        context.fireUserInboundEventTriggered(event)
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            deadline?.cancel()
            deadline = nil
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }
}
