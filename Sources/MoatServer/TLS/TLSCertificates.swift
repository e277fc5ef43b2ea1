import CMoatTLS
import MoatConfig
import Synchronization

/// One OpenSSL context (certificates, CA, verify mode, version floor). Sessions made from it hold a
/// reference of their own, so a reload can let go of the old context while connections still use it.
final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }

    deinit { moat_tls_context_free(pointer) }

    /// A server context for `options`; throws with OpenSSL's reason.
    static func server(_ options: TLSOptions) throws -> TLSContext {
        var error = [CChar](repeating: 0, count: 512)
        let made = moat_tls_server_context_new(
            options.chainCertificate, options.privateKey, options.caCertificate, Int32(options.verifyMode),
            options.minimumVersion == "1.3" ? 1 : 0, &error, error.count)
        guard let made else { throw TLSSetupError(description: String(nulTerminated: error)) }
        return TLSContext(made)
    }

    /// A client context (tests; trusts `ca`, presents `certificate` when given).
    static func client(ca: String?, certificate: String? = nil, key: String? = nil) throws -> TLSContext {
        var error = [CChar](repeating: 0, count: 512)
        guard let made = moat_tls_client_context_new(ca, certificate, key, &error, error.count) else {
            throw TLSSetupError(description: String(nulTerminated: error))
        }
        return TLSContext(made)
    }

    /// The OpenSSL the server runs with ("OpenSSL 3.0.19 ...").
    static var libraryVersion: String { String(cString: moat_tls_library_version()) }
}

/// The server's TLS certificates (`-Z`), loaded at start (while still root) and again on SIGHUP or
/// `refresh_certs`: new connections get the new context, open ones keep theirs, and a broken file
/// leaves the old certificates in place.
public final class TLSCertificates: Sendable {
    public let options: TLSOptions
    private let current: Mutex<TLSContext>

    public init(options: TLSOptions) throws {
        self.options = options
        self.current = Mutex(try Self.makeContext(options))
    }

    var context: TLSContext { current.withLock { $0 } }

    /// Reads the files again; throws (keeping the current certificates) when they do not load.
    public func reload() throws {
        let fresh = try Self.makeContext(options)
        current.withLock { $0 = fresh }
    }

    /// A server-side stream for one new connection, on the current certificates.
    func makeStream() -> TLSStream? { TLSStream(context: context, server: true) }

    static func makeContext(_ options: TLSOptions) throws -> TLSContext {
        do {
            return try TLSContext.server(options)
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
