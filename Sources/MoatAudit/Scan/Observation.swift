/// What the probes of one endpoint saw; `AuditAssessment` turns it into findings.
package struct ServiceObservation: Sendable, Equatable {
    package enum Access: String, Sendable, Equatable {
        /// Commands are answered without authentication.
        case open
        /// The service answers, but only to say authentication is required.
        case authenticationRequired = "authentication-required"
        /// The protocol is not spoken here (no answer, a close, or something else).
        case notServed = "not-served"
    }

    package enum TLS: Sendable, Equatable {
        case notProbed
        case notOffered
        /// The handshake completed. `clientCertificateRequired`: the server then ended the session for
        /// want of a client certificate.
        case offered(clientCertificateRequired: Bool)
    }

    /// One UDP request and everything that came back for it.
    package struct UDPExchange: Sendable, Equatable {
        package var command: String
        package var requestBytes: Int
        package var replyBytes: Int
        package var datagrams: Int
        package var factor: Double { requestBytes == 0 ? 0 : Double(replyBytes) / Double(requestBytes) }

        package init(command: String, requestBytes: Int, replyBytes: Int, datagrams: Int) {
            self.command = command
            self.requestBytes = requestBytes
            self.replyBytes = replyBytes
            self.datagrams = datagrams
        }
    }

    package var endpoint: Endpoint
    package var tcpOpen = false
    package var text = Access.notServed
    package var binary = Access.notServed
    package var version: String?
    package var saslMechanisms: [String] = []
    package var statsReadable = false
    /// The key-listing commands the server accepted, with what they returned ("3 keys", "none stored").
    package var enumeration: [String: String] = [:]
    /// Nil unless `--intrusive`: whether an unauthenticated set (then delete) of a probe key succeeded.
    package var writable: Bool?
    package var tls = TLS.notProbed
    /// The text protocol inside TLS (`version` sent after the handshake).
    package var tlsText = Access.notServed
    /// The UDP exchanges that got an answer (empty: UDP not probed or not answering).
    package var udp: [UDPExchange] = []
    package var udpProbed = false
    /// The UDP port probed (nil: the endpoint's own).
    package var udpPort: Int?

    package init(endpoint: Endpoint) {
        self.endpoint = endpoint
    }

    /// True when something at this endpoint speaks memcached's protocols.
    package var isMemcached: Bool {
        text != .notServed || binary != .notServed || tlsText != .notServed
            || tls == .offered(clientCertificateRequired: true) || !udp.isEmpty
    }

    package var tlsOffered: Bool {
        if case .offered = tls { return true }
        return false
    }

    /// TLS offered and neither plaintext protocol answered.
    package var tlsRequired: Bool { tlsOffered && text == .notServed && binary == .notServed }

    package var udpFactor: Double { udp.map(\.factor).max() ?? 0 }
}
