import MoatAccess
import MoatConfig
import MoatEngine
import NIOCore
import Synchronization

/// Decides, right after accept and before a byte is read or written, whether a TCP client may stay:
/// the allow/deny lists, then the per-address connection cap. Shared by every event loop.
final class ConnectionGate: Sendable {
    let filter: AddressFilter
    let maxPerAddress: Int
    private let open = Mutex(SlotsPerKey())
    private let counters: ConnectionCounters

    init(configuration: ServerConfiguration, counters: ConnectionCounters) {
        filter = configuration.addressFilter
        maxPerAddress = configuration.maxConnectionsPerAddress
        self.counters = counters
    }

    /// Nil when `peer` may connect (and then holds one of its slots until `release`), else the reason.
    /// An unknown peer (nil) is refused whenever a list exists; unix clients pass the lists and the cap
    /// (the socket file's mode decides who reaches them).
    func admit(peer: PeerAddress?) -> String? {
        switch filter.decision(for: peer) {
        case .allowed: break
        case .notAllowed:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return "allowlist"
        case .denied:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return "denylist"
        }
        guard let key = capKey(peer) else { return nil }
        let admitted = open.withLock { $0.take(key, limit: maxPerAddress) }
        if admitted { return nil }
        counters.refusedPerAddress.add(1, ordering: .relaxed)
        return "per_address_limit"
    }

    /// Gives back the slot `admit` took.
    func release(peer: PeerAddress?) {
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
