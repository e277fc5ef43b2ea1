import MoatAccess
import MoatEngine
import MoatStorage
import MoatTestSupport
import NIOCore
import Synchronization
import Testing

final class EventLog: Sendable {
    let events = Mutex<[AuthEvent]>([])
    func append(_ event: AuthEvent) { events.withLock { $0.append(event) } }
    var all: [AuthEvent] { events.withLock { $0 } }
}

/// Sessions of one engine whose authentication is on, with user alice / "secret words".
struct AuthFixture {
    let engine: Engine
    let clock = ManualSeconds()
    let events = EventLog()

    init(mechanisms: [SASLMechanism] = [.scramSHA256, .plain], maxFailures: Int = 3, policy: AuthPolicy = AuthPolicy())
        throws
    {
        var store = CredentialStore()
        try store.add(user: "alice", password: Array("secret words".utf8), iterations: 4096)
        let settings = AuthenticationSettings(
            store: store, mechanisms: mechanisms, policy: policy, maxFailuresPerConnection: maxFailures)
        let clock = self.clock
        let events = self.events
        let authenticator = Authenticator(settings: settings, now: { clock.now() }) { event in events.append(event) }
        let cache = Cache(
            configuration: CacheConfiguration(memoryLimit: 8 << 20, maxItemSize: 1 << 20, evictionsEnabled: true))
        engine = Engine(cache: cache, settings: EngineSettings(), authenticator: authenticator)
    }

    func session(from peer: String = "10.0.0.1") -> Session { engine.makeSession(peer: peer) }

    static func text(_ session: inout Session, _ text: String) -> (String, SessionAction) {
        let result = drive(&session, Array(text.utf8))
        return (String(decoding: result.replies, as: UTF8.self), result.action)
    }
}

