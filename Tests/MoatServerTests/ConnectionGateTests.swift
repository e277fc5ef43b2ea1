import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import Synchronization
import Testing

@testable import MoatServer

/// The one admission of every listener: lists, per-address cap, `-c`, and what each records.
@Suite struct ConnectionGateTests {
    final class Events: Sendable {
        let seen = Mutex<[String]>([])
        func record(_ event: SecurityLog.Event) {
            let text: String
            switch event {
            case .connectionAccepted(let peer): text = "accepted \(peer)"
            case .connectionRefused(let peer, let reason): text = "refused \(peer) \(reason.rawValue)"
            default: text = "other"
            }
            seen.withLock { $0.append(text) }
        }
        var all: [String] { seen.withLock { $0 } }
    }

    func gate(_ flags: [String]) throws -> (ConnectionGate, ConnectionCounters, Events) {
        let configuration = try ServeOptions.parse(flags).resolve()
        let counters = ConnectionCounters()
        let events = Events()
        let log = SecurityLog { events.record($0) }
        return (
            ConnectionGate(
                configuration: configuration, counters: counters, securityLog: log, logger: Logger(label: "test")),
            counters, events
        )
    }

    @Test func theListsRefuseBeforeAnythingIsCounted() throws {
        let (gate, counters, events) = try gate(["-o", "allow=127.0.0.2"])
        #expect(gate.enter(peer: PeerAddress("127.0.0.3"), described: "127.0.0.3:1") == .refused(reason: .allowlist))
        // Unknown: refused while a list exists.
        #expect(gate.enter(peer: nil, described: "?") == .refused(reason: .allowlist))
        #expect(counters.current.load(ordering: .relaxed) == 0 && counters.total.load(ordering: .relaxed) == 0)
        #expect(counters.refusedByFilter.load(ordering: .relaxed) == 2)
        #expect(gate.enter(peer: PeerAddress("127.0.0.2"), described: "127.0.0.2:1") == .admitted)
        #expect(events.all == ["refused 127.0.0.3 allowlist", "refused unknown allowlist", "accepted 127.0.0.2"])
    }

    @Test func thePerAddressCapHoldsUntilLeave() throws {
        let (gate, counters, _) = try gate(["-o", "max_conns_per_ip=2"])
        let peer = PeerAddress("127.0.0.5")
        #expect(gate.enter(peer: peer, described: "a") == .admitted)
        #expect(gate.enter(peer: peer, described: "b") == .admitted)
        #expect(gate.enter(peer: peer, described: "c") == .refused(reason: .perAddressLimit))
        #expect(gate.enter(peer: PeerAddress("127.0.0.6"), described: "d") == .admitted)
        gate.leave(peer: peer)
        #expect(gate.enter(peer: peer, described: "e") == .admitted)
        #expect(counters.current.load(ordering: .relaxed) == 3)
        #expect(counters.refusedPerAddress.load(ordering: .relaxed) == 1)
    }

    @Test func overMaxConnectionsGetsMemcachedsReplyAndGivesEverythingBack() throws {
        let (gate, counters, events) = try gate(["-c", "1", "-o", "max_conns_per_ip=1"])
        let first = PeerAddress("127.0.0.7")
        let second = PeerAddress("127.0.0.8")
        #expect(gate.enter(peer: first, described: "a") == .admitted)
        #expect(gate.enter(peer: second, described: "b") == .tooManyConnections)
        #expect(counters.current.load(ordering: .relaxed) == 1)
        #expect(counters.rejected.load(ordering: .relaxed) == 1 && counters.total.load(ordering: .relaxed) == 2)
        #expect(events.all.last == "refused 127.0.0.8 max_connections")
        gate.leave(peer: first)
        // The refused one held no per-address slot: it may come back at once.
        #expect(gate.enter(peer: second, described: "b") == .admitted)
        #expect(String(describing: ConnectionGate.tooManyConnectionsReply) == "ERROR Too many open connections\r\n")
    }

    @Test func unixClientsPassTheListsAndTheCap() throws {
        let (gate, _, _) = try gate(["-o", "allow=10.0.0.0/8,max_conns_per_ip=1"])
        #expect(gate.enter(peer: .unix(uid: 1000), described: "unix") == .admitted)
        #expect(gate.enter(peer: .unix(uid: 1000), described: "unix") == .admitted)
    }
}
