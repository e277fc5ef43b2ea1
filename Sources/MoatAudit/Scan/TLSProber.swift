import MoatTLS
import NIOCore

/// Does the endpoint complete a TLS handshake, and does memcached answer inside it? The scanner
/// checks the door, not the identity behind it, so certificates are not verified here. The same
/// OpenSSL transform the server uses, over the scanner's own bounded blocking socket.
final class TLSProber: Sendable {
    let context: TLSContext

    init() throws {
        context = try TLSContext.client(ca: nil)
    }

    /// What TLS at the endpoint allows: whether it is offered, and how memcached answers `version` inside it.
    func probe(_ endpoint: Endpoint, timeout: Double) -> (
        ServiceObservation.TLS, ServiceObservation.Access, version: String?
    ) {
        switch exchange(endpoint, timeout: timeout) {
        case .answered(let line):
            let trimmed = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if trimmed.hasPrefix("VERSION ") {
                return (.offered(clientCertificateRequired: false), .open, String(trimmed.dropFirst(8)))
            }
            let authentication = EndpointProber.isError(trimmed) && trimmed.lowercased().contains("auth")
            return (
                .offered(clientCertificateRequired: false), authentication ? .authenticationRequired : .notServed, nil
            )
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

    /// The handshake, then `version` and its first line; bounded by `timeout` whatever the peer does.
    private func exchange(_ endpoint: Endpoint, timeout: Double) -> Outcome? {
        let deadline = ProbeSocket.now() + timeout
        guard let socket = try? ProbeSocket(endpoint, timeout: timeout),
            let stream = TLSStream(context: context, server: false)
        else { return nil }
        defer { socket.close() }
        var plaintext = ByteBuffer()
        var records = ByteBuffer()
        var asked = false
        while true {
            let (status, _) = stream.decrypt(into: &plaintext, limit: 4_096 - plaintext.readableBytes)
            if stream.handshakeComplete, !asked {
                asked = true
                guard stream.encrypt(ByteBuffer(string: "version\r\n")) else { return .handshakeOnly }
            }
            stream.takeCiphertext(into: &records)
            if records.readableBytes > 0 {
                let bytes = Array(records.readableBytesView)
                records.clear()
                guard (try? socket.send(bytes)) != nil else { return asked ? .handshakeOnly : nil }
            }
            let received = Array(plaintext.readableBytesView)
            if let end = received.firstIndex(of: 10) ?? (received.count >= 4_096 ? received.count - 1 : nil) {
                return .answered(String(decoding: received[..<end], as: UTF8.self))
            }
            switch status {
            case .failed(let why): return asked ? .endedAfterHandshake(why) : nil
            case .closed: return asked ? .handshakeOnly : nil
            case .needInput: break
            }
            let remaining = deadline - ProbeSocket.now()
            guard remaining > 0 else { return nil }
            let (bytes, closed) = socket.receive(limit: 16_384, within: remaining) { !$0.isEmpty }
            if bytes.isEmpty {
                // Closed, or silent until the deadline.
                return closed && asked ? .handshakeOnly : nil
            }
            guard bytes.withUnsafeBytes({ stream.receive($0) }) else { return nil }
        }
    }
}
