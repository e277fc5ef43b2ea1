import MoatAccess
import MoatConfig
import MoatEngine
import Synchronization

/// Decides, right after accept and before a byte is read or written, whether a TCP client may stay:
/// the allow/deny lists, then the per-address connection cap. Shared by every event loop.
final class ConnectionGate: Sendable {
    let filter: AddressFilter
    let maxPerAddress: Int
    private let open = Mutex<[String: Int]>([:])
    private let counters: ConnectionCounters

    init(configuration: ServerConfiguration, counters: ConnectionCounters) {
        filter = configuration.addressFilter
        maxPerAddress = configuration.maxConnectionsPerAddress
        self.counters = counters
    }

    /// Nil when `host` may connect (and then holds one of its slots until `release`), else the reason.
    func admit(host: String) -> String? {
        switch filter.decision(for: host) {
        case .allowed: break
        case .notAllowed:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return "allowlist"
        case .denied:
            counters.refusedByFilter.add(1, ordering: .relaxed)
            return "denylist"
        }
        guard maxPerAddress > 0 else { return nil }
        let key = AuthThrottle.addressKey(host)
        let admitted = open.withLock { counts -> Bool in
            let current = counts[key, default: 0]
            guard current < maxPerAddress else { return false }
            counts[key] = current + 1
            return true
        }
        if admitted { return nil }
        counters.refusedPerAddress.add(1, ordering: .relaxed)
        return "per_address_limit"
    }

    /// Gives back the slot `admit` took.
    func release(host: String) {
        guard maxPerAddress > 0 else { return }
        let key = AuthThrottle.addressKey(host)
        open.withLock { counts in
            let remaining = counts[key, default: 1] - 1
            counts[key] = remaining > 0 ? remaining : nil
        }
    }
}
