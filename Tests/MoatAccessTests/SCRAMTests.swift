import MoatAccess
import Testing

@Suite struct SCRAMTests {
    /// The credential of RFC 5802 §5 / RFC 7677 §3: user "user", password "pencil", 4096 rounds.
    static func rfcStore() throws -> CredentialStore {
        var store = CredentialStore()
        try store.add(
            UserCredential(
                name: "user",
                sha256: .sha256(
                    password: bytes("pencil"), salt: unbase64("W22ZaJ0SNY7soEsUEjb6gQ==")!, iterations: 4096),
                sha1: .sha1(password: bytes("pencil"), salt: unbase64("QSXCR+Q6sek8bf92")!, iterations: 4096)))
        return store
    }

    static let secret = [UInt8](repeating: 42, count: 32)

    func exchange(_ mechanism: SASLMechanism, _ store: CredentialStore, nonce: String) -> SASLExchange {
        SASLExchange(mechanism: mechanism, store: store, serverSecret: Self.secret, nonceGenerator: { nonce })
    }

    @Test func rfc7677TestVector() throws {
        var server = exchange(.scramSHA256, try Self.rfcStore(), nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
        #expect(
            server.start(bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
                == .challenge(
                    bytes(
                        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")))
        #expect(
            server.step(
                bytes(
                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
                ))
                == .challenge(bytes("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")))
        #expect(server.step([]) == .success(user: "user", data: []))
        #expect(server.step([]) == .failure(.outOfSequence))
    }

    @Test func rfc5802TestVector() throws {
        var server = exchange(.scramSHA1, try Self.rfcStore(), nonce: "3rfcNHYJY1ZVvWVs7j")
        #expect(
            server.start(bytes("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"))
                == .challenge(
                    bytes(
                        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")))
        #expect(
            server.step(bytes("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="))
                == .challenge(bytes("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")))
        #expect(server.step([]) == .success(user: "user", data: []))
    }

    @Test(arguments: [SASLMechanism.scramSHA256, .scramSHA1])
    func roundTripWithIndependentClient(_ mechanism: SASLMechanism) throws {
        // ',' and '=' in the name exercise the =2C / =3D escapes.
        let users = try store([("alice", "s3cret"), ("we,ird=name", "p,w=d"), ("ünï", "pässwörd")])
        for (name, password) in [("alice", "s3cret"), ("we,ird=name", "p,w=d"), ("ünï", "pässwörd")] {
            var client = SCRAMTestClient(mechanism, user: name, password: password)
            #expect(runSCRAM(&client, store: users) == .success(user: name, data: []))
        }
    }

    @Test(arguments: [SASLMechanism.scramSHA256, .scramSHA1])
    func wrongPasswordFailsAtProof(_ mechanism: SASLMechanism) throws {
        let users = try store([("alice", "s3cret")])
        var server = SASLExchange(mechanism: mechanism, store: users, serverSecret: Self.secret)
        var client = SCRAMTestClient(mechanism, user: "alice", password: "guess")
        guard case .challenge(let serverFirst) = server.start(client.clientFirst()) else {
            Issue.record()
            return
        }
        #expect(server.step(client.clientFinal(serverFirst: serverFirst)!) == .failure(.badCredentials))
        #expect(server.step([]) == .failure(.outOfSequence))
    }

    @Test func yFlagAndMatchingAuthzidAreAccepted() throws {
        let users = try store([("alice", "s3cret")])
        var client = SCRAMTestClient(.scramSHA256, user: "alice", password: "s3cret")
        client.gs2Header = "y,,"
        #expect(runSCRAM(&client, store: users) == .success(user: "alice", data: []))
        client = SCRAMTestClient(.scramSHA256, user: "alice", password: "s3cret")
        client.gs2Header = "n,a=alice,"
        #expect(runSCRAM(&client, store: users) == .success(user: "alice", data: []))
    }

    @Test func extensionsBeforeProofAreIgnored() throws {
        let users = try store([("alice", "s3cret")])
        var client = SCRAMTestClient(.scramSHA256, user: "alice", password: "s3cret")
        client.finalExtensions = ",x=whatever,y=1"
        #expect(runSCRAM(&client, store: users) == .success(user: "alice", data: []))
    }

    /// Server-first for an unknown name looks like one for a known name: same attributes, a
    /// 16-byte salt stable across attempts, the default iteration count. Then the proof fails.
    @Test(arguments: [SASLMechanism.scramSHA256, .scramSHA1])
    func unknownUserLooksLikeAKnownOne(_ mechanism: SASLMechanism) throws {
        let users = try store([("alice", "s3cret")], iterations: CredentialStore.defaultIterations)
        func serverFirst(_ user: String, secret: [UInt8] = Self.secret) -> [Substring] {
            var server = SASLExchange(mechanism: mechanism, store: users, serverSecret: secret)
            guard case .challenge(let reply) = server.start(bytes("n,,n=\(user),r=abc")) else { return [] }
            return text(reply).split(separator: ",")
        }
        let known = serverFirst("alice")
        let unknown = serverFirst("mallory")
        #expect(known.count == 3 && unknown.count == 3)
        #expect(known.map { $0.prefix(2) } == unknown.map { $0.prefix(2) })
        #expect(unknown[0].count == known[0].count)  // same nonce length
        #expect(unbase64(unknown[1].dropFirst(2))?.count == 16)
        #expect(unknown[2] == known[2])
        #expect(serverFirst("mallory")[1] == unknown[1])  // stable, as a stored salt would be
        #expect(serverFirst("mallory", secret: [1, 2, 3])[1] != unknown[1])
        #expect(serverFirst("eve")[1] != unknown[1])

        var client = SCRAMTestClient(mechanism, user: "mallory", password: "s3cret")
        #expect(runSCRAM(&client, store: users) == .failure(.badCredentials))
    }

    @Test func fakeSaltsDifferBetweenMechanisms() throws {
        let users = CredentialStore()
        func salt(_ mechanism: SASLMechanism) -> Substring? {
            var server = SASLExchange(mechanism: mechanism, store: users, serverSecret: Self.secret)
            guard case .challenge(let reply) = server.start(bytes("n,,n=bob,r=abc")) else { return nil }
            return text(reply).split(separator: ",")[1]
        }
        #expect(salt(.scramSHA256) != nil)
        #expect(salt(.scramSHA256) != salt(.scramSHA1))
    }

    @Test(arguments: [
        "",
        "n",
        "n,",
        "n,,",
        "x,,n=user,r=abc",
        "p=tls-server-end-point,,n=user,r=abc",  // channel binding: this server has none to offer
        "p,,n=user,r=abc",
        "n,,m=ext,n=user,r=abc",  // unknown mandatory extension
        "n,,n=user",  // no nonce
        "n,,r=abc,n=user",  // reordered
        "n,,n=user,r=",
        "n,,n=,r=abc",
        "n,,n=us=41er,r=abc",  // only =2C and =3D are escapes
        "n,,n=user=,r=abc",
        "n,,n=user=2,r=abc",
        "n,,n=user,r=ab\u{7F}c",
        "n,,n=user,r=ab c",
        "n,,n=user,r=abc,",  // empty extension
        "n,,n=user,r=abc,1=x",
        "n,,n=user,r=abc,x",
        "n,x=user,n=user,r=abc",
        "n,a=,n=user,r=abc",
        "N,,n=user,r=abc",
        " n,,n=user,r=abc",
    ])
    func malformedClientFirst(_ message: String) throws {
        var server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
        #expect(server.start(bytes(message)) == .failure(.malformed))
        #expect(server.step([]) == .failure(.outOfSequence))
    }

    @Test func invalidUTF8NameIsMalformed() throws {
        var server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
        #expect(server.start(bytes("n,,n=") + [0xC3, 0x28] + bytes(",r=abc")) == .failure(.malformed))
    }

    @Test func authzidForSomeoneElseIsRefused() throws {
        var server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
        #expect(server.start(bytes("n,a=admin,n=user,r=abc")) == .failure(.badCredentials))
    }

    @Test func hugeMessagesAreRefused() throws {
        let users = try Self.rfcStore()
        var server = SASLExchange(mechanism: .scramSHA256, store: users, serverSecret: Self.secret)
        let hugeNonce = String(repeating: "a", count: 5000)
        #expect(server.start(bytes("n,,n=user,r=\(hugeNonce)")) == .failure(.malformed))

        server = SASLExchange(mechanism: .scramSHA256, store: users, serverSecret: Self.secret)
        guard case .challenge = server.start(bytes("n,,n=user,r=abc")) else {
            Issue.record()
            return
        }
        #expect(server.step([UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)) == .failure(.malformed))
    }

    /// Client-final variations, each against a fresh exchange that got as far as server-first.
    @Test func badClientFinals() throws {
        let users = try store([("alice", "s3cret")])
        var client = SCRAMTestClient(.scramSHA256, user: "alice", password: "s3cret")
        let nonce = "SERVERNONCE0123456789abcdef"
        var server = exchange(.scramSHA256, users, nonce: nonce)
        guard case .challenge(let serverFirst) = server.start(client.clientFirst()) else {
            Issue.record()
            return
        }
        let good = text(client.clientFinal(serverFirst: serverFirst)!)
        let parts = good.split(separator: ",").map(String.init)  // c=, r=, p=
        let (c, r, p) = (parts[0], parts[1], parts[2])
        let proof = unbase64(p.dropFirst(2))!
        let flipped = base64([proof[0] ^ 1] + proof.dropFirst())

        let cases: [(String, SASLStep)] = [
            ("", .failure(.malformed)),
            ("\(c),\(r)", .failure(.malformed)),  // no proof
            ("\(r),\(c),\(p)", .failure(.malformed)),  // reordered
            ("\(c),\(p),\(r)", .failure(.malformed)),
            ("\(c),\(r),p=!!!!", .failure(.malformed)),  // bad base64
            ("\(c),\(r),p=\(p.dropFirst(2).dropLast(4))", .failure(.malformed)),  // truncated proof
            ("\(c),\(r),p=\(base64(proof + [0]))", .failure(.malformed)),  // wrong length
            ("c=biws=,\(r),\(p)", .failure(.malformed)),
            ("c=eSws,\(r),\(p)", .failure(.badCredentials)),  // "y,," instead of "n,,": downgrade
            ("c=cD10bHMtdW5pcXVlLCw=,\(r),\(p)", .failure(.badCredentials)),  // "p=tls-unique,,"
            ("\(c),\(r)X,\(p)", .failure(.badCredentials)),  // nonce not ours
            ("\(c),r=\(client.clientNonce),\(p)", .failure(.badCredentials)),
            ("\(c),\(r),p=\(flipped)", .failure(.badCredentials)),
            ("\(c),\(r),1=x,\(p)", .failure(.malformed)),
            (good + ",", .failure(.malformed)),
            (good, .challenge([])),  // placeholder: checked below
        ]
        for (message, expected) in cases where message != good {
            var fresh = exchange(.scramSHA256, users, nonce: nonce)
            _ = fresh.start(client.clientFirst())
            #expect(fresh.step(bytes(message)) == expected, "client-final \(message)")
            #expect(fresh.step([]) == .failure(.outOfSequence))
        }
        guard case .challenge(let serverFinal) = server.step(bytes(good)) else {
            Issue.record()
            return
        }
        #expect(client.verifies(serverFinal: serverFinal))
        #expect(server.step(bytes("extra")) == .failure(.malformed))  // the acknowledgement must be empty
        #expect(server.step([]) == .failure(.outOfSequence))
    }

    /// A client-final recorded from one exchange does not work in another: the server's nonce changed.
    @Test func replayedClientFinalIsRefused() throws {
        let users = try store([("alice", "s3cret")])
        var client = SCRAMTestClient(.scramSHA256, user: "alice", password: "s3cret", nonce: "fixedclientnonce")
        var first = SASLExchange(mechanism: .scramSHA256, store: users, serverSecret: Self.secret)
        guard case .challenge(let serverFirst) = first.start(client.clientFirst()) else {
            Issue.record()
            return
        }
        let recorded = client.clientFinal(serverFirst: serverFirst)!
        guard case .challenge = first.step(recorded) else {
            Issue.record()
            return
        }

        var second = SASLExchange(mechanism: .scramSHA256, store: users, serverSecret: Self.secret)
        guard case .challenge(let otherFirst) = second.start(client.clientFirst()) else {
            Issue.record()
            return
        }
        #expect(otherFirst != serverFirst)
        #expect(second.step(recorded) == .failure(.badCredentials))
    }

    @Test func serverNoncesAreFreshAndPrintable() throws {
        var seen: Set<String> = []
        for _ in 0..<20 {
            var server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
            guard case .challenge(let reply) = server.start(bytes("n,,n=user,r=abc")) else {
                Issue.record()
                return
            }
            let nonce = text(reply).split(separator: ",")[0].dropFirst(5)  // "r=abc"
            #expect(nonce.count >= 24)  // >= 18 random bytes in base64
            #expect(nonce.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ",") })
            seen.insert(String(nonce))
        }
        #expect(seen.count == 20)
    }

    @Test func callsOutOfSequence() throws {
        var server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
        #expect(server.step(bytes("c=biws,r=abc,p=AAAA")) == .failure(.outOfSequence))
        #expect(server.start(bytes("n,,n=user,r=abc")) == .failure(.outOfSequence))  // the exchange is over

        server = SASLExchange(mechanism: .scramSHA256, store: try Self.rfcStore(), serverSecret: Self.secret)
        guard case .challenge = server.start(bytes("n,,n=user,r=abc")) else {
            Issue.record()
            return
        }
        #expect(server.start(bytes("n,,n=user,r=abc")) == .failure(.outOfSequence))
        #expect(server.step(bytes("c=biws,r=abc,p=AAAA")) == .failure(.outOfSequence))
    }

    /// Every prefix and many random corruptions of valid messages: a failure or a challenge, never a crash.
    @Test(arguments: [SASLMechanism.scramSHA256, .scramSHA1])
    func truncatedAndCorruptedMessagesNeverCrash(_ mechanism: SASLMechanism) throws {
        let users = try store([("alice", "s3cret")])
        var client = SCRAMTestClient(mechanism, user: "alice", password: "s3cret")
        let first = client.clientFirst()
        var probe = exchange(mechanism, users, nonce: "N0NCE")
        guard case .challenge(let serverFirst) = probe.start(first) else {
            Issue.record()
            return
        }
        let final = client.clientFinal(serverFirst: serverFirst)!

        for length in 0..<first.count {
            var server = exchange(mechanism, users, nonce: "N0NCE")
            if case .success = server.start(Array(first.prefix(length))) { Issue.record("prefix accepted") }
        }
        var generator = SystemRandomNumberGenerator()
        for round in 0..<(final.count + 300) {
            var corrupted = final
            if round < final.count {
                corrupted = Array(final.prefix(round))
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    corrupted[Int.random(in: 0..<corrupted.count, using: &generator)] = UInt8.random(
                        in: 0...255, using: &generator)
                }
                if corrupted == final { continue }
            }
            var server = exchange(mechanism, users, nonce: "N0NCE")
            _ = server.start(first)
            let step = server.step(corrupted)
            if case .failure = step {} else { Issue.record("corrupted client-final accepted: \(text(corrupted))") }
        }
    }
}
