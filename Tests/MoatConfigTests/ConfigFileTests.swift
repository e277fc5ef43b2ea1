import MoatAccess
import MoatConfig
import Testing

@Suite struct ConfigFileTests {
    let example = """
        # three applications on one server
        server:
          memory-limit: 256
          listen: [127.0.0.1, "::1"]
          enable-sasl: true
          disable-evictions: false
          verbose: 2
          extended: [idle_timeout=600]
        buckets:
          shop: { memory: 64m }
          blog:
            memory: 32
            when_full: refuse
        users:
          shop-web:
            bucket: shop
            permissions: [read, write]
            keys: ["cart:*"]
            read_keys: [catalog]
          blog: { bucket: blog, permissions: all, certificate_subjects: [blog.internal] }
          ops: { permissions: [admin, dump] }
        """

    @Test func readsServerSettingsBucketsAndUsers() throws {
        let file = try ConfigFile.parse(example, path: "moat.yaml")
        var expected = ServerSection()
        expected.memoryLimit = "256"
        expected.listen = ["127.0.0.1", "::1"]
        expected.enableSASL = true
        expected.verbose = 2
        expected.extended = ["idle_timeout=600"]
        #expect(file.server == expected)
        #expect(
            file.tenants.buckets == [
                BucketPlan(name: "shop", memoryLimit: 64 << 20),
                BucketPlan(name: "blog", memoryLimit: 32 << 20, evictionsEnabled: false),
            ])
        let users = try #require(file.tenants.users)
        #expect(users.map(\.name) == ["shop-web", "blog", "ops"])
        #expect(users[0].grant.permissions == [.read, .write])
        #expect(Array("catalog".utf8).withUnsafeBytes { users[0].grant.mayRead($0) && !users[0].grant.mayWrite($0) })
        #expect(Array("cart:9".utf8).withUnsafeBytes { users[0].grant.mayWrite($0) })
        #expect(users[1].grant == .unrestricted && users[1].certificateSubjects == ["blog.internal"])
        #expect(users[2].bucket == "default" && users[2].grant.permissions == [.admin, .manage, .dump])
        // The server section fills the flags' model, and resolves as the flags it stands for would.
        var options = try ServeOptions.parse(["--credentials", "c"])
        options.fill(from: file.server)
        #expect(options.memoryLimit == "256" && options.verbose == 2 && options.enableSASL)
        let configuration = try options.resolve()
        #expect(configuration.memoryLimit == 256 << 20 && configuration.listeners.count == 2)
    }

    @Test func theCommandLineWinsOverTheFile() throws {
        var file = ServerSection()
        file.port = 2000
        file.threads = 8
        file.listen = ["127.0.0.2"]
        file.verbose = 1
        file.extended = ["idle_timeout=600"]
        file.disableEvictions = true
        var options = try ServeOptions.parse(["-t", "2", "-l", "127.0.0.3", "-v", "-o", "command_timeout=5"])
        options.fill(from: file)
        #expect(options.port == 2000 && options.threads == 2)  // given on the command line: its value
        #expect(options.listen == ["127.0.0.3"])  // a command-line -l replaces the file's list
        #expect(options.verbose == 2 && options.extended == ["idle_timeout=600", "command_timeout=5"])
        #expect(options.disableEvictions)
        // A value the command line gives explicitly, even memcached's default, still wins.
        var explicit = try ServeOptions.parse(["-t", "4"])
        explicit.fill(from: file)
        #expect(explicit.threads == 4)
        // Unset everywhere: memcached's defaults.
        let defaults = try ServeOptions.parse([]).resolve()
        #expect(defaults.threads == 4 && defaults.maxConnections == 1024 && defaults.memoryLimit == 64 << 20)
    }

    @Test func emptyFileSetsNothing() throws {
        let file = try ConfigFile.parse("# nothing yet\n", path: "f")
        #expect(file.server == ServerSection() && file.tenants == TenantPlan())
    }

    @Test(arguments: [
        ("users:\n  a: { bucket: nowhere }\n", "f:2:"),
        ("users:\n  a:\n    permissions: [read, fly]\n", "f:3:"),
        ("buckets:\n  b: { memory: 16m\n", "line 3"),
        ("buckets:\n  b: { memory: 16m }\n  b: { memory: 8m }\n", "line 2"),
        ("tenants: {}\n", "f:1:"),
        ("users:\n  a: { keys: ['a*b'] }\n", "f:2:"),
        ("server:\n  no-such-flag: 1\n", "f:2:"),
        ("server:\n  enable-sasl: maybe\n", "f:2:"),
        ("server:\n  verbose: 9\n", "f:2:"),
        ("server:\n  port: eleven\n", "f:2:"),
        ("buckets:\n  b: { memory: 16k }\n", "f:2:"),
        ("buckets:\n  'bad name': { memory: 16m }\n", "f:2:"),
        ("buckets:\n  b: { when_full: evict }\n", "f:2:"),
        ("users:\n  'a b': {}\n", "f:2:"),
        ("users:\n  a: { certificate_subjects: [x] }\n  b: { certificate_subjects: [x] }\n", "f:3:"),
        ("- a list\n", "f:1:"),
        ("users:\n  a: { permissions: { read: 1 } }\n", "f:2:"),
    ])
    func errorsNameTheLine(text: String, location: String) throws {
        do {
            _ = try ConfigFile.parse(text, path: "f")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains(location), "\(error.description)")
        }
    }

    @Test func aliasesCannotMakeASmallFileHuge() throws {
        // 400 users that all point at one 1,000-entry list: 400,000 values from a 6 KB file.
        var text =
            "users:\n  u0: &u { permissions: [" + Array(repeating: "read", count: 1000).joined(separator: ", ")
            + "] }\n"
        for index in 1..<400 { text += "  u\(index): *u\n" }
        do {
            _ = try ConfigFile.parse(text, path: "f")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("too large"))
        }
    }

    @Test(arguments: [
        // Flow style, block style, and alias chains (each alias one level deeper, in a few bytes a line).
        (String(repeating: "[", count: 500) + String(repeating: "]", count: 500) + "\n", "f:1:"),
        ((0..<200).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n") + " v\n", "f:65:"),
        ((["a0: &a0 x"] + (1..<5_000).map { "a\($0): &a\($0) [*a\($0 - 1)]" }).joined(separator: "\n") + "\n", "f:65:"),
        ((["a0: &a0 x"] + (1..<5_000).map { "? &a\($0) [*a\($0 - 1)]\n: 1" }).joined(separator: "\n") + "\n", "f:"),
    ])
    func deepNestingIsRefusedBeforeComposing(text: String, location: String) throws {
        do {
            _ = try ConfigFile.parse(text, path: "f")
            Issue.record("accepted")
        } catch {
            #expect(
                error.description.contains(location) && error.description.contains("nested deeper than 64"),
                "\(error.description)")
        }
    }

    @Test func aliasesOfAliasesCannotDescribeAnExponentialTree() throws {
        // 2^40 nodes in 40 lines; hashing the key to check for duplicates would walk them all.
        let text =
            (["a0: &a0 [x, x]"] + (1..<40).map { "a\($0): &a\($0) [*a\($0 - 1), *a\($0 - 1)]" }).joined(separator: "\n")
            + "\n? *a39\n: 1\n"
        do {
            _ = try ConfigFile.parse(text, path: "f")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("too large"), "\(error.description)")
        }
    }

    @Test func ordinaryAliasesAndNestingStillWork() throws {
        let text =
            "users:\n  a: { permissions: &rw [read, write], keys: &k ['app:*'] }\n  b: { permissions: *rw, keys: *k }\n"
        let users = try #require(try ConfigFile.parse(text, path: "f").tenants.users)
        #expect(users.map(\.name) == ["a", "b"] && users[0].grant == users[1].grant)
        let nested =
            "server:\n  extended: " + String(repeating: "[", count: 62) + "x" + String(repeating: "]", count: 62) + "\n"
        // 64 deep: the walker's error, not the bound.
        #expect(throws: ConfigurationError.self) { try ConfigFile.parse(nested, path: "f") }
        do {
            _ = try ConfigFile.parse(nested, path: "f")
        } catch {
            #expect(!error.description.contains("nested deeper"), "\(error.description)")
        }
    }
}