@Suite struct SessionAuthTests {
    @Test func textCommandsAreRefusedUntilAsciiAuth() throws {
        let f = try AuthFixture()
        var s = f.session()
        #expect(!s.isAuthenticated)
        #expect(AuthFixture.text(&s, "get k\r\n").0 == "CLIENT_ERROR unauthenticated\r\n")
        #expect(AuthFixture.text(&s, "stats\r\n").0 == "CLIENT_ERROR unauthenticated\r\n")
        #expect(
            AuthFixture.text(&s, "delete k\r\nincr n 1\r\n").0
                == "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n")
        // The version, but not Moat's build.
        #expect(AuthFixture.text(&s, "version\r\n").0 == "VERSION 1.6.21\r\n")
        // A wrong password, a missing space, then the right one.
        #expect(AuthFixture.text(&s, "set a 0 0 11\r\nalice wrong\r\n").0 == "CLIENT_ERROR authentication failure\r\n")
        f.clock.advance(10)
        #expect(AuthFixture.text(&s, "set a 0 0 5\r\nalice\r\n").0 == "CLIENT_ERROR authentication failure\r\n")
        f.clock.advance(10)
        #expect(AuthFixture.text(&s, "set a 0 0 18\r\nalice secret words\r\n").0 == "STORED\r\n")
        #expect(s.isAuthenticated)
        #expect(AuthFixture.text(&s, "set k 0 0 1\r\nv\r\nget k a\r\n").0 == "STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n")
        #expect(AuthFixture.text(&s, "version\r\n").0.hasPrefix("VERSION 1.6.21-moat-"))
    }

    @Test func metaClientsAuthenticateWithMs() throws {
        let f = try AuthFixture()
        var s = f.session()
        #expect(AuthFixture.text(&s, "mg k v\r\nmn\r\n").0 == "CLIENT_ERROR unauthenticated\r\nMN\r\n")
        #expect(AuthFixture.text(&s, "ms auth 18\r\nalice secret words\r\n").0 == "HD\r\n")
        #expect(AuthFixture.text(&s, "ms k 1\r\nv\r\nmg k v\r\nmg auth v\r\n").0 == "HD\r\nVA 1\r\nv\r\nEN\r\n")
    }

    @Test func connectionClosesAtTheFailureLimit() throws {
        var policy = AuthPolicy()
        policy.failureDelay = 0
        let f = try AuthFixture(maxFailures: 2, policy: policy)
        var s = f.session()
        #expect(
            AuthFixture.text(&s, "set a 0 0 7\r\nalice x\r\n") == (
                "CLIENT_ERROR authentication failure\r\n", .needInput
            ))
        #expect(
            AuthFixture.text(&s, "set a 0 0 7\r\nalice y\r\n") == ("CLIENT_ERROR authentication failure\r\n", .close))
        #expect(f.events.all.contains(.disconnected(peer: "10.0.0.1", failures: 2)))
    }

    @Test func throttleRefusesUncheckedThenLocksOutOneAddress() throws {
        var policy = AuthPolicy()
        policy.failureBurst = 1
        policy.failureDelay = 1
        policy.lockoutThreshold = 2
        policy.lockoutDuration = 60
        let f = try AuthFixture(maxFailures: 100, policy: policy)
        var s = f.session(from: "10.0.0.9")
        let good = "set a 0 0 18\r\nalice secret words\r\n"
        #expect(AuthFixture.text(&s, "set a 0 0 7\r\nalice x\r\n").0 == "CLIENT_ERROR authentication failure\r\n")
        // Within the delay the right password is not even checked.
        #expect(AuthFixture.text(&s, good).0 == "CLIENT_ERROR authentication failure\r\n")
        f.clock.advance(1.5)
        #expect(AuthFixture.text(&s, "set a 0 0 7\r\nalice x\r\n").0 == "CLIENT_ERROR authentication failure\r\n")
        f.clock.advance(30)
        #expect(AuthFixture.text(&s, good).0 == "CLIENT_ERROR authentication failure\r\n")
        // Another address is unaffected.
        var other = f.session(from: "10.0.0.10")
        #expect(AuthFixture.text(&other, good).0 == "STORED\r\n")
        f.clock.advance(31)
        #expect(AuthFixture.text(&s, good).0 == "STORED\r\n")
        let stats = Dictionary(
            uniqueKeysWithValues: f.engine.statsSnapshot().general().map { ($0.name, $0.value.text) })
        #expect(stats["auth_cmds"] == "6")
        #expect(stats["auth_errors"] == "2")
        #expect(stats["auth_refused"] == "2")
        #expect(stats["auth_lockouts"] == "1")
    }

    /// A stale password first, then the right one, with the default guessing limits: logged in, on
    /// the same connection (text and binary), and a neighbour at the same address is not held back.
    @Test func aMistypedPasswordThenTheRightOneLogsIn() throws {
        let f = try AuthFixture()
        var text = f.session(from: "10.0.0.7")
        #expect(
            AuthFixture.text(&text, "set a 0 0 11\r\nalice wrong\r\n").0 == "CLIENT_ERROR authentication failure\r\n")
        #expect(AuthFixture.text(&text, "set a 0 0 18\r\nalice secret words\r\n").0 == "STORED\r\n")
        var binary = f.session(from: "10.0.0.7")
        func send(_ bytes: [UInt8]) -> [Response] { parse(drive(&binary, bytes).replies) }
        let wrong: [UInt8] = [0] + Array("alice".utf8) + [0] + Array("stale".utf8)
        let right: [UInt8] = [0] + Array("alice".utf8) + [0] + Array("secret words".utf8)
        #expect(send(request(0x21, key: "PLAIN", value: wrong)).map(\.status) == [0x20])
        #expect(send(request(0x21, key: "PLAIN", value: right)).map(\.text) == ["Authenticated"])
        var misconfigured = f.session(from: "10.0.0.7")
        #expect(
            AuthFixture.text(&misconfigured, "set a 0 0 11\r\nalice wrong\r\n").0
                == "CLIENT_ERROR authentication failure\r\n")
        var healthy = f.session(from: "10.0.0.7")
        #expect(AuthFixture.text(&healthy, "set a 0 0 18\r\nalice secret words\r\n").0 == "STORED\r\n")
        let stats = Dictionary(
            uniqueKeysWithValues: f.engine.statsSnapshot().general().map { ($0.name, $0.value.text) })
        #expect(stats["auth_errors"] == "3" && stats["auth_refused"] == "0")
    }

    @Test func binaryCommandsAreRefusedUntilSASL() throws {
        let f = try AuthFixture()
        var s = f.session()
        func send(_ bytes: [UInt8]) -> [Response] { parse(drive(&s, bytes).replies) }
        #expect(send(request(0x00, key: "k")).map(\.status) == [0x20])
        #expect(send(request(0x09, key: "k")).map(\.status) == [0x20])  // quiet get: still answered
        #expect(send(request(0x10)).map(\.status) == [0x20])  // stats
        #expect(send(request(0x0b)).map(\.text) == ["1.6.21"])
        #expect(send(request(0x0a)).map(\.status) == [0])
        #expect(send(request(0x20)).map(\.text) == ["SCRAM-SHA-256 PLAIN"])
        #expect(send(request(0x21, key: "CRAM-MD5", value: [1])).map(\.status) == [0x04])  // not offered
        #expect(send(request(0x22, key: "PLAIN", value: [1])).map(\.status) == [0x20])
        f.clock.advance(100)
        let plain: [UInt8] = [0] + Array("alice".utf8) + [0] + Array("secret words".utf8)
        #expect(send(request(0x21, key: "PLAIN", value: plain)).map(\.text) == ["Authenticated"])
        #expect(s.isAuthenticated)
        #expect(
            send(request(0x01, key: "k", extras: setExtras(), value: [0x76]) + request(0x00, key: "k")).map(\.status)
                == [0, 0])
        // A new exchange de-authenticates until it succeeds.
        #expect(
            send(request(0x21, key: "PLAIN", value: [0] + Array("alice".utf8) + [0, 0x78])).map(\.status) == [0x20])
        #expect(!s.isAuthenticated)
        #expect(send(request(0x00, key: "k")).map(\.status) == [0x20])
    }

    @Test func saslOpcodesAreUnknownWithoutAuthentication() {
        let cache = Cache(
            configuration: CacheConfiguration(memoryLimit: 8 << 20, maxItemSize: 1 << 20, evictionsEnabled: true))
        var s = Engine(cache: cache, settings: EngineSettings()).makeSession()
        #expect(s.isAuthenticated)
        #expect(
            parse(drive(&s, request(0x20) + request(0x21, key: "PLAIN", value: [0, 0x61, 0, 0x62])).replies).map(
                \.status) == [0x81, 0x81])
    }

    @Test func mechanismsAreLimitedToTheConfiguredOnes() throws {
        let f = try AuthFixture(mechanisms: [.scramSHA256])
        var s = f.session()
        #expect(parse(drive(&s, request(0x20)).replies).map(\.text) == ["SCRAM-SHA-256"])
        let plain: [UInt8] = [0] + Array("alice".utf8) + [0] + Array("secret words".utf8)
        // A mechanism not offered: "Invalid arguments", as memcached, and the client may try another.
        let (replies, action, _) = drive(&s, request(0x21, key: "PLAIN", value: plain) + request(0x20))
        #expect(parse(replies).map(\.status) == [0x04, 0x00])
        #expect(action == .needInput)
    }
}
