import CMoatTLS
import NIOCore

/// One OpenSSL context (certificates, CA, verify mode, version floor). Sessions made from it hold a
/// reference of their own, so a reload can let go of the old context while connections still use it.
package final class TLSContext: @unchecked Sendable {
    package let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }

    deinit { moat_tls_context_free(pointer) }

    /// A server context: the chain and key files (key nil: in the chain), the CA client certificates must
    /// chain to, memcached's ssl_verify_mode, and TLS 1.3 as the floor (else 1.2); throws with OpenSSL's reason.
    package static func server(chain: String, key: String?, ca: String?, verifyMode: Int, minimumTLS13: Bool) throws
        -> TLSContext
    {
        var error = [CChar](repeating: 0, count: 512)
        let made = moat_tls_server_context_new(
            chain, key, ca, Int32(verifyMode), minimumTLS13 ? 1 : 0, &error, error.count)
        guard let made else { throw TLSSetupError(description: String(nulTerminated: error)) }
        return TLSContext(made)
    }

    /// A client context: trusts `ca` (nil: verifies nothing, as `moat audit`'s probe, which checks the door
    /// and not the identity), presents `certificate` when given.
    package static func client(ca: String?, certificate: String? = nil, key: String? = nil) throws -> TLSContext {
        var error = [CChar](repeating: 0, count: 512)
        guard let made = moat_tls_client_context_new(ca, certificate, key, &error, error.count) else {
            throw TLSSetupError(description: String(nulTerminated: error))
        }
        return TLSContext(made)
    }
}

/// Why a TLS context could not be made (OpenSSL's reason, or which file).
package struct TLSSetupError: Error, CustomStringConvertible {
    package var description: String

    package init(description: String) { self.description = description }
}

/// One connection's TLS, as a transform with no socket: ciphertext received goes in (`receive`),
/// plaintext comes out (`decrypt`); plaintext replies go in (`encrypt`), records come out
/// (`takeCiphertext`). The connection loop does every read and write; this only says what the bytes are.
package final class TLSStream {
    package enum Status: Equatable {
        /// Everything decryptable so far is out; more ciphertext is needed.
        case needInput
        /// The peer sent close_notify.
        case closed
        /// A fatal error (a bad certificate, plaintext on a TLS port, a corrupt record): close. An alert
        /// for the peer may be waiting in `takeCiphertext`.
        case failed(String)
    }

    private let session: OpaquePointer
    /// The context stays alive for as long as the session (a reload may drop the server's reference).
    private let context: TLSContext

    package init?(context: TLSContext, server: Bool, host: String? = nil) {
        guard let session = moat_tls_session_new(context.pointer, server ? 1 : 0, host) else { return nil }
        self.session = session
        self.context = context
    }

    deinit { moat_tls_session_free(session) }

    /// Buffers ciphertext from the peer; false if it cannot (out of memory: close).
    package func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
        return moat_tls_feed(session, base, bytes.count) == 0
    }

    /// Appends what decrypts to `plaintext`, at most `limit` bytes per call (the caller bounds its buffer):
    /// `.needInput` with nothing appended means it needs more ciphertext (or `limit` was reached: call again
    /// when the buffer has room — `appended` says how much came).
    package func decrypt(into plaintext: inout ByteBuffer, limit: Int) -> (status: Status, appended: Int) {
        var appended = 0
        while appended < limit {
            var result = 0
            let room = min(limit - appended, 16 * 1024)
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { target in
                result = moat_tls_read(session, target.baseAddress, min(target.count, room))
                return max(result, 0)
            }
            if result > 0 {
                appended += result
                // Nothing buffered: another SSL_read would only say so (one call fewer per request).
                if moat_tls_has_input(session) == 0 { return (.needInput, appended) }
                continue
            }
            if result == 0 { return (.needInput, appended) }
            if result == -2 { return (.closed, appended) }
            return (.failed(Self.lastError()), appended)
        }
        return (.needInput, appended)
    }

    /// Turns `plaintext` (all of its readable bytes) into records; false on a fatal error.
    package func encrypt(_ plaintext: ByteBuffer) -> Bool {
        plaintext.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
            return moat_tls_write(session, base, bytes.count) == 0
        }
    }

    package var hasCiphertext: Bool { moat_tls_pending_output(session) > 0 }

    /// Moves the records waiting to be sent onto `buffer`.
    package func takeCiphertext(into buffer: inout ByteBuffer) {
        while true {
            let pending = moat_tls_pending_output(session)
            guard pending > 0 else { return }
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { target in
                moat_tls_take_output(session, target.baseAddress, target.count)
            }
        }
    }

    package var handshakeComplete: Bool { moat_tls_handshake_done(session) == 1 }

    /// Queues close_notify (the end of the server's replies).
    package func closeNotify() { moat_tls_close_notify(session) }

    /// Gives OpenSSL's record buffers back while the connection is idle (false: a record is partly buffered).
    @discardableResult
    package func releaseBuffers() -> Bool { moat_tls_release_buffers(session) == 1 }

    /// The verified client certificate's subject common names: nil without a verified certificate; else
    /// how many there are and the first (nil if it holds a NUL byte or is too long to be a user name).
    package func peerCommonNames() -> (count: Int, first: String?)? {
        var name = [CChar](repeating: 0, count: 256)
        let count = Int(moat_tls_peer_common_names(session, &name, name.count))
        guard count >= 0 else { return nil }
        let first = name[0] == 0 ? nil : String(nulTerminated: name)
        return (count, first)
    }

    package var version: String { String(cString: moat_tls_version(session)) }

    package static func lastError() -> String {
        var text = [CChar](repeating: 0, count: 256)
        moat_tls_last_error(&text, text.count)
        return String(nulTerminated: text)
    }
}

extension String {
    /// The text in a C buffer up to its first NUL.
    package init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
