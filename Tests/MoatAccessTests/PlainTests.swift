import MoatAccess
import Testing

@Suite struct PlainTests {
    static let users: CredentialStore = try! store([("alice", "s3cret"), ("bob", "pa:ss\u{1}word")])

    func plain(_ message: [UInt8]) -> SASLStep {
        var exchange = SASLExchange(mechanism: .plain, store: Self.users, serverSecret: [1, 2, 3])
        return exchange.start(message)
    }

    @Test func validCredentials() {
        #expect(plain(bytes("\0alice\0s3cret")) == .success(user: "alice", data: []))
        #expect(plain(bytes("alice\0alice\0s3cret")) == .success(user: "alice", data: []))
        #expect(plain(bytes("\0bob\0pa:ss\u{1}word")) == .success(user: "bob", data: []))
    }

    @Test func wrongPasswordUnknownUserAndForeignAuthzid() {
        #expect(plain(bytes("\0alice\0S3cret")) == .failure(.badCredentials))
        #expect(plain(bytes("\0alice\0s3cret ")) == .failure(.badCredentials))
        #expect(plain(bytes("\0mallory\0s3cret")) == .failure(.badCredentials))
        #expect(plain(bytes("\0Alice\0s3cret")) == .failure(.badCredentials))
        #expect(plain(bytes("bob\0alice\0s3cret")) == .failure(.badCredentials))  // acting as someone else
    }

    @Test(arguments: [
        "", "alice", "alice\0s3cret", "\0\0s3cret", "\0alice\0", "\0\0", "\0alice\0s3\0cret", "\0alice\0s3cret\0",
    ])
    func malformed(_ message: String) {
        #expect(plain(bytes(message)) == .failure(.malformed))
    }

    @Test func sizeBounds() {
        #expect(plain(bytes("\0alice\0") + [UInt8](repeating: 0x61, count: 1025)) == .failure(.malformed))
        #expect(plain(bytes("\0alice\0") + [UInt8](repeating: 0x61, count: 1024)) == .failure(.badCredentials))
        #expect(plain(bytes("\0" + String(repeating: "u", count: 251) + "\0pw")) == .failure(.malformed))
        #expect(plain([UInt8](repeating: 0x61, count: 1 << 20)) == .failure(.malformed))
        #expect(plain(bytes("\0") + [0xFF, 0xFE] + bytes("\0pw")) == .failure(.malformed))  // not UTF-8
    }

    @Test func onlyOneMessage() {
        var exchange = SASLExchange(mechanism: .plain, store: Self.users, serverSecret: [1])
        #expect(exchange.step(bytes("\0alice\0s3cret")) == .failure(.outOfSequence))

        exchange = SASLExchange(mechanism: .plain, store: Self.users, serverSecret: [1])
        #expect(exchange.start(bytes("\0alice\0s3cret")) == .success(user: "alice", data: []))
        #expect(exchange.step(bytes("\0alice\0s3cret")) == .failure(.outOfSequence))
        #expect(exchange.start(bytes("\0alice\0s3cret")) == .failure(.outOfSequence))

        exchange = SASLExchange(mechanism: .plain, store: Self.users, serverSecret: [1])
        #expect(exchange.start(bytes("\0alice\0nope")) == .failure(.badCredentials))
        #expect(exchange.step(bytes("\0alice\0s3cret")) == .failure(.outOfSequence))
    }

    @Test func mechanismNames() {
        #expect(SASLMechanism.allCases.map(\.rawValue) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        #expect(SASLMechanism(rawValue: "CRAM-MD5") == nil)
    }
}
