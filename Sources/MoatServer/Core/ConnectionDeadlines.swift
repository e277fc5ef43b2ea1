import MoatConfig
import MoatEngine

/// One connection's clocks and the deadlines they run against: the one place that says when a client
/// has been idle, unauthenticated, slow to finish a request or slow to read its replies for too long.
/// Pure (times are monotonic milliseconds the transport passes in), so it is tested with a manual clock;
/// each connection of the epoll loops holds one, asked `expired` on the loop's quarter-second tick.
struct ConnectionDeadlines: Sendable {
    /// Seconds each deadline allows; 0 turns it off.
    struct Limits: Sendable, Equatable {
        var idle = 0
        var authentication = 0
        var command = 0
        var output = 0
        /// TLS connections only: from accept to the end of the handshake.
        var handshake = 0

        init(idle: Int = 0, authentication: Int = 0, command: Int = 0, output: Int = 0, handshake: Int = 0) {
            self.idle = idle
            self.authentication = authentication
            self.command = command
            self.output = output
            self.handshake = handshake
        }

        /// `-o idle_timeout`, `auth_timeout` (only when authentication is on), `command_timeout`, `output_timeout`.
        init(_ configuration: ServerConfiguration) {
            self.init(
                idle: configuration.idleTimeout, authentication: configuration.authentication?.timeout ?? 0,
                command: configuration.commandTimeout, output: configuration.outputTimeout,
                handshake: configuration.tls?.handshakeTimeout ?? 0)
        }

        /// Whether any deadline is on (else a transport need not tick at all).
        var any: Bool { idle > 0 || authentication > 0 || command > 0 || output > 0 || handshake > 0 }
    }

    let limits: Limits
    let openedAt: Int64
    /// When the client last sent bytes.
    private(set) var lastReceived: Int64
    /// When the request still incomplete in the input started arriving (nil: none is).
    private(set) var partialSince: Int64?
    /// When replies stopped draining (nil: they drain).
    private(set) var stalledSince: Int64?

    /// A TLS handshake has started and not finished (the handshake deadline applies).
    private(set) var handshaking: Bool

    /// `tls`: the connection starts with a handshake.
    init(limits: Limits, now: Int64, tls: Bool = false) {
        self.limits = limits
        openedAt = now
        lastReceived = now
        handshaking = tls
    }

    mutating func handshakeCompleted() { handshaking = false }

    mutating func received(at now: Int64) { lastReceived = now }

    /// After input was processed: whether a request is still incomplete, and whether any request was
    /// completed meanwhile. The command deadline runs from the first byte of a request until it is
    /// complete: a client that pipelines, mid-request at the end of almost every read, is held to it
    /// request by request, not for its whole stream (a bulk load was closed after 10 s as `slow_command`).
    mutating func request(incomplete: Bool, completedAny: Bool = false, at now: Int64) {
        if !incomplete {
            partialSince = nil
        } else if partialSince == nil || completedAny {
            partialSince = now
        }
    }

    mutating func stalled(at now: Int64) {
        if stalledSince == nil { stalledSince = now }
    }

    mutating func drained() { stalledSince = nil }

    /// A server that is stopping no longer holds a client to its command deadline.
    mutating func forgetRequest() { partialSince = nil }

    /// The deadline this connection has passed at `now`, if any: the TLS handshake's, then authentication
    /// (an unauthenticated client gets no more time by being slow), the request, the replies, idleness.
    func expired(at now: Int64, isAuthenticated: Bool) -> CloseReason? {
        if handshaking, limits.handshake > 0, now - openedAt >= Self.milliseconds(limits.handshake) {
            return .tlsHandshakeTimeout
        }
        if limits.authentication > 0, !isAuthenticated, now - openedAt >= Self.milliseconds(limits.authentication) {
            return .authTimeout
        }
        if limits.command > 0, let since = partialSince, now - since >= Self.milliseconds(limits.command) {
            return .slowCommand
        }
        if limits.output > 0, let since = stalledSince, now - since >= Self.milliseconds(limits.output) {
            return .outputStalled
        }
        if limits.idle > 0, now - lastReceived >= Self.milliseconds(limits.idle) {
            return .idleTimeout
        }
        return nil
    }

    private static func milliseconds(_ seconds: Int) -> Int64 { Int64(seconds) * 1000 }
}
