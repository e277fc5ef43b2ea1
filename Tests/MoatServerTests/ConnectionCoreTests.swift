import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatStorage
import MoatTLS
import NIOCore
import Synchronization
import Testing

@testable import MoatServer

/// The connection core with no socket and a manual clock: a `Wire` stands in for the socket (what the
/// client sent, read one chunk per read; how much the socket takes before it is full), and the test
/// plays the loop, passing events in and checking the step the core asks for.
@Suite struct ConnectionCoreTests {
    typealias Limits = ConnectionDeadlines.Limits

    /// A socket: chunks the client sent, a send buffer with `room` bytes free, and what was sent.
    final class Wire {
        var incoming: [[UInt8]] = []
        var peerClosed = false
        var readFails = false
        var sendFails = false
        var room = Int.max
        var sent: [UInt8] = []
        var reads = 0

        func send(_ text: String) { incoming.append(Array(text.utf8)) }

        func read(_ target: UnsafeMutableRawBufferPointer) -> ReadOutcome {
            reads += 1
            if readFails { return .failed }
            guard !incoming.isEmpty else { return peerClosed ? .peerClosed : .wouldBlock }
            let chunk = incoming.removeFirst()
            let count = min(chunk.count, target.count)
            target.copyBytes(from: chunk[0..<count])
            if count < chunk.count { incoming.insert(Array(chunk[count...]), at: 0) }
            return .received(count)
        }

        func write(_ bytes: UnsafeRawBufferPointer) -> WriteOutcome {
            if sendFails { return .failed }
            guard room > 0 else { return .wouldBlock }
            let count = min(room, bytes.count)
            sent.append(contentsOf: bytes[0..<count])
            if room != .max { room -= count }
            return .sent(count)
        }

        /// Whether what was sent since the last call is `expected` (compared whole, reported short).
        func took(_ expected: String) -> Bool {
            let sent = take()
            if sent != expected {
                print(
                    """
                    sent \(sent.utf8.count) bytes: \(sent.prefix(120))…, expected \(expected.utf8.count): \
                    \(expected.prefix(120))…
                    """
                )
            }
            return sent == expected
        }

        /// What was sent since the last call, as text.
        func take() -> String {
            defer { sent.removeAll() }
            return String(decoding: sent, as: UTF8.self)
        }
    }

    final class Events: Sendable {
        let seen = Mutex<[SecurityLog.Event]>([])
        var all: [SecurityLog.Event] { seen.withLock { $0 } }
    }

    /// An engine, a gate and the loop's context, as one epoll loop holds them.
    struct Harness {
        let engine: Engine
        let gate: ConnectionGate
        let context: ConnectionContext
        let events = Events()
        let address = PeerAddress("127.0.0.9")

        init(
            limits: Limits = Limits(), settings: EngineSettings = EngineSettings(), users: CredentialStore? = nil,
            certificateAuthentication: Bool = false
        ) throws {
            let cache = Cache(
                configuration: CacheConfiguration(memoryLimit: 64 << 20, maxItemSize: 1 << 20, evictionsEnabled: true))
            let events = events
            let log = SecurityLog { event in events.seen.withLock { $0.append(event) } }
            var policy = AuthPolicy()
            policy.failureDelay = 0
            let authenticator = users.map {
                Authenticator(settings: AuthenticationSettings(store: $0, policy: policy), now: { 0 })
            }
            engine = Engine(cache: cache, settings: settings, authenticator: authenticator, securityLog: log)
            gate = ConnectionGate(
                configuration: try ServeOptions.parse([]).resolve(), counters: engine.connections, securityLog: log,
                logger: Logger(label: "test"))
            context = ConnectionContext(
                engine: engine, gate: gate, logger: Logger(label: "test"), limits: limits,
                certificateAuthentication: certificateAuthentication)
        }

        /// A connection admitted by the gate, as the loop makes one on accept.
        func connection(tls: TLSStream? = nil, now: Int64 = 0) -> ConnectionCore {
            #expect(gate.enter(peer: address, described: "127.0.0.9:40000") == .admitted)
            return ConnectionCore(context: context, address: address, peer: "127.0.0.9:40000", tls: tls, now: now)
        }

        var open: Int { engine.connections.current.load(ordering: .relaxed) }
        var closedEvents: [String] {
            events.all.compactMap {
                if case .connectionClosed(_, let reason) = $0 { return reason.rawValue } else { return nil }
            }
        }
    }

