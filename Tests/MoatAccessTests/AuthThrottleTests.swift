import Dispatch
import MoatAccess
import MoatTestSupport
import Synchronization
import Testing

@Suite struct AuthThrottleTests {
    func throttle(_ configure: (inout AuthPolicy) -> Void = { _ in }) -> (AuthThrottle, ManualSeconds) {
        var policy = AuthPolicy()
        configure(&policy)
        let clock = ManualSeconds()
        return (AuthThrottle(policy: policy, now: { clock.now() }), clock)
    }

    @Test func defaults() {
        let policy = AuthPolicy()
        #expect(policy.failureBurst == 3 && policy.failureDelay == 1 && policy.maxFailureDelay == 30)
        #expect(policy.lockoutThreshold == 10 && policy.window == 600 && policy.lockoutDuration == 600)
        #expect(policy.maxTrackedAddresses == 65_536)
    }

    @Test func delayDoublesPerConsecutiveFailureUpToTheCap() {
        let (throttle, clock) = throttle {
            $0.failureBurst = 1
            $0.lockoutThreshold = 100
            $0.window = 10_000
        }
        #expect(throttle.admit("a") == .allowed)
        var expected = 1.0
        for _ in 0..<8 {
            #expect(throttle.recordFailure("a") == .throttled(retryAfter: expected))
            #expect(throttle.admit("a") == .throttled(retryAfter: expected))
            clock.advance(expected / 2)
            #expect(throttle.admit("a") == .throttled(retryAfter: expected / 2))
            #expect(throttle.admit("b") == .allowed)  // per address
            clock.advance(expected / 2)
            #expect(throttle.admit("a") == .allowed)
            expected = min(expected * 2, 30)
        }
        #expect(expected == 30)
        throttle.recordSuccess("a")
        #expect(throttle.recordFailure("a") == .throttled(retryAfter: 1))  // success reset the doubling
    }

    @Test func lockoutAfterThresholdWithinWindow() {
        let (throttle, clock) = throttle()
        for index in 1...10 {
            #expect(throttle.admit("a") == .allowed)
            let next = throttle.recordFailure("a")
            if index < 3 {
                #expect(next == .allowed)  // the burst
            } else if index < 10 {
                guard case .throttled(let wait) = next else {
                    Issue.record("\(next)")
                    return
                }
                clock.advance(wait)
            } else {
                #expect(next == .lockedOut(retryAfter: 600))
            }
        }
        #expect(throttle.lockouts == 1)
        clock.advance(100)
        #expect(throttle.admit("a") == .lockedOut(retryAfter: 500))
        #expect(throttle.recordFailure("a") == .lockedOut(retryAfter: 500))  // does not extend it
        throttle.recordSuccess("a")
        #expect(throttle.admit("a") == .lockedOut(retryAfter: 500))  // success does not lift a lockout
        #expect(throttle.admit("b") == .allowed)
        clock.advance(500)
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.recordFailure("a") == .allowed)  // a fresh start, with the burst again
        #expect(throttle.lockouts == 1)
    }

    @Test func failuresOutsideTheWindowDoNotCount() {
        let (throttle, clock) = throttle {
            $0.failureDelay = 0
            $0.lockoutThreshold = 3
            $0.window = 10
        }
        #expect(throttle.recordFailure("a") == .allowed)  // no delay configured
        clock.advance(6)
        #expect(throttle.recordFailure("a") == .allowed)
        clock.advance(6)
        #expect(throttle.recordFailure("a") == .allowed)  // the first one has left the window
        #expect(throttle.recordFailure("a") == .lockedOut(retryAfter: 600))
        #expect(throttle.lockouts == 1)
    }

    @Test func entriesExpire() {
        let (throttle, clock) = throttle()
        _ = throttle.recordFailure("a")
        _ = throttle.recordFailure("b")
        #expect(throttle.trackedAddresses == 2)
        clock.advance(599)
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.trackedAddresses == 2)  // still counting towards a lockout
        clock.advance(1)
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.trackedAddresses == 1)
        throttle.recordSuccess("b")
        #expect(throttle.trackedAddresses == 0)
    }

    @Test func memoryIsBoundedAndExpiredEntriesGoFirst() {
        let (throttle, clock) = throttle {
            $0.failureBurst = 1
            $0.maxTrackedAddresses = 100
        }
        for index in 0..<50 { _ = throttle.recordFailure("old\(index)") }
        clock.advance(700)  // all expired
        for index in 0..<10 {
            _ = throttle.recordFailure("lock")
            clock.advance(0.001 * Double(index))
        }
        #expect(throttle.admit("lock") != .allowed)
        clock.advance(1)
        for index in 0..<100 {
            _ = throttle.recordFailure("new\(index)")
            clock.advance(0.01)
        }
        #expect(throttle.trackedAddresses <= 100)
        // The most recent failures are still remembered, and so is the lockout (it lasts longer).
        guard case .throttled = throttle.admit("new99") else {
            Issue.record()
            return
        }
        guard case .lockedOut = throttle.admit("lock") else {
            Issue.record()
            return
        }
        for index in 0..<10_000 { _ = throttle.recordFailure("spray\(index)") }
        #expect(throttle.trackedAddresses <= 100)
        guard case .lockedOut = throttle.admit("lock") else {
            Issue.record()
            return
        }
    }

    @Test func concurrentUse() {
        let (throttle, _) = throttle {
            $0.lockoutThreshold = 1_000_000
            $0.window = 1e9
        }
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for index in 0..<2_000 {
                _ = throttle.admit("addr\(index % 50)")
                _ = throttle.recordFailure("addr\(index % 50)")
                if index % 7 == 0 { throttle.recordSuccess("addr\((index + worker) % 50)") }
            }
        }
        #expect(throttle.trackedAddresses <= 50)
    }
}

