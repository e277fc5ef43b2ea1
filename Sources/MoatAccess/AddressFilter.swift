#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One CIDR block, IPv4 or IPv6. IPv4 blocks are kept as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n),
/// so one 128-bit comparison serves both families and IPv4-mapped peers match IPv4 rules.
public struct AddressBlock: Sendable, Equatable, CustomStringConvertible {
    let high: UInt64
    let low: UInt64
    let maskHigh: UInt64
    let maskLow: UInt64
    public let description: String

    /// `10.0.0.0/8`, `192.0.2.7`, `::1`, `2001:db8::/32`, `::ffff:10.0.0.0/104`; nil when malformed
    /// (bad address, prefix out of range, or host bits set beyond the prefix, which is usually a typo).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let bytes = AddressBlock.parse(parts[0]) else { return nil }
        let isIPv4 = !parts[0].contains(":")
        var prefix = isIPv4 ? 32 : 128
        if parts.count == 2 {
            guard let given = Int(parts[1]), given >= 0, given <= prefix, parts[1].allSatisfy(\.isNumber) else {
                return nil
            }
            prefix = given
        }
        if isIPv4 { prefix += 96 }
        let (high, low) = AddressBlock.words(bytes)
        maskHigh = prefix >= 64 ? ~0 : (prefix == 0 ? 0 : ~0 << UInt64(64 - prefix))
        maskLow = prefix <= 64 ? 0 : (prefix == 128 ? ~0 : ~0 << UInt64(128 - prefix))
        guard high & ~maskHigh == 0, low & ~maskLow == 0 else { return nil }
        self.high = high
        self.low = low
        description = text
    }

    /// True for 0.0.0.0/0 and ::/0 (and any block that wide): an allow list holding one allows everyone.
    public var coversEveryone: Bool {
        maskHigh == 0 || (maskHigh == ~0 && high == 0 && maskLow == ~0 << 32 && low == 0x0000_ffff_0000_0000)
    }

    func contains(_ address: (UInt64, UInt64)) -> Bool {
        address.0 & maskHigh == high && address.1 & maskLow == low
    }

    /// 16 bytes for an IPv6 address or an IPv4 one mapped into IPv6.
    static func parse(_ text: String) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: 16)
        if text.contains(":") {
            return inet_pton(AF_INET6, text, &bytes) == 1 ? bytes : nil
        }
        var v4 = [UInt8](repeating: 0, count: 4)
        guard inet_pton(AF_INET, text, &v4) == 1 else { return nil }
        bytes[10] = 0xff
        bytes[11] = 0xff
        bytes.replaceSubrange(12..<16, with: v4)
        return bytes
    }

    static func words(_ bytes: [UInt8]) -> (UInt64, UInt64) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 { high = high << 8 | UInt64(bytes[index]) }
        for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
        return (high, low)
    }
}

/// Which client addresses may connect: deny rules win over allow rules; with an allow list, an address
/// it does not name is refused; with none, every address not denied may connect.
public struct AddressFilter: Sendable, Equatable {
    public enum Decision: Sendable, Equatable {
        case allowed
        /// Not on the allow list.
        case notAllowed
        /// On the deny list.
        case denied
    }

    public var allow: [AddressBlock]
    public var deny: [AddressBlock]

    public init(allow: [AddressBlock] = [], deny: [AddressBlock] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// True when some rule restricts who may connect.
    public var isRestrictive: Bool { !deny.isEmpty || (!allow.isEmpty && !allow.contains(where: \.coversEveryone)) }

    /// The decision for a peer. With no list, everyone may connect. With any list, a peer whose address
    /// is unknown (nil) is refused, so a transport that cannot say who is calling fails closed; unix-socket
    /// clients are not judged by IP lists (the socket file's mode decides who reaches them).
    public func decision(for peer: PeerAddress?) -> Decision {
        guard !allow.isEmpty || !deny.isEmpty else { return .allowed }
        guard let peer else { return .notAllowed }
        guard let address = peer.words else { return .allowed }
        if deny.contains(where: { $0.contains(address) }) { return .denied }
        if !allow.isEmpty, !allow.contains(where: { $0.contains(address) }) { return .notAllowed }
        return .allowed
    }
}
