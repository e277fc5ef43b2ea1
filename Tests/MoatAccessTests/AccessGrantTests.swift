import MoatAccess
import Testing

@Suite struct AccessGrantTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func patternsAreExactKeysOrPrefixes() throws {
        let p = try KeyPatterns(patterns: ["cart:*", "motd"])
        #expect(p.matches(bytes("cart:1")))
        #expect(p.matches(bytes("cart:")))
        #expect(!p.matches(bytes("cart")))
        #expect(p.matches(bytes("motd")))
        #expect(!p.matches(bytes("motd2")))
        #expect(!p.matches(bytes("xcart:1")))
        #expect(try KeyPatterns(patterns: ["*"]).matches(bytes("anything")))
        for bad in ["", "a*b", "**", "*a", "has space", "tab\t*"] {
            #expect(throws: InvalidKeyPattern(pattern: bad)) { try KeyPatterns(patterns: [bad]) }
        }
    }

    @Test func keyListsCombineAsRedisDoes() throws {
        let grant = AccessGrant(
            permissions: [.read, .write], keys: try KeyPatterns(patterns: ["app:*"]),
            readKeys: try KeyPatterns(patterns: ["pub:*"]),
            writeKeys: nil)
        func read(_ k: String) -> Bool { bytes(k).withUnsafeBytes { grant.mayRead($0) } }
        func write(_ k: String) -> Bool { bytes(k).withUnsafeBytes { grant.mayWrite($0) } }
        #expect(read("app:1") && write("app:1"))
        #expect(read("pub:1") && !write("pub:1"))
        #expect(!read("other") && !write("other"))
        #expect(grant.isRestricted)
    }

    @Test func categoriesGateDirections() throws {
        let readOnly = AccessGrant(permissions: [.read])
        bytes("k").withUnsafeBytes { k in
            #expect(readOnly.mayRead(k))
            #expect(!readOnly.mayWrite(k))
        }
        #expect(readOnly.isRestricted)
        #expect(!AccessGrant.unrestricted.isRestricted)
        // Every key, every category: nothing to check on the hot path.
        #expect(
            !AccessGrant(permissions: .all, keys: try KeyPatterns(patterns: ["*"]), readKeys: nil, writeKeys: nil)
                .isRestricted)
        #expect(Permissions(name: "all") == .all)
        #expect(Permissions(name: "fly") == nil)
        #expect(Permissions([.read, .admin]).description == "read,admin")
    }

    @Test func quotasLeaveTheRestToTheDefaultBucket() throws {
        let mb = 1_048_576
        let plan = TenantPlan(
            buckets: [
                BucketPlan(name: "a", memoryLimit: 16 * mb),
                BucketPlan(name: "b", memoryLimit: 8 * mb, evictionsEnabled: false),
            ],
            users: [UserPlan(name: "u", bucket: "a", grant: .unrestricted)])
        let quotas = try plan.quotas(total: 64 * mb).get()
        #expect(quotas.map(\.name) == ["default", "a", "b"])
        #expect(quotas[0].memoryLimit == 40 * mb)
        #expect(throws: TenantPlanError.self) { try plan.quotas(total: 20 * mb).get() }
        var missing = plan
        missing.users = [UserPlan(name: "u", bucket: "nowhere", grant: .unrestricted)]
        #expect(throws: TenantPlanError.self) { try missing.quotas(total: 64 * mb).get() }
        var starved = plan
        starved.buckets[0].memoryLimit = 56 * mb
        starved.users = [UserPlan(name: "u", bucket: "default", grant: .unrestricted)]
        #expect(throws: TenantPlanError.self) { try starved.quotas(total: 64 * mb).get() }
        var twice = plan
        twice.buckets.append(BucketPlan(name: "a", memoryLimit: mb))
        #expect(throws: TenantPlanError.self) { try twice.quotas(total: 64 * mb).get() }
    }
}
