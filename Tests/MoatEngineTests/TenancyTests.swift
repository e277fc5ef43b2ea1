import MoatAccess
import MoatEngine
import MoatProtocol
import MoatStorage
import NIOCore
import Testing

/// Two tenants on one engine, driven through sessions byte for byte.
struct TenantFixture {
    let engine: Engine

    static let mb = 1_048_576

    static func plan(readerCanWrite: Bool = false, withBlog: Bool = true) throws -> TenantPlan {
        var users = [
            UserPlan(name: "shop", bucket: "shop", grant: AccessGrant(permissions: [.read, .write])),
            UserPlan(
                name: "reader", bucket: "shop",
                grant: AccessGrant(permissions: readerCanWrite ? [.read, .write] : [.read])),
            UserPlan(
                name: "scoped", bucket: "shop",
                grant: AccessGrant(
                    permissions: [.read, .write], keys: try KeyPatterns(patterns: ["app:*"]),
                    readKeys: try KeyPatterns(patterns: ["pub:*"]),
                    writeKeys: nil)),
        ]
        if withBlog { users.append(UserPlan(name: "blog", bucket: "blog", grant: AccessGrant(permissions: .all))) }
        return TenantPlan(
            buckets: [
                BucketPlan(name: "shop", memoryLimit: 4 * mb),
                BucketPlan(name: "blog", memoryLimit: 2 * mb, evictionsEnabled: false),
            ],
            users: users)
    }

    init() throws {
        var store = CredentialStore()
        for name in ["shop", "reader", "scoped", "blog", "stranger"] {
            try store.add(user: name, password: Array("pw".utf8), iterations: 4096)
        }
        var policy = AuthPolicy()
        policy.failureDelay = 0
        let authenticator = Authenticator(settings: AuthenticationSettings(store: store, policy: policy), now: { 0 })
        let cache = Cache(configuration: CacheConfiguration(memoryLimit: 16 * Self.mb, maxItemSize: 1 << 20))
        engine = Engine(cache: cache, settings: EngineSettings(), authenticator: authenticator)
        try engine.reconfigure(tenants: try Self.plan(), credentials: store)
    }

    func login(_ user: String) -> Session {
        var session = engine.makeSession(peer: "10.0.0.9")
        let secret = "\(user) pw"
        let (reply, _) = AuthFixture.text(&session, "set a 0 0 \(secret.utf8.count)\r\n\(secret)\r\n")
        #expect(reply == "STORED\r\n", "login \(user)")
        return session
    }
}

@Suite struct TenancyTests {
    @Test func sameKeyDifferentBuckets() throws {
        let f = try TenantFixture()
        var shop = f.login("shop")
        var blog = f.login("blog")
        #expect(AuthFixture.text(&shop, "set k 0 0 4\r\nshop\r\n").0 == "STORED\r\n")
        #expect(AuthFixture.text(&blog, "set k 0 0 4\r\nblog\r\n").0 == "STORED\r\n")
        #expect(AuthFixture.text(&shop, "get k\r\n").0 == "VALUE k 0 4\r\nshop\r\nEND\r\n")
        #expect(AuthFixture.text(&blog, "get k\r\n").0 == "VALUE k 0 4\r\nblog\r\nEND\r\n")
        #expect(AuthFixture.text(&blog, "flush_all\r\n").0 == "OK\r\n")
        #expect(AuthFixture.text(&blog, "get k\r\n").0 == "END\r\n")
        #expect(AuthFixture.text(&shop, "get k\r\n").0 == "VALUE k 0 4\r\nshop\r\nEND\r\n")
        #expect(shop.bucket.name == "shop" && blog.bucket.name == "blog")
    }