    func readable(_ core: ConnectionCore, _ wire: Wire, at now: Int64 = 0) -> ConnectionStep {
        core.readable(at: now, read: wire.read, send: wire.write)
    }

    @Test func repliesGoOutInTheReadThatBroughtTheRequest() throws {
        let harness = try Harness()
        let core = harness.connection()
        let wire = Wire()
        wire.send("set k 0 0 1\r\nx\r\nget k\r\n")
        #expect(readable(core, wire) == .waitForInput)
        #expect(wire.take() == "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n")
        // A request split over reads is answered when it is complete, and not before.
        wire.send("get")
        #expect(readable(core, wire, at: 10) == .waitForInput)
        #expect(wire.take() == "")
        #expect(core.deadlines.partialSince == 10)
        wire.send(" k\r\n")
        #expect(readable(core, wire, at: 20) == .waitForInput)
        #expect(wire.take() == "VALUE k 0 1\r\nx\r\nEND\r\n")
        #expect(core.deadlines.partialSince == nil)
        // Nothing there (a spurious wake-up): nothing happens.
        #expect(readable(core, wire, at: 30) == .waitForInput)
    }

    @Test func bytesReadAndWrittenAreCountedAndPublished() throws {
        let harness = try Harness()
        let core = harness.connection()
        let wire = Wire()
        let request = "set k 0 0 1\r\nx\r\n"
        wire.send(request)
        _ = readable(core, wire)
        let reply = wire.take()
        wire.send("stats\r\n")
        _ = readable(core, wire)
        let stats = wire.take()
        #expect(stats.contains("STAT bytes_read \(request.utf8.count + 7)\r\n"))
        #expect(stats.contains("STAT bytes_written \(reply.utf8.count)\r\n"))
    }

    /// A client that has its reply may ask `stats` on another connection at once: the request must be
    /// counted by then (it was published after the flush, and a CI run caught the race).
    @Test func aRequestIsCountedBeforeItsReplyIsSent() throws {
        let harness = try Harness()
        let core = harness.connection()
        let watcher = harness.connection()
        let wire = Wire()
        let other = Wire()
        var statsAtSend: String?
        wire.send("get nothing\r\nset k 0 0 1\r\nx\r\n")
        let step = core.readable(at: 0, read: wire.read) { bytes in
            if statsAtSend == nil {
                other.send("stats\r\n")
                _ = watcher.readable(at: 0, read: other.read, send: other.write)
                statsAtSend = other.take()
            }
            return wire.write(bytes)
        }
        #expect(step == .waitForInput)
        #expect(wire.take() == "END\r\nSTORED\r\n")
        let stats = try #require(statsAtSend)
        #expect(stats.contains("STAT cmd_get 1\r\n") && stats.contains("STAT get_misses 1\r\n"))
        #expect(stats.contains("STAT cmd_set 1\r\n"))
    }

