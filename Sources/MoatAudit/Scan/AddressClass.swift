import MoatAccess

/// Who can reach an address: the same open service is a note on loopback and an incident on the Internet.
package enum AddressClass: String, Sendable, Equatable {
    /// 127.0.0.0/8, ::1: this machine only.
    case loopback
    /// RFC 1918, shared (100.64/10), link-local, benchmarking (198.18/15), documentation and ULA ranges:
    /// not routed on the Internet.
    case `private`
    /// Anything else: assume the Internet can reach it.
    case `public`

    static let loopbackBlocks = AddressFilter(allow: ["127.0.0.0/8", "::1"].compactMap(AddressBlock.init))
    static let privateBlocks = AddressFilter(
        allow: [
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "198.18.0.0/15",
            "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "0.0.0.0/8",
            "fc00::/7", "fe80::/10", "2001:db8::/32",
        ].compactMap(AddressBlock.init))

    /// The class of a numeric address; a name that is not an address counts as public.
    package init(address: String) {
        guard AddressBlock(address) != nil else {
            self = .public
            return
        }
        let peer = PeerAddress(address)
        if AddressClass.loopbackBlocks.decision(for: peer) == .allowed {
            self = .loopback
        } else if AddressClass.privateBlocks.decision(for: peer) == .allowed {
            self = .private
        } else {
            self = .public
        }
    }
}
