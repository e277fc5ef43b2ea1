import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import NIOCore
import Synchronization

/// What admission decided for a client just accepted.
enum Admission: Equatable {
    /// Served: the connection holds its slots until `ConnectionGate.leave`.
    case admitted
    /// Refused by the allow/deny lists or the per-address cap: closed without a byte exchanged.
    case refused(reason: ConnectionRefusal)
    /// Over `-c`: sent `tooManyConnectionsReply` (memcached's), then closed.
    case tooManyConnections
}

/// Decides, right after accept and before a byte is read or written, whether a client may stay: the
/// allow/deny lists, the per-address connection cap, then `-c`; records the events and counters of
/// that decision. The one admission, shared by every event loop.
final class ConnectionGate: Sendable {
    static let tooManyConnectionsReply: StaticString = "ERROR Too many open connections\r\n"

    let filter: AddressFilter
    let maxPerAddress: Int
    let maxConnections: Int
    private let open = Mutex(SlotsPerKey())
    private let counters: ConnectionCounters
    private let securityLog: SecurityLog
    private let logger: Logger

    init(configuration: ServerConfiguration, counters: ConnectionCounters, securityLog: SecurityLog, logger: Logger) {
        filter = configuration.addressFilter
        maxPerAddress = configuration.maxConnectionsPerAddress
        maxConnections = configuration.maxConnections
        self.counters = counters
        self.securityLog = securityLog
        self.logger = logger
    }

    /// Admits or refuses `peer` (`described` is how log lines name it: address and port).
    func enter(peer: PeerAddress?, described: String) -> Admission {
        let host = peer?.description ?? "unknown"
        if let reason = admit(peer: peer) {
            logger.info("connection refused", metadata: ["peer": "\(described)", "reason": "\(reason.rawValue)"])
            securityLog.record(.connectionRefused(peer: host, reason: reason))
            return .refused(reason: reason)
        }
        let current = counters.current.wrappingAdd(1, ordering: .relaxed).newValue
        counters.total.wrappingAdd(1, ordering: .relaxed)
        guard current <= maxConnections else {
            release(peer: peer)
            counters.current.wrappingSubtract(1, ordering: .relaxed)
            counters.rejected.wrappingAdd(1, ordering: .relaxed)
            logger.notice("connection refused: too many open connections", metadata: ["peer": "\(described)"])
            securityLog.record(.connectionRefused(peer: host, reason: .maxConnections))
            return .tooManyConnections
        }
        logger.info("connection opened", metadata: ["peer": "\(described)"])
        securityLog.record(.connectionAccepted(peer: host))
        return .admitted
    }

    /// Gives back what `enter` took for an admitted connection.
    func leave(peer: PeerAddress?) {
        counters.current.wrappingSubtract(1, ordering: .relaxed)
        release(peer: peer)
    }

    /// Nil when `peer` may connect (and then holds one of its slots until `release`), else the reason.
    /// An unknown peer (nil) is refused whenever a list exists; unix clients pass the lists and the cap
    /// (the socket file's mode decides who reaches them).
    private func admit(peer: PeerAddress?) -> ConnectionRefusal? {
        switch filter.decision(for: peer) {
        case .allowed: break
        case .notAllowed:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return .allowlist
        case .denied:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return .denylist
        }
        guard let key = capKey(peer) else { return nil }
        let admitted = open.withLock { $0.take(key, limit: maxPerAddress) }
        if admitted { return nil }
        counters.refusedPerAddress.add(1, ordering: .relaxed)
        return .perAddressLimit
    }

    /// Gives back the slot `admit` took.
    private func release(peer: PeerAddress?) {
        guard let key = capKey(peer) else { return }
        open.withLock { $0.give(key) }
    }

    /// What the per-address cap counts `peer` under (an IPv6 /64, scope ignored); nil when uncapped.
    private func capKey(_ peer: PeerAddress?) -> String? {
        guard maxPerAddress > 0 else { return nil }
        if case .unix = peer { return nil }
        return peer?.throttleKey ?? "unknown"
    }
}

#if canImport(Glibc)
import Glibc

/// Linux's `struct ucred`, which Glibc's module hides behind _GNU_SOURCE: three 32-bit fields.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The uid the kernel recorded for a unix-socket client (SO_PEERCRED), nil when it cannot be read.
func unixPeerUID(_ fd: Int32) -> UInt32? {
    var credentials = PeerCredentials()
    var length = socklen_t(MemoryLayout<PeerCredentials>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
        Int(length) >= MemoryLayout<PeerCredentials>.size
    else { return nil }
    return credentials.uid
}
#endif

/// Who is on the other end of a SwiftNIO channel, from its socket address (no text round trip); nil
/// when the channel cannot say, which the gate refuses whenever an address list exists.
func peerAddress(of channel: Channel) -> PeerAddress? {
    switch channel.remoteAddress {
    case .v4(let address): return PeerAddress(address.address)
    case .v6(let address): return PeerAddress(address.address)
    case .unixDomainSocket: return .unix(uid: unixPeerUID(channel))
    case nil:
        if case .unixDomainSocket = channel.localAddress { return .unix(uid: unixPeerUID(channel)) }
        return nil
    }
}

/// SO_PEERCRED's uid for a unix channel; read synchronously, as on the channel's own event loop the
/// option future is already complete.
private func unixPeerUID(_ channel: Channel) -> UInt32? {
    #if canImport(Glibc)
    guard let provider = channel as? SocketOptionProvider, channel.eventLoop.inEventLoop else { return nil }
    var uid: UInt32?
    let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
        level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
    future.assumeIsolated().whenSuccess { uid = $0.uid }
    return uid
    #else
    return nil
    #endif
}

/// Slots held per client key (an address, an IPv6 /64), each key capped: the connection gate's
/// per-address cap and the metrics endpoint's share per host.
struct SlotsPerKey {
    private var counts: [String: Int] = [:]
    private(set) var total = 0

    /// Takes a slot for `key` unless it holds `limit` already.
    mutating func take(_ key: String, limit: Int) -> Bool {
        let current = counts[key, default: 0]
        guard current < limit else { return false }
        counts[key] = current + 1
        total += 1
        return true
    }

    mutating func give(_ key: String) {
        guard let current = counts[key] else { return }
        counts[key] = current > 1 ? current - 1 : nil
        total -= 1
    }
}