    /// 8 values of 100 KB: a multi-get of all of them is 800 KB of replies, past the session's high-water mark.
    func storeLargeValues(_ core: ConnectionCore, _ wire: Wire) -> String {
        let value = String(repeating: "v", count: 100_000)
        for index in 0..<8 { wire.send("set k\(index) 0 0 100000 noreply\r\n\(value)\r\n") }
        _ = wire.take()
        // A read takes at most what the input has room for: several reads per value.
        for _ in 0..<200 where !wire.incoming.isEmpty { #expect(readable(core, wire) == .waitForInput) }
        #expect(wire.incoming.isEmpty)
        #expect(wire.take() == "")
        return (0..<8).map { "VALUE k\($0) 0 100000\r\n\(value)\r\n" }.joined() + "END\r\n"
    }

    @Test func aLongMultiGetPausesAtTheHighWaterMarkAndResumesWhenTheSocketDrains() throws {
        let harness = try Harness(limits: Limits(output: 30))
        let core = harness.connection()
        let wire = Wire()
        let expected = storeLargeValues(core, wire)
        wire.room = 64 * 1024
        wire.send("get k0 k1 k2 k3 k4 k5 k6 k7\r\n")
        #expect(readable(core, wire, at: 1_000) == .waitForWritable)
        #expect(core.blocked)
        #expect(wire.sent.count == 64 * 1024)
        // What is held is charged to the output budget, and only a batch of replies is held, not all 800 KB.
        #expect(core.charged > 0 && harness.engine.outputBudget.bytesHeld == core.charged)
        #expect(core.pending.capacity < 600_000)
        #expect(core.deadlines.stalledSince == 1_000)
        // Some room, not enough: still blocked.
        wire.room = 100_000
        #expect(core.writable(at: 2_000, send: wire.write) == .waitForWritable)
        #expect(core.blocked)
        // Room for everything: the rest of the multi-get is answered and sent, and the budget given back.
        wire.room = .max
        #expect(core.writable(at: 3_000, send: wire.write) == .waitForInput)
        #expect(!core.blocked && core.charged == 0 && harness.engine.outputBudget.bytesHeld == 0)
        #expect(core.deadlines.stalledSince == nil)
        #expect(wire.took(expected))
    }

    @Test func aStallPastTheOutputBudgetCloses() throws {
        var settings = EngineSettings()
        settings.outputBudgetBytes = 100_000
        let harness = try Harness(settings: settings)
        let core = harness.connection()
        let wire = Wire()
        _ = storeLargeValues(core, wire)
        wire.room = 1000
        wire.send("get k0 k1 k2 k3\r\n")
        #expect(readable(core, wire) == .close(.outputBudget))
        core.finish(.outputBudget)
        #expect(harness.engine.outputBudget.bytesHeld == 0)
        #expect(harness.closedEvents == ["output_budget"])
        #expect(harness.open == 0)
    }

    @Test func eachDeadlineClosesOnTheTickWithItsReason() throws {
        let wire = Wire()
        // Idle: from the last bytes received.
        let idle = try Harness(limits: Limits(idle: 5))
        let quiet = idle.connection()
        wire.send("version\r\n")
        _ = readable(quiet, wire, at: 2_000)
        #expect(quiet.tick(at: 6_999, tenancyChanged: false) != .close(.idleTimeout))
        #expect(quiet.tick(at: 7_000, tenancyChanged: false) == .close(.idleTimeout))
        // Command: from the first byte of a request that does not complete.
        let command = try Harness(limits: Limits(command: 2))
        let slow = command.connection()
        wire.send("get k")
        _ = readable(slow, wire, at: 1_000)
        #expect(slow.tick(at: 2_999, tenancyChanged: false) != .close(.slowCommand))
        #expect(slow.tick(at: 3_000, tenancyChanged: false) == .close(.slowCommand))
        // A client that pipelines is mid-request at the end of almost every read: the deadline runs per
        // request, so a stream whose requests keep completing is never cut off.
        let pipelined = command.connection()
        wire.send("set n0 0 0 1\r\n")
        _ = readable(pipelined, wire, at: 0)
        for second in 1..<10 {
            // The last read's unfinished set, a whole one, and the start of the next, in one read.
            wire.send("y\r\nset k 0 0 1\r\nx\r\nset n\(second) 0 0 1\r\n")
            #expect(readable(pipelined, wire, at: Int64(second) * 1_000) == .waitForInput)
            #expect(pipelined.tick(at: Int64(second) * 1_000 + 999, tenancyChanged: false) != .close(.slowCommand))
        }
        // ...while one whose last request stops for the deadline still is.
        #expect(pipelined.tick(at: 11_000, tenancyChanged: false) == .close(.slowCommand))
        _ = wire.take()
        // Output: from when replies stopped draining.
        let output = try Harness(limits: Limits(output: 3))
        let stalled = output.connection()
        _ = storeLargeValues(stalled, wire)
        wire.room = 0
        wire.send("get k0 k1 k2 k3\r\n")
        #expect(readable(stalled, wire, at: 1_000) == .waitForWritable)
        #expect(stalled.tick(at: 3_999, tenancyChanged: false) == .keep)
        #expect(stalled.tick(at: 4_000, tenancyChanged: false) == .close(.outputStalled))
        stalled.finish(.outputStalled)
        #expect(output.closedEvents == ["output_stalled"])
        #expect(output.engine.outputBudget.bytesHeld == 0)
    }

    @Test func anUnauthenticatedClientIsClosedAtTheAuthDeadlineAndARevokedUserOnTheNextTick() throws {
        var store = CredentialStore()
        try store.add(user: "app", password: Array("pw".utf8), iterations: 4096)
        let harness = try Harness(limits: Limits(authentication: 3), users: store)
        let anonymous = harness.connection()
        let wire = Wire()
        wire.send("get k\r\n")
        _ = readable(anonymous, wire, at: 1_000)  // activity does not extend the deadline
        #expect(wire.take().hasPrefix("CLIENT_ERROR"))
        #expect(anonymous.tick(at: 2_999, tenancyChanged: false) != .close(.authTimeout))
        #expect(anonymous.tick(at: 3_000, tenancyChanged: false) == .close(.authTimeout))
        anonymous.finish(.authTimeout)
        let user = harness.connection()
        wire.send("set a 0 0 6\r\napp pw\r\n")
        _ = readable(user, wire, at: 1_000)
        #expect(wire.take() == "STORED\r\n")
        #expect(user.tick(at: 60_000, tenancyChanged: false) != .close(.authTimeout))
        let busy = harness.connection()
        wire.send("set a 0 0 6\r\napp pw\r\n")
        _ = readable(busy, wire, at: 1_000)
        #expect(wire.take() == "STORED\r\n")
        // A reload that leaves the user out: the connection goes at the next tick, idle or not.
        try harness.engine.reconfigure(tenants: TenantPlan(users: []), credentials: store)
        #expect(user.tick(at: 60_250, tenancyChanged: false) != .close(.accessRevoked))  // the loop had not seen it yet
        #expect(user.tick(at: 60_500, tenancyChanged: true) == .close(.accessRevoked))
        user.finish(.accessRevoked)
        // One that sends a request before the tick learns it on that request, for the same reason.
        wire.send("get k\r\n")
        #expect(readable(busy, wire, at: 60_100) == .close(.accessRevoked))
        busy.finish(.accessRevoked)
        // Recorded once each: by the close, not also by the session that noticed.
        #expect(harness.closedEvents == ["auth_timeout", "access_revoked", "access_revoked"])
        #expect(harness.open == 0)
    }

    @Test func idleBuffersAreGivenBackAfterASecondAndTakenAgainOnDemand() throws {
        let harness = try Harness()
        let core = harness.connection()
        let wire = Wire()
        #expect(core.bufferCapacity == 0)  // a connection that has sent nothing holds no buffer
        wire.send("set k 0 0 1\r\nx\r\n")
        _ = readable(core, wire, at: 5_000)
        #expect(core.bufferCapacity > 0)
        #expect(core.tick(at: 5_999, tenancyChanged: false) == .keep)
        #expect(core.tick(at: 6_000, tenancyChanged: false) == .releasedBuffers)
        #expect(core.bufferCapacity == 0)
        #expect(core.tick(at: 9_000, tenancyChanged: false) == .keep)
        wire.send("get k\r\n")
        _ = readable(core, wire, at: 9_000)
        #expect(wire.take() == "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n")
        // A connection in the middle of a request keeps its buffers.
        wire.send("get")
        _ = readable(core, wire, at: 10_000)
        #expect(core.tick(at: 20_000, tenancyChanged: false) == .keep)
        #expect(core.bufferCapacity > 0)
    }

    @Test func closeReasonsAndTheirBookkeeping() throws {
        var settings = EngineSettings()
        settings.shutdownEnabled = true
        let harness = try Harness(settings: settings)
        let wire = Wire()
        let cases: [(prepare: (Wire) -> Void, step: ConnectionStep)] = [
            ({ $0.peerClosed = true }, .close(.normal)),
            ({ $0.readFails = true }, .close(.error)),
            (
                {
                    $0.send("version\r\n")
                    $0.sendFails = true
                }, .close(.error)
            ),
            ({ $0.send("quit\r\n") }, .close(.normal)),
            ({ $0.send("shutdown\r\n") }, .closeAndStopServer),
        ]
        for (prepare, step) in cases {
            let core = harness.connection()
            let wire = Wire()
            prepare(wire)
            #expect(readable(core, wire) == step)
            core.finish(.normal)
            core.finish(.normal)  // once only
            #expect(harness.open == 0)
        }
        #expect(harness.closedEvents == [])  // none of them is a limit
        _ = wire
    }

    @Test func theDrainAnswersWhatIsBufferedThenHalfClosesAndDropsWhatStillArrives() throws {
        let harness = try Harness()
        let wire = Wire()
        let idle = harness.connection()
        #expect(idle.stop(at: 0, send: wire.write) == .halfClose)
        wire.send("get k\r\n")  // after the half-close: read and dropped, never answered
        #expect(readable(idle, wire) == .waitForInput)
        #expect(wire.take() == "" && wire.incoming.isEmpty)
        wire.peerClosed = true
        #expect(readable(idle, wire) == .close(.shutdown))
        idle.finish(.shutdown)

        // A connection blocked mid-reply at the stop: the replies are written out first, then the half-close.
        let busy = harness.connection()
        let drain = Wire()
        let expected = storeLargeValues(busy, drain)
        drain.room = 10_000
        drain.send("get k0 k1 k2 k3 k4 k5 k6 k7\r\n")
        #expect(readable(busy, drain, at: 100) == .waitForWritable)
        #expect(busy.stop(at: 200, send: drain.write) == .waitForWritable)
        drain.room = .max
        #expect(busy.writable(at: 300, send: drain.write) == .halfClose)
        #expect(drain.took(expected))
        busy.finish(.shutdown)
        #expect(harness.open == 0)
        #expect(harness.closedEvents == [])
    }

    // MARK: TLS

    func serverStream() throws -> TLSStream {
        let pki = try #require(TLSStreamTests.pki)
        let context = try TLSContext.server(
            chain: pki.path("server.pem"), key: pki.path("server.key"), ca: nil, verifyMode: 0, minimumTLS13: false)
        return try #require(TLSStream(context: context, server: true))
    }

    func clientStream() throws -> TLSStream {
        let pki = try #require(TLSStreamTests.pki)
        let context = try TLSContext.client(ca: pki.path("ca.pem"), certificate: nil, key: nil)
        return try #require(TLSStream(context: context, server: false, host: "localhost"))
    }

    /// Client records onto the wire; the core's records into the client, decrypted.
    func exchange(_ client: TLSStream, _ core: ConnectionCore, _ wire: Wire, at now: Int64) -> (
        ConnectionStep, String, TLSStream.Status
    ) {
        var records = ByteBuffer()
        var plaintext = ByteBuffer()
        _ = client.decrypt(into: &plaintext, limit: .max)
        client.takeCiphertext(into: &records)
        if records.readableBytes > 0 { wire.incoming.append(Array(records.readableBytesView)) }
        let step = readable(core, wire, at: now)
        wire.sent.withUnsafeBytes { #expect(client.receive($0)) }
        wire.sent.removeAll()
        let status = client.decrypt(into: &plaintext, limit: .max).status
        return (step, String(buffer: plaintext), status)
    }

    @Test func tlsRecordsInPlaintextOutAndCloseNotifyAtTheDrain() throws {
        let harness = try Harness(limits: Limits(handshake: 5))
        let core = harness.connection(tls: try serverStream())
        let client = try clientStream()
        let wire = Wire()
        for flight in 0..<4 where !(client.handshakeComplete && core.deadlines.handshaking == false) {
            #expect(exchange(client, core, wire, at: Int64(flight)).0 == .waitForInput)
        }
        #expect(client.handshakeComplete && !core.deadlines.handshaking)
        #expect(core.tick(at: 10_000, tenancyChanged: false) != .close(.tlsHandshakeTimeout))
        #expect(client.encrypt(ByteBuffer(string: "set k 0 0 2\r\nhi\r\nget k\r\n")))
        let (step, replies, _) = exchange(client, core, wire, at: 20)
        #expect(step == .waitForInput)
        #expect(replies == "STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n")
        // The drain: close_notify goes out before the half-close.
        #expect(core.stop(at: 30, send: wire.write) == .halfClose)
        wire.sent.withUnsafeBytes { #expect(client.receive($0)) }
        var rest = ByteBuffer()
        #expect(client.decrypt(into: &rest, limit: .max).status == .closed)
        core.finish(.shutdown)
    }

    @Test func aHandshakeThatDoesNotFinishInTimeClosesAndIsCounted() throws {
        let harness = try Harness(limits: Limits(handshake: 2))
        let core = harness.connection(tls: try serverStream(), now: 1_000)
        #expect(core.tick(at: 2_999, tenancyChanged: false) == .keep)
        #expect(core.tick(at: 3_000, tenancyChanged: false) == .close(.tlsHandshakeTimeout))
        core.finish(.tlsHandshakeTimeout)
        #expect(harness.engine.connections.tlsHandshakeErrors.load(ordering: .relaxed) == 1)
        #expect(harness.closedEvents == ["tls_handshake_timeout"])
    }

    @Test func plaintextOnATLSConnectionGetsAnAlertAndATLSErrorClose() throws {
        let harness = try Harness()
        let core = harness.connection(tls: try serverStream())
        let wire = Wire()
        wire.send("version\r\n")
        #expect(readable(core, wire) == .close(.tlsError))
        #expect(Array(wire.sent.prefix(3)) == [0x15, 0x03, 0x01])  // a fatal alert record
        core.finish(.tlsError)
        #expect(harness.engine.connections.tlsHandshakeErrors.load(ordering: .relaxed) == 1)
        #expect(harness.closedEvents == ["tls_error"])
        #expect(harness.open == 0)
    }
}
