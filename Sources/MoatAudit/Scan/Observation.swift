/// What the probes of one endpoint saw; `AuditAssessment` turns it into findings.
public struct ServiceObservation: Sendable, Equatable {
    public enum Access: String, Sendable, Equatable {
        /// Commands are answered without authentication.
        case open
        /// The service answers, but only to say authentication is required.
        case authenticationRequired = "authentication-required"
        /// The protocol is not spoken here (no answer, a close, or something else).
        case notServed = "not-served"
    }

    public enum TLS: Sendable, Equatable {
        case notProbed
        case notOffered
        /// The handshake completed. `clientCertificateRequired`: the server then ended the session for
        /// want of a client certificate.
        case offered(clientCertificateRequired: Bool)
    }

    /// One UDP request and everything that came back for it.
    public struct UDPExchange: Sendable, Equatable {
        public var command: String
        public var requestBytes: Int
        public var replyBytes: Int
        public var datagrams: Int
        public var factor: Double { requestBytes == 0 ? 0 : Double(replyBytes) / Double(requestBytes) }

        public init(command: String, requestBytes: Int, replyBytes: Int, datagrams: Int) {
            self.command = command
            self.requestBytes = requestBytes
            self.replyBytes = replyBytes
            self.datagrams = datagrams
        }
    }

    public var endpoint: Endpoint
    public var tcpOpen = false
    public var text = Access.notServed
    public var binary = Access.notServed
    public var version: String?
    public var saslMechanisms: [String] = []
    public var statsReadable = false
    /// The key-listing commands the server accepted, with what they returned ("3 keys", "none stored").
    public var enumeration: [String: String] = [:]
    /// Nil unless `--intrusive`: whether an unauthenticated set (then delete) of a probe key succeeded.
    public var writable: Bool?
    public var tls = TLS.notProbed
    /// The text protocol inside TLS (`version` sent after the handshake).
    public var tlsText = Access.notServed
    /// The UDP exchanges that got an answer (empty: UDP not probed or not answering).
    public var udp: [UDPExchange] = []
    public var udpProbed = false
    /// The UDP port probed (nil: the endpoint's own).
    public var udpPort: Int?

    public init(endpoint: Endpoint) {
        self.endpoint = endpoint
    }

    /// True when something at this endpoint speaks memcached's protocols.
    public var isMemcached: Bool {
        text != .notServed || binary != .notServed || tlsText != .notServed
            || tls == .offered(clientCertificateRequired: true) || !udp.isEmpty
    }

    public var tlsOffered: Bool {
        if case .offered = tls { return true }
        return false
    }

    /// TLS offered and neither plaintext protocol answered.
    public var tlsRequired: Bool { tlsOffered && text == .notServed && binary == .notServed }

    public var udpFactor: Double { udp.map(\.factor).max() ?? 0 }
}
