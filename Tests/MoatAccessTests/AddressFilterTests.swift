import MoatAccess
import Testing

@Suite struct AddressFilterTests {
    func block(_ text: String) -> AddressBlock { AddressBlock(text)! }

    @Test func blocksParseAndRefuseTypos() {
        for good in ["10.0.0.0/8", "192.0.2.7", "127.0.0.0/8", "::1", "2001:db8::/32", "0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104"] {
            #expect(AddressBlock(good) != nil, "\(good)")
        }
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "::1/129", "10.0.0", "example.com", "", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/8x", "2001:db8::1/32"] {
            #expect(AddressBlock(bad) == nil, "\(bad)")
        }
        #expect(block("0.0.0.0/0").coversEveryone)
        #expect(block("::/0").coversEveryone)
        #expect(!block("10.0.0.0/8").coversEveryone)
    }

    @Test func allowListRefusesEverythingElse() {
        let filter = AddressFilter(allow: [block("10.0.0.0/8"), block("127.0.0.2"), block("2001:db8::/32")])
        #expect(filter.isRestrictive)
        #expect(filter.decision(for: "10.200.3.4") == .allowed)
        #expect(filter.decision(for: "127.0.0.2") == .allowed)
        #expect(filter.decision(for: "127.0.0.3") == .notAllowed)
        #expect(filter.decision(for: "11.0.0.1") == .notAllowed)
        #expect(filter.decision(for: "2001:db8:ffff::1") == .allowed)
        #expect(filter.decision(for: "2001:db9::1") == .notAllowed)
        #expect(filter.decision(for: "::1") == .notAllowed)
        // IPv4-mapped peers (an IPv6 socket accepting IPv4) match IPv4 rules.
        #expect(filter.decision(for: "::ffff:10.1.1.1") == .allowed)
        #expect(filter.decision(for: "::ffff:11.1.1.1") == .notAllowed)
    }

    @Test func denyWinsAndEmptyListsAllowAll() {
        let filter = AddressFilter(allow: [block("127.0.0.0/8")], deny: [block("127.0.0.9")])
        #expect(filter.decision(for: "127.0.0.8") == .allowed)
        #expect(filter.decision(for: "127.0.0.9") == .denied)
        let denyOnly = AddressFilter(deny: [block("192.0.2.0/24")])
        #expect(denyOnly.isRestrictive)
        #expect(denyOnly.decision(for: "192.0.2.200") == .denied)
        #expect(denyOnly.decision(for: "198.51.100.1") == .allowed)
        #expect(AddressFilter().decision(for: "203.0.113.5") == .allowed)
        #expect(!AddressFilter().isRestrictive)
        #expect(!AddressFilter(allow: [block("0.0.0.0/0")]).isRestrictive)
    }
}
