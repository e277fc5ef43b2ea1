import Testing

@testable import MoatAccess

/// Issue 17 finding 9: an unknown name must look like a known one, across restarts too.
@Suite struct UnknownUserTests {
    func serverFirst(_ user: String, _ store: CredentialStore, _ mechanism: SASLMechanism = .scramSHA256) -> [String:
        String]
    {
        var server = SASLExchange(mechanism: mechanism, store: store, serverSecret: store.unknownUserSaltKey)
        guard case .challenge(let reply) = server.start(bytes("n,,n=\(user),r=abc")) else { return [:] }
        var fields: [String: String] = [:]
        for item in text(reply).split(separator: ",") { fields[String(item.prefix(1))] = String(item.dropFirst(2)) }
        return fields
    }

    @Test func unknownUsersGetTheCommonestIterationCount() throws {
        var users = try store([("a", "pw"), ("b", "pw")], iterations: 4096)
        try users.add(user: "c", password: bytes("pw"), iterations: 8192)
        #expect(serverFirst("nobody", users)["i"] == "4096")
        #expect(serverFirst("nobody", users, .scramSHA1)["i"] == "4096")
        #expect(users.usersWithUncommonIterations == ["c"])
        try users.add(user: "d", password: bytes("pw"), iterations: 8192)
        #expect(serverFirst("nobody", users)["i"] == "8192")  // a tie: the larger
        users.remove(user: "d")
        users.remove(user: "c")
        #expect(serverFirst("nobody", users)["i"] == "4096")
        #expect(users.usersWithUncommonIterations.isEmpty)
        #expect(serverFirst("nobody", CredentialStore())["i"] == String(CredentialStore.defaultIterations))
    }

    @Test func fakeSaltsSurviveSavingAndLoading() throws {
        let users = try store([("alice", "pw")])
        let before = serverFirst("mallory", users)["s"]
        let reloaded = try CredentialStore.parse(users.serialized())
        #expect(reloaded.saltKey == users.saltKey)
        #expect(serverFirst("mallory", reloaded)["s"] == before)
        #expect(serverFirst("alice", reloaded)["s"] == serverFirst("alice", users)["s"])
    }

    @Test func aFileWithoutASaltKeyKeepsItsFakeSaltsThroughEdits() throws {
        var users = try store([("alice", "pw"), ("bob", "pw")])
        users.saltKey = nil
        let text = users.serialized()
        #expect(!text.contains("unknown-user-salt-key"))
        var loaded = try CredentialStore.parse(text)
        let again = try CredentialStore.parse(text)
        let salt = serverFirst("mallory", loaded)["s"]
        #expect(serverFirst("mallory", again)["s"] == salt)  // as stable as the file
        try loaded.add(user: "carol", password: bytes("pw"), iterations: testIterations)
        loaded.remove(user: "bob")
        #expect(serverFirst("mallory", loaded)["s"] == salt)  // an edit does not change them
        #expect(serverFirst("mallory", try CredentialStore.parse(loaded.serialized()))["s"] == salt)
    }

    @Test func newStoresGetDifferentKeys() throws {
        let one = try store([("alice", "pw")])
        let two = try store([("alice", "pw")])
        #expect(one.saltKey != nil && one.saltKey != two.saltKey)
    }

    @Test func plaintextImportsKeepTheirKeyOverAReload() throws {
        let first = try CredentialStore.fromMemcachedPlaintext("alice:pw\n")
        let reloaded = try CredentialStore.fromMemcachedPlaintext("alice:pw\nbob:pw\n", reusing: first)
        #expect(first.saltKey != nil && reloaded.saltKey == first.saltKey)
        #expect(try CredentialStore.fromMemcachedPlaintext("alice:pw\n").saltKey != first.saltKey)
    }

    @Test func saltKeyLinesAreChecked() throws {
        let header = CredentialStore.fileHeader + "\n"
        #expect(throws: CredentialError.self) { try CredentialStore.parse(header + "# unknown-user-salt-key: AAAA\n") }
        let key = "# unknown-user-salt-key: " + base64([UInt8](repeating: 1, count: 32)) + "\n"
        #expect(try CredentialStore.parse(header + key).saltKey == [UInt8](repeating: 1, count: 32))
        #expect(throws: CredentialError.self) { try CredentialStore.parse(header + key + key) }
    }

    @Test func iterationCountsAreBounded() throws {
        var users = CredentialStore()
        #expect(throws: CredentialError.self) {
            try users.add(user: "slow", password: bytes("pw"), iterations: CredentialStore.maximumIterations + 1)
        }
        #expect(CredentialStore.maximumIterations <= 262_144)
    }
}
