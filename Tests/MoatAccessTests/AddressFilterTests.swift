import Glibc
import MoatAccess
import Testing

@Suite struct AddressFilterTests {
    func block(_ text: String) -> AddressBlock { AddressBlock(text)! }

    @Test func blocksParseAndRefuseTypos() {
        for good in [
            "10.0.0.0/8", "192.0.2.7", "127.0.0.0/8", "::1", "2001:db8::/32", "0.0.0.0/0", "::/0",
            "::ffff:10.0.0.0/104",
        ] {
            #expect(AddressBlock(good) != nil, "\(good)")
        }
        for bad in [
            "10.0.0.1/8", "10.0.0.0/33", "::1/129", "10.0.0", "example.com", "", "10.0.0.0/", "10.0.0.0/-1",
            "1.2.3.4/8x", "2001:db8::1/32",
        ] {
            #expect(AddressBlock(bad) == nil, "\(bad)")
        }
        #expect(block("0.0.0.0/0").coversEveryone)
        #expect(block("::/0").coversEveryone)
        #expect(!block("10.0.0.0/8").coversEveryone)
    }

    @Test func allowListRefusesEverythingElse() {
        let filter = AddressFilter(allow: [block("10.0.0.0/8"), block("127.0.0.2"), block("2001:db8::/32")])
        #expect(filter.isRestrictive)
        #expect(filter.decision(for: PeerAddress("10.200.3.4")) == .allowed)
        #expect(filter.decision(for: PeerAddress("127.0.0.2")) == .allowed)
        #expect(filter.decision(for: PeerAddress("127.0.0.3")) == .notAllowed)
        #expect(filter.decision(for: PeerAddress("11.0.0.1")) == .notAllowed)
        #expect(filter.decision(for: PeerAddress("2001:db8:ffff::1")) == .allowed)
        #expect(filter.decision(for: PeerAddress("2001:db9::1")) == .notAllowed)
        #expect(filter.decision(for: PeerAddress("::1")) == .notAllowed)
        // IPv4-mapped peers (an IPv6 socket accepting IPv4) match IPv4 rules.
        #expect(filter.decision(for: PeerAddress("::ffff:10.1.1.1")) == .allowed)
        #expect(filter.decision(for: PeerAddress("::ffff:11.1.1.1")) == .notAllowed)
    }

    @Test func denyWinsAndEmptyListsAllowAll() {
        let filter = AddressFilter(allow: [block("127.0.0.0/8")], deny: [block("127.0.0.9")])
        #expect(filter.decision(for: PeerAddress("127.0.0.8")) == .allowed)
        #expect(filter.decision(for: PeerAddress("127.0.0.9")) == .denied)
        let denyOnly = AddressFilter(deny: [block("192.0.2.0/24")])
        #expect(denyOnly.isRestrictive)
        #expect(denyOnly.decision(for: PeerAddress("192.0.2.200")) == .denied)
        #expect(denyOnly.decision(for: PeerAddress("198.51.100.1")) == .allowed)
        #expect(AddressFilter().decision(for: PeerAddress("203.0.113.5")) == .allowed)
        #expect(!AddressFilter().isRestrictive)
        #expect(!AddressFilter(allow: [block("0.0.0.0/0")]).isRestrictive)
    }

    /// A link-local peer as the kernel hands it over: fe80::/10 with the interface index as its scope.
    func linkLocal(_ last: UInt8, scope: UInt32) -> PeerAddress {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_scope_id = scope
        withUnsafeMutableBytes(of: &address.sin6_addr) { bytes in
            bytes[0] = 0xfe
            bytes[1] = 0x80
            bytes[15] = last
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                PeerAddress($0, length: socklen_t(MemoryLayout<sockaddr_in6>.size))!
            }
        }
    }

    @Test func linkLocalPeersMeetTheListsWhateverTheirScope() {
        let peer = linkLocal(7, scope: 3)
        #expect(peer == .ipv6(high: 0xfe80_0000_0000_0000, low: 7, scope: 3))
        #expect(peer.description == "fe80::7%3")
        #expect(PeerAddress("fe80::7%3") == peer)
        let deny = AddressFilter(allow: [block("198.18.0.0/15")], deny: [block("fe80::/10")])
        #expect(deny.decision(for: peer) == .denied)
        #expect(deny.decision(for: PeerAddress("fe80::7%3")) == .denied)
        #expect(AddressFilter(allow: [block("198.18.0.0/15")]).decision(for: peer) == .notAllowed)
        #expect(AddressFilter(allow: [block("fe80::/10")]).decision(for: peer) == .allowed)
        // One host on one link is one source, whichever interface it came in on.
        #expect(peer.throttleKey == "fe80::/64")
        #expect(linkLocal(9, scope: 4).throttleKey == peer.throttleKey)
    }

    @Test func unknownPeersAreRefusedWhenAnyListExists() {
        let allow = AddressFilter(allow: [block("10.0.0.0/8")])
        let deny = AddressFilter(deny: [block("192.0.2.0/24")])
        for filter in [allow, deny] {
            #expect(filter.decision(for: nil as PeerAddress?) == .notAllowed)
            #expect(filter.decision(for: PeerAddress("unknown")) == .notAllowed)
            #expect(filter.decision(for: PeerAddress("fe80::1%")) == .notAllowed)
            #expect(filter.decision(for: PeerAddress("")) == .notAllowed)
            // Unix-socket clients are reached through the socket file's mode, not IP lists.
            #expect(filter.decision(for: PeerAddress.unix(uid: 1000)) == .allowed)
        }
        #expect(AddressFilter().decision(for: nil as PeerAddress?) == .allowed)
    }

    @Test func peersFromSocketAddresses() {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_addr.s_addr = UInt32(0xc000_0207).bigEndian
        #expect(PeerAddress(v4) == .ipv4(0xc000_0207))
        #expect(PeerAddress(v4).description == "192.0.2.7")
        #expect(PeerAddress("::ffff:192.0.2.7") == .ipv4(0xc000_0207))
        #expect(PeerAddress("2001:db8::1")?.description == "2001:db8::1")
        #expect(PeerAddress(".unix") == nil)
        #expect(PeerAddress.unix(uid: 65534).throttleKey == "unix:uid=65534")
        #expect(PeerAddress.unix(uid: 0).throttleKey != PeerAddress.unix(uid: 65534).throttleKey)
        var short = sockaddr_in6()
        short.sin6_family = sa_family_t(AF_INET6)
        let none = withUnsafePointer(to: &short) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                PeerAddress($0, length: socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(none == nil)
    }
}