extension AuthThrottleTests {
    @Test func lockoutCanBeTurnedOff() {
        let (throttle, _) = throttle {
            $0.failureDelay = 0
            $0.lockoutThreshold = 0
        }
        for _ in 0..<100 { #expect(throttle.recordFailure("a") == .allowed) }
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.lockouts == 0)
    }

    @Test func addressKeysGroupIPv6ByTheir64() {
        #expect(AuthThrottle.addressKey("192.0.2.7") == "192.0.2.7")
        #expect(AuthThrottle.addressKey("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(AuthThrottle.addressKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64")
        #expect(AuthThrottle.addressKey("2001:db8:1:2::1") == AuthThrottle.addressKey("2001:db8:1:2:ffff::9"))
        #expect(AuthThrottle.addressKey("2001:db8:1:3::1") != AuthThrottle.addressKey("2001:db8:1:2::1"))
        #expect(AuthThrottle.addressKey("::1") == "::/64")
        #expect(AuthThrottle.addressKey("unix") == "unix")
        // A link-local address as getnameinfo prints it: the /64, whatever the interface.
        #expect(AuthThrottle.addressKey("fe80::1%eth0") == "fe80::/64")
        #expect(AuthThrottle.addressKey("fe80::2%3") == AuthThrottle.addressKey("fe80::1%eth0"))
    }
}

/// The burst, and the budget it leaves a guesser.
extension AuthThrottleTests {
    @Test func aBurstOfFailuresPassesBeforeTheDelayStarts() {
        let (throttle, clock) = throttle()
        #expect(throttle.recordFailure("a") == .allowed)  // a stale password: the next try is checked
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.recordFailure("a") == .allowed)
        #expect(throttle.recordFailure("a") == .throttled(retryAfter: 1))
        clock.advance(1)
        #expect(throttle.recordFailure("a") == .throttled(retryAfter: 2))
        throttle.recordSuccess("a")
        #expect(throttle.admit("a") == .allowed)
        #expect(throttle.recordFailure("a") == .allowed)  // success starts the delay over
        let (strict, _) = self.throttle { $0.failureBurst = 1 }
        #expect(strict.recordFailure("a") == .throttled(retryAfter: 1))  // the delay after every failure
    }

    @Test func aSuccessDoesNotResetTheLockoutCount() {
        // One source that holds a valid password of its own, guessing another user's: logging in
        // between bursts starts the delay over but not the count, so the lockout still comes.
        let (throttle, clock) = throttle()
        var failures = 0
        while throttle.admit("a") == .allowed, failures < 100 {
            _ = throttle.recordFailure("a")
            failures += 1
            if failures % 2 == 0 { throttle.recordSuccess("a") }
            clock.advance(0.1)
        }
        #expect(failures == 10)
        guard case .lockedOut = throttle.admit("a") else {
            Issue.record("\(throttle.admit("a"))")
            return
        }
    }

    /// A guesser who tries the moment it is allowed, for an hour, with and without logging in with
    /// a password of its own in between: never more than 10 failures in any minute or in any ten.
    @Test(arguments: [false, true]) func guessingStaysWithinTheBudget(interleavingSuccesses: Bool) {
        let (throttle, clock) = throttle()
        var times: [Double] = []
        let start = clock.now()
        while clock.now() - start < 3600 {
            switch throttle.admit("a") {
            case .allowed:
                _ = throttle.recordFailure("a")
                times.append(clock.now())
                if interleavingSuccesses { throttle.recordSuccess("a") }
            case .throttled(let wait), .lockedOut(let wait):
                clock.advance(wait)
            }
            clock.advance(0.01)
        }
        func mostWithin(_ seconds: Double) -> Int {
            var most = 0
            var first = 0
            for (index, time) in times.enumerated() {
                while times[first] <= time - seconds { first += 1 }
                most = max(most, index - first + 1)
            }
            return most
        }
        #expect(times.count > 40)  // it did keep guessing, ten per lockout
        #expect(mostWithin(60) <= 10)
        #expect(mostWithin(600) <= 10)
        if !interleavingSuccesses { #expect(mostWithin(60) == 8) }  // 3 at once, then 1, 2, 4, 8, 16 s apart
    }
}