    @Test func usersNotInTheConfigurationCannotLogIn() throws {
        let f = try TenantFixture()
        var session = f.engine.makeSession(peer: "10.0.0.9")
        #expect(
            AuthFixture.text(&session, "set a 0 0 11\r\nstranger pw\r\n").0 == "CLIENT_ERROR authentication failure\r\n"
        )
        #expect(!session.isAuthenticated)
    }

    @Test func deniedCommandsAnswerAndAreCounted() throws {
        let f = try TenantFixture()
        var reader = f.login("reader")
        #expect(AuthFixture.text(&reader, "get k\r\n").0 == "END\r\n")
        #expect(AuthFixture.text(&reader, "set k 0 0 1\r\nx\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&reader, "set k 0 0 1 noreply\r\nx\r\n").0 == "")
        #expect(AuthFixture.text(&reader, "ms k 1\r\nx\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&reader, "mg k v\r\n").0 == "EN\r\n")
        #expect(AuthFixture.text(&reader, "mg k v N30\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&reader, "flush_all\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&reader, "stats users\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        // Binary, after SASL PLAIN: 0x24 for a set, quiet (setQ) or not.
        var b = f.engine.makeSession(peer: "10.0.0.9")
        let login = parse(
            drive(&b, request(0x21, key: "PLAIN", value: [0] + Array("reader".utf8) + [0] + Array("pw".utf8))).replies)
        #expect(login.map(\.status) == [0])
        let refused = parse(
            drive(
                &b,
                request(0x01, key: "k", extras: setExtras(), value: [1])
                    + request(0x11, key: "k", extras: setExtras(), value: [1])
            ).replies)
        #expect(refused.map(\.status) == [0x24, 0x24])
        #expect(parse(drive(&b, request(0x00, key: "k")).replies).map(\.status) == [1])
        let users = Dictionary(uniqueKeysWithValues: f.engine.userStats().map { ($0.name, $0.value.text) })
        #expect(users["user:reader:acl_denied"] == "8")
        #expect(users["user:reader:auth_success"] == "2")
    }

    @Test func keyPatternsApplyPerDirection() throws {
        let f = try TenantFixture()
        var shop = f.login("shop")
        _ = AuthFixture.text(&shop, "set pub:1 0 0 1\r\np\r\nset other 0 0 1\r\no\r\n")
        var scoped = f.login("scoped")
        #expect(AuthFixture.text(&scoped, "set app:1 0 0 1\r\na\r\n").0 == "STORED\r\n")
        #expect(AuthFixture.text(&scoped, "get pub:1\r\n").0 == "VALUE pub:1 0 1\r\np\r\nEND\r\n")
        #expect(AuthFixture.text(&scoped, "set pub:1 0 0 1\r\nx\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&scoped, "get app:1 other\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&scoped, "delete other\r\n").0 == "CLIENT_ERROR permission denied\r\n")
    }

    @Test func aRemovedBucketsLastCommandsStayInTheTotals() throws {
        let f = try TenantFixture()
        var blog = f.login("blog")
        #expect(AuthFixture.text(&blog, "get missing\r\n").0 == "END\r\n")  // counted, not yet published
        var plan = try TenantFixture.plan(withBlog: false)
        plan.buckets.removeAll { $0.name == "blog" }
        try f.engine.reconfigure(tenants: plan, credentials: nil)
        let stillValid = blog.revalidate()
        #expect(!stillValid)
        blog.publishCounters()  // what a closing connection does: nothing left to lose
        let totals = f.engine.commandTotals()
        #expect(totals.getMisses == 1)
        #expect(totals.cmdGet == 1)
    }

    @Test func reloadChangesGrantsAndClosesRemovedUsers() throws {
        let f = try TenantFixture()
        var reader = f.login("reader")
        var blog = f.login("blog")
        var shop = f.login("shop")
        _ = AuthFixture.text(&shop, "set kept 0 0 1\r\nk\r\n")
        try f.engine.reconfigure(
            tenants: try TenantFixture.plan(readerCanWrite: true, withBlog: false), credentials: nil)
        #expect(AuthFixture.text(&reader, "set k 0 0 1\r\nx\r\n").0 == "STORED\r\n")
        var blogAgain = blog
        let stillValid = blogAgain.revalidate()
        #expect(!stillValid)
        #expect(AuthFixture.text(&blog, "get k\r\n").1 == .close)
        #expect(AuthFixture.text(&shop, "get kept\r\n").0 == "VALUE kept 0 1\r\nk\r\nEND\r\n")
        // A plan that does not fit changes nothing.
        var tooBig = try TenantFixture.plan()
        tooBig.buckets[0].memoryLimit = 64 * TenantFixture.mb
        #expect(throws: TenantPlanError.self) { try f.engine.reconfigure(tenants: tooBig, credentials: nil) }
        #expect(AuthFixture.text(&reader, "set k 0 0 1\r\ny\r\n").0 == "STORED\r\n")
    }

    @Test func statsAreScopedToTheBucket() throws {
        let f = try TenantFixture()
        var shop = f.login("shop")
        var blog = f.login("blog")
        _ = AuthFixture.text(&shop, "set a 0 0 1\r\na\r\nset b 0 0 1\r\nb\r\nget a\r\n")
        _ = AuthFixture.text(&blog, "set a 0 0 1\r\na\r\n")
        func stats(_ s: inout Session, _ group: String = "") -> [String: String] {
            let text = AuthFixture.text(&s, "stats\(group.isEmpty ? "" : " " + group)\r\n").0
            var out: [String: String] = [:]
            for line in text.split(separator: "\r\n") where line.hasPrefix("STAT ") {
                let parts = line.split(separator: " ", maxSplits: 2)
                out[String(parts[1])] = parts.count > 2 ? String(parts[2]) : ""
            }
            return out
        }
        let shopStats = stats(&shop)
        #expect(shopStats["curr_items"] == "2" && shopStats["get_hits"] == "1" && shopStats["bucket"] == "shop")
        #expect(shopStats["curr_connections"] == nil)
        let blogStats = stats(&blog)
        #expect(blogStats["curr_items"] == "1" && blogStats["curr_connections"] != nil)
        let buckets = stats(&blog, "buckets")
        #expect(buckets["bucket:shop:curr_items"] == "2" && buckets["bucket:blog:curr_items"] == "1")
        #expect(buckets["bucket:blog:limit_maxbytes"] == "\(2 * TenantFixture.mb)")
        #expect(buckets["bucket:default:limit_maxbytes"] == "\(10 * TenantFixture.mb)")
    }

    @Test func theDefaultBucketKeepsTheServersEvictionPolicy() throws {
        // -M: a plan without buckets must not turn evictions back on.
        let cache = Cache(
            configuration: CacheConfiguration(memoryLimit: 1 << 20, maxItemSize: 1 << 18, evictionsEnabled: false))
        let engine = Engine(cache: cache, settings: EngineSettings())
        try engine.reconfigure(tenants: TenantPlan(), credentials: nil)
        var session = engine.makeSession()
        let value = String(repeating: "v", count: 50_000)
        var replies: [String] = []
        for i in 0..<40 { replies.append(AuthFixture.text(&session, "set k\(i) 0 0 50000\r\n\(value)\r\n").0) }
        #expect(replies.contains("SERVER_ERROR out of memory storing object\r\n"))
        #expect(cache.counters().evictions == 0)
    }
}

