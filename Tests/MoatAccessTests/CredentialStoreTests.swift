import Foundation
import MoatAccess
import Testing

@Suite struct CredentialStoreTests {
    @Test func addReplaceRemove() throws {
        var users = CredentialStore()
        #expect(users.isEmpty)
        try users.add(user: "zed", password: bytes("one"), iterations: testIterations)
        try users.add(user: "amy", password: bytes("two"), iterations: testIterations)
        #expect(users.userNames == ["amy", "zed"])
        let before = users.credential(for: "zed")
        try users.add(user: "zed", password: bytes("three"), iterations: testIterations)
        #expect(users.credential(for: "zed") != before)
        #expect(users.verifyPassword(user: "zed", password: bytes("three")))
        #expect(!users.verifyPassword(user: "zed", password: bytes("one")))
        let removed = users.remove(user: "zed")
        let removedAgain = users.remove(user: "zed")
        #expect(removed && !removedAgain)
        #expect(users.userNames == ["amy"])
        #expect(users.credential(for: "zed") == nil)
    }

    @Test func keysHaveIndependentRandomSalts() throws {
        let users = try store([("a", "same"), ("b", "same")])
        let a = users.credential(for: "a")!
        let b = users.credential(for: "b")!
        #expect(a.sha256.salt.count == 16 && a.sha1.salt.count == 16)
        #expect(a.sha256.salt != a.sha1.salt)
        #expect(a.sha256.salt != b.sha256.salt)
        #expect(a.sha256.storedKey != b.sha256.storedKey)
        #expect(a.sha256.storedKey.count == 32 && a.sha256.serverKey.count == 32)
        #expect(a.sha1.storedKey.count == 20 && a.sha1.serverKey.count == 20)
        #expect(a.sha256.iterations == testIterations)
    }

    @Test func defaultIterations() {
        #expect(CredentialStore.defaultIterations >= 4096)
    }

