#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who is on the other end of a connection or datagram, read from the socket address itself. Policy
/// (the address lists, the throttle, the per-address caps) decides on this value, never on printed
/// text: getnameinfo appends "%iface" to link-local addresses, which no address parser accepts.
public enum PeerAddress: Sendable, Hashable, CustomStringConvertible {
    /// An IPv4 address in network order as one number (an IPv4-mapped IPv6 peer is this too).
    case ipv4(UInt32)
    /// An IPv6 address as two 64-bit halves, and its scope (the interface index of a link-local
    /// address; 0 otherwise). The scope is kept for logs only: no decision depends on it.
    case ipv6(high: UInt64, low: UInt64, scope: UInt32)
    /// A unix-socket client, by the uid the kernel reports for it (nil when it could not be read).
    case unix(uid: UInt32?)

    /// From an accepted or received socket address; nil for a family Moat does not serve or a
    /// length too short to hold one.
    public init?(_ address: UnsafePointer<sockaddr>, length: socklen_t) {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            guard Int(length) >= MemoryLayout<sockaddr_in>.size else { return nil }
            let v4 = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self)
            self.init(v4)
        case AF_INET6:
            guard Int(length) >= MemoryLayout<sockaddr_in6>.size else { return nil }
            let v6 = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self)
            self.init(v6)
        case AF_UNIX:
            self = .unix(uid: nil)
        default:
            return nil
        }
    }

    public init(_ address: sockaddr_in) {
        self = .ipv4(UInt32(bigEndian: address.sin_addr.s_addr))
    }

    public init(_ address: sockaddr_in6) {
        var bytes = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: address.sin6_addr) { bytes = Array($0.prefix(16)) }
        self.init(ipv6: bytes, scope: address.sin6_scope_id)
    }

    /// 16 bytes in network order; IPv4-mapped addresses become `.ipv4`, so they meet IPv4 rules and keys.
    init(ipv6 bytes: [UInt8], scope: UInt32) {
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            self = .ipv4(bytes[12..<16].reduce(0) { $0 << 8 | UInt32($1) })
            return
        }
        let (high, low) = AddressBlock.words(bytes)
        self = .ipv6(high: high, low: low, scope: scope)
    }

    /// Numeric text (`192.0.2.7`, `2001:db8::1`, `fe80::1%eth0` or `%3`), for tests, tools and
    /// configuration; nil for anything else. Servers build peers from socket addresses instead.
    public init?(_ text: String) {
        var address = text
        var scope: UInt32 = 0
        if let percent = text.firstIndex(of: "%") {
            address = String(text[..<percent])
            let zone = String(text[text.index(after: percent)...])
            guard !zone.isEmpty, address.contains(":") else { return nil }
            scope = UInt32(zone) ?? if_nametoindex(zone)
        }
        if address.contains(":") {
            var bytes = [UInt8](repeating: 0, count: 16)
            guard inet_pton(AF_INET6, address, &bytes) == 1 else { return nil }
            self.init(ipv6: bytes, scope: scope)
        } else {
            var bytes = [UInt8](repeating: 0, count: 4)
            guard inet_pton(AF_INET, address, &bytes) == 1 else { return nil }
            self = .ipv4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        }
    }

    /// The address as the 128-bit IPv6 (or IPv4-mapped) value the address blocks compare; nil for unix.
    var words: (UInt64, UInt64)? {
        switch self {
        case .ipv4(let value): return (0, 0x0000_ffff_0000_0000 | UInt64(value))
        case .ipv6(let high, let low, _): return (high, low)
        case .unix: return nil
        }
    }

    /// The key the throttle and the per-address caps count by: an IPv4 address as it is, an IPv6
    /// address by its /64 (one host usually holds a whole /64, and the scope is just the interface it
    /// came in on), a unix client by its uid (one local account is one source).
    public var throttleKey: String {
        switch self {
        case .ipv4: return description
        case .ipv6(let high, _, _): return Self.text(ipv6: high, 0, scope: 0) + "/64"
        case .unix(let uid): return uid.map { "unix:uid=\($0)" } ?? "unix"
        }
    }

    /// For logs: numeric, with a link-local address's interface index after "%".
    public var description: String {
        switch self {
        case .ipv4(let value):
            return "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
        case .ipv6(let high, let low, let scope):
            return Self.text(ipv6: high, low, scope: scope)
        case .unix:
            return "unix"
        }
    }

    static func text(ipv6 high: UInt64, _ low: UInt64, scope: UInt32) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<8 {
            bytes[index] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * index))
            bytes[8 + index] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * index))
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, bytes, &text, socklen_t(text.count)) != nil else { return "unknown" }
        let printed = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return scope == 0 ? printed : "\(printed)%\(scope)"
    }
}
