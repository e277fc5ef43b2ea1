import MoatAccess
import MoatConfig
import Testing

@testable import MoatAudit

@Suite struct ConfigurationCheckTests {
    let modes: [String: UInt32] = ["/etc/moat/credentials": 0o100600, "/tmp/open": 0o100644, "/tmp/group": 0o100640]

    func check(_ arguments: [String]) throws -> [Finding] {
        let modes = self.modes
        let check = ConfigurationCheck(subject: "command line") { path in modes[path].map { .init(mode: $0) } }
        do {
            return check.findings(for: try ServeOptions.parse(arguments).resolve())
        } catch let error as ConfigurationError {
            return check.refused(error.description)
        }
    }

    func names(_ findings: [Finding]) -> [String: Severity] {
        Dictionary(findings.map { ($0.rule.name, $0.severity) }, uniquingKeysWith: max)
    }

    @Test func theDefaultHasNoFindings() throws {
        #expect(try check([]).isEmpty)
    }

    @Test func anOpenPublicBindIsCritical() throws {
        let found = names(try check(["-l", "0.0.0.0", "-o", "insecure_public_bind", "-A"]))
        #expect(found["public-bind-open"] == .critical)
        #expect(found["flush-shutdown"] == .high)
        #expect(found["public-plaintext"] == .low)
    }

    @Test func whatMoatRefusesIsReportedAsRefused() throws {
        let findings = try check(["-l", "0.0.0.0"])
        #expect(findings.map(\.rule) == [CheckRules.refused])
        #expect(findings[0].message.contains("0.0.0.0"))
        #expect(try check(["-U", "11211"]).map(\.rule) == [CheckRules.refused])
    }

    @Test func allowListsUDPAndSecrets() throws {
        let allowListOnly = names(try check(["-l", "10.0.0.1", "-o", "allow=10.0.0.0/24", "-U", "11211"]))
        #expect(allowListOnly["public-bind-allow-list-only"] == .medium)
        #expect(allowListOnly["udp-enabled"] == .low)

        let insecureUDP = names(try check(["-U", "11211", "-o", "insecure_udp,udp_amplification=10"]))
        #expect(insecureUDP["udp-enabled"] == .high)

        #expect(names(try check(["--credentials", "/etc/moat/credentials"])).isEmpty)
        #expect(names(try check(["--credentials", "/tmp/open"]))["readable-secret"] == .high)
        #expect(names(try check(["--credentials", "/tmp/group"]))["readable-secret"] == .low)
        #expect(names(try check(["--credentials", "/tmp/missing"]))["readable-secret"] == .high)
        let plaintext = names(try check(["-Y", "/tmp/open"]))
        #expect(plaintext["plaintext-password-file"] == .medium)
        #expect(plaintext["readable-secret"] == .high)
    }

    @Test func warmRestartSnapshots() throws {
        // Directories: the serving account's (uid 65534) with mode 0700, root's, and one open to all.
        let statuses: [String: ConfigurationCheck.FileStatus] = [
            "/var/lib/moat": .init(mode: 0o040700, owner: 65534, group: 65534),
            "/var/lib/rootonly": .init(mode: 0o040700, owner: 0, group: 0),
            "/tmp/shared": .init(mode: 0o041777, owner: 0, group: 0),
            "/etc/moat/snapshot.key": .init(mode: 0o100600), "/tmp/key": .init(mode: 0o100644),
        ]
        let check = ConfigurationCheck(subject: "command line", status: { statuses[$0] }) { _ in
            .init(user: 65534, group: 65534)
        }
        func names(_ arguments: [String], tenants: TenantPlan? = nil) throws -> [String: Severity] {
            self.names(check.findings(for: try ServeOptions.parse(arguments).resolve(), tenants: tenants))
        }
        #expect(try names(["-e", "/var/lib/moat/cache"]).isEmpty)
        #expect(try names(["-e", "/var/lib/rootonly/cache"])["snapshot-not-writable"] == .medium)
        #expect(try names(["-e", "/var/lib/none/cache"])["snapshot-not-writable"] == .medium)
        let shared = try names(["-e", "/tmp/shared/cache"])
        #expect(shared["snapshot-directory-open"] == .high && shared["snapshot-not-writable"] == nil)
        // Tenants: their values must not lie in clear on the disk.
        var plan = TenantPlan()
        plan.buckets = [BucketPlan(name: "shop", memoryLimit: 1 << 20)]
        #expect(try names(["-e", "/var/lib/moat/cache"], tenants: plan)["snapshot-unencrypted"] == .medium)
        #expect(
            try names(["-e", "/var/lib/moat/cache", "-o", "restore_key=/etc/moat/snapshot.key"], tenants: plan)
                .isEmpty)
        #expect(try names(["-e", "/var/lib/moat/cache", "-o", "restore_key=/tmp/key"])["readable-secret"] == .high)
    }

    @Test func rootTLSAndLogging() throws {
        #expect(names(try check(["-u", "root"]))["runs-as-root"] == .high)
        #expect(names(try check(["-o", "security_log=off"]))["security-log-off"] == .low)
        let tls = names(try check(["-Z", "-o", "ssl_chain_cert=/tmp/group,ssl_key=/tmp/open"]))
        #expect(tls["tls-without-verification"] == .low)
        #expect(tls["readable-secret"] == .high)
    }
}