    @Test(arguments: [
        "", "a b", "a:b", "a\tb", "a\nb", "a\u{1}b", "a\u{7F}b", "a\u{85}b", "a\u{A0}b", "#a",
        String(repeating: "x", count: 251),
    ])
    func invalidNames(_ name: String) {
        var users = CredentialStore()
        #expect(throws: CredentialError.self) {
            try users.add(user: name, password: bytes("pw"), iterations: testIterations)
        }
    }

    @Test(arguments: [
        "a", "a#b", "alice@example.com", "ünïcödé", "a=b,c", String(repeating: "x", count: 250),
        String(repeating: "é", count: 125),
    ])
    func validNames(_ name: String) throws {
        var users = CredentialStore()
        try users.add(user: name, password: bytes("pw"), iterations: testIterations)
        #expect(users.userNames == [name])
    }

    @Test func passwordAndIterationBounds() throws {
        var users = CredentialStore()
        #expect(throws: CredentialError.self) { try users.add(user: "a", password: [], iterations: testIterations) }
        #expect(throws: CredentialError.self) {
            try users.add(user: "a", password: Array(repeating: 1, count: 1025), iterations: testIterations)
        }
        #expect(throws: CredentialError.self) { try users.add(user: "a", password: bytes("pw"), iterations: 4095) }
        try users.add(user: "a", password: Array(repeating: 1, count: 1024), iterations: testIterations)
        #expect(users.verifyPassword(user: "a", password: Array(repeating: 1, count: 1024)))
        #expect(!users.verifyPassword(user: "a", password: Array(repeating: 1, count: 1025)))
        #expect(!users.verifyPassword(user: "a", password: []))
    }

    @Test func addingDerivedCredentialsIsChecked() {
        var users = CredentialStore()
        let good = SCRAMKeys.sha256(password: bytes("pw"), salt: Array(repeating: 1, count: 16), iterations: 4096)
        let sha1 = SCRAMKeys.sha1(password: bytes("pw"), salt: Array(repeating: 2, count: 16), iterations: 4096)
        #expect(throws: CredentialError.self) { try users.add(UserCredential(name: "a", sha256: sha1, sha1: sha1)) }
        #expect(throws: CredentialError.self) { try users.add(UserCredential(name: "a b", sha256: good, sha1: sha1)) }
        #expect(throws: Never.self) { try users.add(UserCredential(name: "a", sha256: good, sha1: sha1)) }
        #expect(users.verifyPassword(user: "a", password: bytes("pw")))
    }

    /// An unknown user costs a derivation too, so response time does not reveal which names exist.
    @Test func unknownUserCostsTheSameWork() throws {
        let users = try store([("alice", "s3cret")], iterations: CredentialStore.defaultIterations)
        func time(_ user: String) -> Double {
            (0..<5).map { _ in
                let start = ContinuousClock.now
                _ = users.verifyPassword(user: user, password: bytes("guess"))
                let elapsed = ContinuousClock.now - start
                return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            }.sorted()[2]
        }
        let known = time("alice")
        let unknown = time("nobody")
        #expect(!users.verifyPassword(user: "nobody", password: bytes("s3cret")))
        #expect(unknown > known / 3 && unknown < known * 3, "known \(known) s, unknown \(unknown) s")
    }

    // MARK: File format

    @Test func serializeParseRoundTrip() throws {
        let users = try store([("bob", "pw1"), ("alice", "pw:2"), ("ü=,x", "pw3")])
        let text = users.serialized()
        #expect(text.hasPrefix("# moat credentials v1\n"))
        #expect(!text.contains("pw1") && !text.contains("pw:2"))
        var lines = text.split(separator: "\n")
        #expect(lines.count == 5)
        #expect(lines[1].hasPrefix("# unknown-user-salt-key: "))  // after the header, before the users
        lines.remove(at: 1)
        #expect(lines[1].hasPrefix("alice:scram-sha-256:4096:"))
        #expect(lines[1].split(separator: ":", omittingEmptySubsequences: false).count == 11)
        #expect(lines[1].split(separator: ":")[6] == "scram-sha-1")
        let parsed = try CredentialStore.parse(text)
        #expect(parsed.userNames == users.userNames)
        for name in users.userNames {
            #expect(parsed.credential(for: name) == users.credential(for: name))
        }
        #expect(parsed.serialized() == text)
        #expect(parsed.verifyPassword(user: "alice", password: bytes("pw:2")))
        #expect(try CredentialStore.parse(CredentialStore().serialized()).isEmpty)
    }

    @Test func parseSkipsCommentsBlankLinesAndCarriageReturns() throws {
        let line = try store([("alice", "pw")]).serialized().split(separator: "\n")[2]
        let text = "# moat credentials v1\r\n\r\n# a comment\r\n   \r\n  \(line)  \r\n\t# indented comment\n"
        let parsed = try CredentialStore.parse(text)
        #expect(parsed.userNames == ["alice"])
        #expect(parsed.verifyPassword(user: "alice", password: bytes("pw")))
    }

    @Test func parseErrorsNameTheLine() throws {
        let line = String(try store([("alice", "pw")]).serialized().split(separator: "\n")[2])
        var fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func with(_ index: Int, _ value: String) -> String {
            var copy = fields
            copy[index] = value
            return copy.joined(separator: ":")
        }
        let header = "# moat credentials v1\n"
        let cases: [(String, String)] = [
            ("", "line 1"),
            ("alice:pw\n", "line 1: expected the header"),
            ("# moat credentials v2\n", "line 1: unsupported credential file version"),
            (header + "\n" + line + ":extra\n", "line 3: expected 11 colon-separated fields"),
            (header + "alice:pw\n", "line 2: expected 11"),
            (header + with(1, "scram-sha-512") + "\n", "line 2: field 2 is 'scram-sha-512', expected 'scram-sha-256'"),
            (header + with(6, "plain") + "\n", "line 2: field 7 is 'plain', expected 'scram-sha-1'"),
            (header + with(2, "lots") + "\n", "line 2: scram-sha-256 iterations 'lots'"),
            (header + with(7, "100") + "\n", "line 2: scram-sha-1 iterations '100'"),
            (header + with(2, "99999999999") + "\n", "line 2: scram-sha-256 iterations"),
            (header + with(3, "not base64!") + "\n", "line 2: scram-sha-256 salt is not valid base64"),
            (header + with(4, "AAAA") + "\n", "line 2: SCRAM-SHA-256 stored and server keys must be 32 bytes"),
            (header + with(10, "AAAA") + "\n", "line 2: SCRAM-SHA-1 stored and server keys must be 20 bytes"),
            (header + with(0, "a b") + "\n", "line 2: user name"),
            (header + line + "\n# x\n" + line + "\n", "line 4: user 'alice' is already defined on line 2"),
        ]
        for (text, expected) in cases {
            do {
                _ = try CredentialStore.parse(text)
                Issue.record("parsed: \(text)")
            } catch let error as CredentialError {
                #expect(error.description.hasPrefix(expected), "\(error.description)")
            }
        }
        fields[0] = "bob"
        #expect(
            try CredentialStore.parse(header + line + "\n" + fields.joined(separator: ":")).userNames == [
                "alice", "bob",
            ])
    }

    // MARK: Files

    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "moat-access-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue
    }

    @Test func saveWritesMode0600AndLoadReadsIt() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/credentials"
        let users = try store([("alice", "pw"), ("bob", "pw2")])
        try users.save(path: path)
        #expect(try mode(path) == 0o600)
        let loaded = try CredentialStore.load(path: path)
        #expect(loaded.serialized() == users.serialized())
        #expect(loaded.verifyPassword(user: "bob", password: bytes("pw2")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["credentials"])
    }

    @Test func loadRefusesFilesOthersCanAccess() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/credentials"
        try store([("alice", "pw")]).save(path: path)
        for bad in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601] {
            chmod(path, mode_t(bad))
            do {
                _ = try CredentialStore.load(path: path)
                Issue.record("loaded with mode \(String(bad, radix: 8))")
            } catch let error as CredentialError {
                #expect(error.description.contains(path))
                #expect(error.description.contains("chmod 600 \(path)"))
                #expect(error.description.contains("0" + String(bad, radix: 8)))
            }
        }
        for good in [0o600, 0o400] {
            chmod(path, mode_t(good))
            #expect(try CredentialStore.load(path: path).userNames == ["alice"])
        }
    }

    @Test func loadRefusesOddFiles() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o700)
        func refusal(_ path: String) -> String {
            do {
                _ = try CredentialStore.load(path: path)
                return "loaded"
            } catch {
                return (error as? CredentialError)?.description ?? "\(error)"
            }
        }
        #expect(refusal(directory).contains("not a regular file"))
        #expect(refusal(directory + "/missing").contains("cannot open"))

        let fifo = directory + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(refusal(fifo).contains("not a regular file"))  // and does not hang waiting for a writer

        let big = directory + "/big"
        #expect(FileManager.default.createFile(atPath: big, contents: nil, attributes: [.posixPermissions: 0o600]))
        #expect(truncate(big, off_t(CredentialStore.maximumFileBytes + 1)) == 0)
        #expect(refusal(big).contains("more than"))

        let notText = directory + "/binary"
        #expect(
            FileManager.default.createFile(
                atPath: notText, contents: Data([0xFF, 0xFE, 0x00]), attributes: [.posixPermissions: 0o600]))
        #expect(refusal(notText).contains("not valid UTF-8"))

        let garbage = directory + "/garbage"
        #expect(
            FileManager.default.createFile(
                atPath: garbage, contents: Data("# moat credentials v1\nalice:pw\n".utf8),
                attributes: [.posixPermissions: 0o600]))
        #expect(refusal(garbage).hasPrefix("\(garbage): line 2: "))
    }

    /// save replaces the file by rename: a reader holding the old file keeps reading the old
    /// contents, the path then names a new inode with mode 0600 whatever the old one had.
    @Test func saveReplacesAtomically() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/credentials"
        try store([("old", "pw")]).save(path: path)
        chmod(path, 0o644)
        let oldInode = (try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as! NSNumber)
            .uint64Value
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? reader.close() }

        let previousMask = umask(0o022)
        defer { umask(previousMask) }
        try store([("new", "pw")]).save(path: path)

        #expect(try mode(path) == 0o600)
        let newInode = (try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as! NSNumber)
            .uint64Value
        #expect(newInode != oldInode)
        #expect(String(decoding: reader.readDataToEndOfFile(), as: UTF8.self).contains("\nold:"))
        #expect(try CredentialStore.load(path: path).userNames == ["new"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["credentials"])
    }

    @Test func saveFailsCleanlyInAMissingDirectory() throws {
        #expect(throws: CredentialError.self) { try CredentialStore().save(path: "/nonexistent-moat-dir/credentials") }
    }

    // MARK: memcached's plaintext format

    @Test func memcachedPlaintextImport() throws {
        var text = ""
        for index in 1...12 { text += "user\(index):pass:\(index):word\n" }
        text += "\n\nlast:x\r\n"
        let users = try CredentialStore.fromMemcachedPlaintext(text)
        #expect(users.userNames.count == 13)  // memcached would have kept 8
        for index in 1...12 {
            #expect(users.verifyPassword(user: "user\(index)", password: bytes("pass:\(index):word")))
        }
        #expect(users.verifyPassword(user: "last", password: bytes("x")))
        #expect(users.credential(for: "user1")?.sha256.iterations == 4096)
        #expect(users.credential(for: "user1")?.sha1.iterations == 4096)
        var client = SCRAMTestClient(.scramSHA1, user: "user3", password: "pass:3:word")
        #expect(runSCRAM(&client, store: users) == .success(user: "user3", data: []))
    }

    @Test func memcachedPlaintextErrorsNameTheLine() {
        let cases: [(String, String)] = [
            ("alice:pw\n\nbob\n", "line 3: expected 'user:password'"),
            ("alice:pw\nalice:other\n", "line 2: user 'alice' is already defined on line 1"),
            ("alice:\n", "line 1: password must be"),
            (":pw\n", "line 1: user name must be"),
            ("al ice:pw\n", "line 1: user name"),
        ]
        for (text, expected) in cases {
            do {
                _ = try CredentialStore.fromMemcachedPlaintext(text)
                Issue.record("imported: \(text)")
            } catch let error as CredentialError {
                #expect(error.description.hasPrefix(expected), "\(error.description)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }
}
