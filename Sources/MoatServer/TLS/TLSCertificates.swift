import MoatConfig
import MoatTLS
import Synchronization

/// The server's TLS certificates (`-Z`), loaded at start (while still root) and again on SIGHUP or
/// `refresh_certs`: new connections get the new context, open ones keep theirs, and a broken file
/// leaves the old certificates in place.
package final class TLSCertificates: Sendable {
    package let options: TLSOptions
    private let current: Mutex<TLSContext>

    package init(options: TLSOptions) throws {
        self.options = options
        self.current = Mutex(try Self.makeContext(options))
    }

    var context: TLSContext { current.withLock { $0 } }

    /// Reads the files again; throws (keeping the current certificates) when they do not load.
    package func reload() throws {
        let fresh = try Self.makeContext(options)
        current.withLock { $0 = fresh }
    }

    /// A server-side stream for one new connection, on the current certificates.
    func makeStream() -> TLSStream? { TLSStream(context: context, server: true) }

    static func makeContext(_ options: TLSOptions) throws -> TLSContext {
        do {
            return try TLSContext.server(
                chain: options.chainCertificate, key: options.privateKey, ca: options.caCertificate,
                verifyMode: options.verifyMode, minimumTLS13: options.minimumVersion == "1.3")
        } catch {
            throw TLSSetupError(
                description: "cannot load TLS certificates (ssl_chain_cert=\(options.chainCertificate)"
                    + (options.privateKey.map { ", ssl_key=\($0)" } ?? "")
                    + (options.caCertificate.map { ", ssl_ca_cert=\($0)" } ?? "")
                    + "): \(error)")
        }
    }
}
