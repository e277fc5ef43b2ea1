import MoatAccess
import MoatTestSupport
import Testing

@Suite struct SourceRateLimiterTests {
    @Test func datagramsAndBytesAreBothLimited() {
        let clock = ManualSeconds()
        let limiter = SourceRateLimiter(
            limits: .init(datagramsPerSecond: 5, bytesPerSecond: 1000), now: { clock.now() })
        #expect((0..<10).filter { _ in limiter.admit("a", bytes: 10) }.count == 5)
        #expect(limiter.admit("b", bytes: 600))
        #expect(!limiter.admit("b", bytes: 600))  // bytes run out before datagrams
        clock.advance(0.6)
        #expect(limiter.admit("b", bytes: 600))  // 0.6 s refilled 600 bytes
        #expect(limiter.admit("a", bytes: 10))  // and 3 datagrams
    }

    @Test func theTableIsBoundedAndFailsClosed() {
        let clock = ManualSeconds()
        let limiter = SourceRateLimiter(
            limits: .init(datagramsPerSecond: 5, bytesPerSecond: 1000, maximumSources: 3), now: { clock.now() })
        for source in ["a", "b", "c"] { #expect(limiter.admit(source, bytes: 1)) }
        #expect(!limiter.admit("d", bytes: 1))  // full of active sources: a new one is refused
        #expect(limiter.admit("a", bytes: 1))  // known ones go on
        clock.advance(2)
        #expect(limiter.admit("d", bytes: 1))  // idle sources were forgotten to make room
        #expect(limiter.trackedSources == 1)
    }
}