/// One permission table for every dialect: the same operation is allowed or refused alike, and
/// counted once, whether it came as text, meta or binary.
@Suite struct PermissionTableTests {
    func denied(_ f: TenantFixture) -> String? {
        f.engine.userStats().first { $0.name == "user:scoped:acl_denied" }?.value.text
    }

    @Test func textMetaAndBinaryAgree() throws {
        let f = try TenantFixture()
        var text = f.login("scoped")
        // scoped: reads and writes app:*, only reads pub:*.
        #expect(AuthFixture.text(&text, "set app:k 0 0 1\r\nv\r\n").0 == "STORED\r\n")
        #expect(AuthFixture.text(&text, "get pub:k\r\n").0 == "END\r\n")
        #expect(AuthFixture.text(&text, "set pub:k 0 0 1\r\nv\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&text, "gat 0 pub:k\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&text, "get app:k other\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&text, "flush_all\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(denied(f) == "4")
        #expect(AuthFixture.text(&text, "mg pub:k v\r\n").0 == "EN\r\n")
        #expect(AuthFixture.text(&text, "ms pub:k 1\r\nv\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&text, "mg pub:k T0 v\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(AuthFixture.text(&text, "md other\r\n").0 == "CLIENT_ERROR permission denied\r\n")
        #expect(denied(f) == "7")
        var binary = f.engine.makeSession(peer: "10.0.0.9")
        func send(_ bytes: [UInt8]) -> [UInt16] { parse(drive(&binary, bytes).replies).map(\.status) }
        #expect(send(request(0x21, key: "PLAIN", value: [0] + Array("scoped".utf8) + [0] + Array("pw".utf8))) == [0])
        #expect(send(request(0x00, key: "pub:k")) == [0x01])  // allowed: not found
        #expect(send(request(0x01, key: "pub:k", extras: setExtras(), value: [0x76])) == [0x24])
        #expect(send(request(0x1d, key: "pub:k", extras: be(UInt32(0)))) == [0x24])  // gat: a write too
        #expect(send(request(0x04, key: "other")) == [0x24])
        #expect(send(request(0x08, extras: be(UInt32(0)))) == [0x24])  // flush
        #expect(denied(f) == "11")
    }
}
