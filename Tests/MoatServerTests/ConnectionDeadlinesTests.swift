import MoatConfig
import MoatEngine
import Testing

@testable import MoatServer

/// The deadlines the epoll loops close connections by, driven with a manual clock (milliseconds).
@Suite struct ConnectionDeadlinesTests {
    typealias Limits = ConnectionDeadlines.Limits

    @Test func nothingExpiresWithEveryDeadlineOff() {
        let deadlines = ConnectionDeadlines(limits: Limits(), now: 0)
        #expect(!Limits().any)
        #expect(deadlines.expired(at: 86_400_000, isAuthenticated: false) == nil)
    }

    @Test func idleRunsFromTheLastBytesReceived() {
        var deadlines = ConnectionDeadlines(limits: Limits(idle: 5), now: 1_000)
        #expect(deadlines.expired(at: 5_999, isAuthenticated: true) == nil)
        deadlines.received(at: 5_000)
        #expect(deadlines.expired(at: 6_000, isAuthenticated: true) == nil)
        #expect(deadlines.expired(at: 9_999, isAuthenticated: true) == nil)
        #expect(deadlines.expired(at: 10_000, isAuthenticated: true) == .idleTimeout)
    }

    @Test func authenticationRunsFromTheOpenAndStopsMatteringOnceAuthenticated() {
        var deadlines = ConnectionDeadlines(limits: Limits(authentication: 10), now: 0)
        deadlines.received(at: 9_000)  // activity does not extend it
        #expect(deadlines.expired(at: 9_999, isAuthenticated: false) == nil)
        #expect(deadlines.expired(at: 10_000, isAuthenticated: false) == .authTimeout)
        #expect(deadlines.expired(at: 60_000, isAuthenticated: true) == nil)
    }

    @Test func commandRunsFromTheFirstByteOfAnIncompleteRequest() {
        var deadlines = ConnectionDeadlines(limits: Limits(command: 10), now: 0)
        deadlines.request(incomplete: true, at: 1_000)
        deadlines.request(incomplete: true, at: 8_000)  // still the same request: the clock keeps running
        #expect(deadlines.partialSince == 1_000)
        #expect(deadlines.expired(at: 10_999, isAuthenticated: true) == nil)
        #expect(deadlines.expired(at: 11_000, isAuthenticated: true) == .slowCommand)
        deadlines.request(incomplete: false, at: 11_000)
        #expect(deadlines.expired(at: 50_000, isAuthenticated: true) == nil)
        deadlines.request(incomplete: true, at: 50_000)
        deadlines.forgetRequest()  // a stopping server
        #expect(deadlines.expired(at: 90_000, isAuthenticated: true) == nil)
    }

    @Test func outputRunsWhileRepliesDoNotDrain() {
        var deadlines = ConnectionDeadlines(limits: Limits(output: 30), now: 0)
        deadlines.stalled(at: 2_000)
        deadlines.stalled(at: 20_000)  // a second report of the same stall
        #expect(deadlines.expired(at: 31_999, isAuthenticated: true) == nil)
        #expect(deadlines.expired(at: 32_000, isAuthenticated: true) == .outputStalled)
        deadlines.drained()
        #expect(deadlines.expired(at: 100_000, isAuthenticated: true) == nil)
    }

    @Test func anUnauthenticatedClientIsClosedForThatFirst() {
        var deadlines = ConnectionDeadlines(limits: Limits(idle: 1, authentication: 1, command: 1, output: 1), now: 0)
        deadlines.request(incomplete: true, at: 0)
        deadlines.stalled(at: 0)
        #expect(deadlines.expired(at: 1_000, isAuthenticated: false) == .authTimeout)
        #expect(deadlines.expired(at: 1_000, isAuthenticated: true) == .slowCommand)
        deadlines.request(incomplete: false, at: 0)
        #expect(deadlines.expired(at: 1_000, isAuthenticated: true) == .outputStalled)
        deadlines.drained()
        #expect(deadlines.expired(at: 1_000, isAuthenticated: true) == .idleTimeout)
    }

    @Test func limitsComeFromTheFlags() throws {
        let configuration = try ServeOptions.parse(["-o", "idle_timeout=7,command_timeout=3,output_timeout=0"])
            .resolve()
        #expect(Limits(configuration) == Limits(idle: 7, authentication: 0, command: 3, output: 0))
        #expect(
            Limits(try ServeOptions.parse([]).resolve()) == Limits(idle: 0, authentication: 0, command: 10, output: 30))
    }

    @Test func onlyMoatsOwnDecisionsAreLimits() {
        let limits = CloseReason.allCases.filter(\.isLimit).map(\.rawValue)
        #expect(
            Set(limits) == [
                "idle_timeout", "auth_timeout", "slow_command", "output_stalled", "output_budget", "access_revoked",
                "tls_handshake_timeout", "tls_error",
            ])
    }
}
