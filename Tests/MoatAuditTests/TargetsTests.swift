import Testing

@testable import MoatAudit

@Suite struct TargetsTests {
    func list(ports: [Int] = [11211], limit: Int = 65_536, files: [String: String] = [:]) -> TargetList {
        TargetList(ports: ports, limit: limit) { path in
            guard let text = files[path] else { throw TargetError("no such file") }
            return text
        }
    }

    @Test func hostsPortsAndBrackets() throws {
        let endpoints = try list(ports: [11211, 11212]).expand(["127.0.0.1", "127.0.0.2:9999", "[::1]:7000", "::1"])
        #expect(
            endpoints.map(\.description) == [
                "127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.2:9999", "[::1]:7000", "[::1]:11211", "[::1]:11212",
            ])
    }

    @Test func blocksExpandToEveryAddressOnce() throws {
        let endpoints = try list().expand(["127.0.0.4/30", "127.0.0.5", "10.1.2.3/32:1234"])
        #expect(
            endpoints.map(\.description) == [
                "127.0.0.4:11211", "127.0.0.5:11211", "127.0.0.6:11211", "127.0.0.7:11211", "10.1.2.3:1234",
            ])
        let six = try list().expand(["fd00::10/126"])
        #expect(six.map(\.host) == ["fd00::10", "fd00::11", "fd00::12", "fd00::13"])
    }

    @Test func filesHoldTargetsAndComments() throws {
        let files = ["/t": "# app servers\n127.0.0.2 127.0.0.3:11300, 127.0.0.8/31\n\n  # end\n"]
        let endpoints = try list(files: files).expand(["@/t"])
        #expect(
            endpoints.map(\.description) == [
                "127.0.0.2:11211", "127.0.0.3:11300", "127.0.0.8:11211", "127.0.0.9:11211",
            ])
        #expect(throws: TargetError.self) { try list(files: ["/u": "@/t"]).expand(["@/u"]) }
        #expect(throws: TargetError.self) { try list().expand(["@/missing"]) }
    }

    @Test func largeRangesAndBadInputAreRefused() {
        #expect(throws: TargetError.self) { try list(limit: 256).expand(["10.0.0.0/16"]) }
        #expect(throws: TargetError.self) {
            try list(limit: 3).expand(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"])
        }
        #expect(throws: TargetError.self) { try list().expand(["2001:db8::/64"]) }
        for bad in ["127.0.0.1:0", "127.0.0.1:70000", "[::1", "[::1]x", "10.0.0.0/33", "bad host!", ""] {
            #expect(throws: TargetError.self, "\(bad)") { try list().expand([bad]) }
        }
    }

    @Test func addressClasses() {
        #expect(AddressClass(address: "127.0.0.2") == .loopback)
        #expect(AddressClass(address: "::1") == .loopback)
        for address in [
            "10.1.2.3", "172.20.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "198.18.0.1", "fd12::1", "fe80::1",
        ] {
            #expect(AddressClass(address: address) == .private, "\(address)")
        }
        for address in ["8.8.8.8", "172.32.0.1", "2a00:1450::1", "not-an-address"] {
            #expect(AddressClass(address: address) == .public, "\(address)")
        }
    }

    @Test func progressBarFillsWithProgress() {
        #expect(ProgressBar.render(done: 0, total: 4, services: 0, width: 4) == "\r[    ] 0/4 endpoints, 0 services")
        #expect(ProgressBar.render(done: 2, total: 4, services: 1, width: 4) == "\r[==  ] 2/4 endpoints, 1 service")
        #expect(ProgressBar.render(done: 4, total: 4, services: 2, width: 4) == "\r[====] 4/4 endpoints, 2 services")
    }
}
