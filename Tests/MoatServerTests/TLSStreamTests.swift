import Foundation
import MoatConfig
import MoatTLS
import NIOCore
import Testing

@testable import MoatServer

/// The TLS transform with no socket: a client and a server stream hand records to each other in memory.
/// Certificates are made by the openssl command for these tests only.
@Suite struct TLSStreamTests {
    /// A CA, a server certificate, client certificates (one with two CNs) and a stranger CA's client.
    final class PKI: Sendable {
        let directory: String

        init() throws {
            directory = NSTemporaryDirectory() + "moat-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try make(ca: "ca")
            try make(ca: "other")
            try make(certificate: "server", subject: "/CN=localhost", by: "ca")
            try make(certificate: "client", subject: "/CN=client", by: "ca")
            try make(certificate: "twice", subject: "/CN=reader/CN=admin", by: "ca")
            try make(certificate: "stranger", subject: "/CN=client", by: "other")
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func path(_ name: String) -> String { directory + "/" + name }

        private func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TLSSetupError(description: "openssl \(arguments.first ?? "") failed")
            }
        }

        private func make(ca name: String) throws {
            try openssl([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                name + ".key",
                "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + name,
            ])
        }

        private func make(certificate name: String, subject: String, by ca: String) throws {
            try openssl([
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", subject, "-multivalue-rdn",
            ])
            try openssl([
                "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2",
            ])
        }
    }

    static let pki: PKI? = try? PKI()

    func server(verifyMode: Int = 0) throws -> TLSContext {
        let pki = try #require(Self.pki)
        return try TLSContext.server(
            chain: pki.path("server.pem"), key: pki.path("server.key"), ca: verifyMode > 0 ? pki.path("ca.pem") : nil,
            verifyMode: verifyMode, minimumTLS13: false)
    }

    func client(_ name: String? = nil) throws -> TLSStream {
        let pki = try #require(Self.pki)
        let context = try TLSContext.client(
            ca: pki.path("ca.pem"), certificate: name.map { pki.path($0 + ".pem") },
            key: name.map { pki.path($0 + ".key") })
        return try #require(TLSStream(context: context, server: false, host: "localhost"))
    }

    /// Moves `from`'s waiting records into `to`; how many bytes moved.
    @discardableResult
    func pass(_ from: TLSStream, _ to: TLSStream) -> Int {
        var records = ByteBuffer()
        from.takeCiphertext(into: &records)
        records.withUnsafeReadableBytes { #expect(to.receive($0)) }
        return records.readableBytes
    }

    /// Runs the handshake to its end (or a failure), in at most a few flights; the last statuses.
    func handshake(_ client: TLSStream, _ server: TLSStream) -> (client: TLSStream.Status, server: TLSStream.Status) {
        var input = ByteBuffer()
        var statuses: (TLSStream.Status, TLSStream.Status) = (.needInput, .needInput)
        for _ in 0..<6 {
            statuses.0 = client.decrypt(into: &input, limit: .max).status
            pass(client, server)
            statuses.1 = server.decrypt(into: &input, limit: .max).status
            pass(server, client)
            if case .failed = statuses.1 { break }
            if client.handshakeComplete, server.handshakeComplete { break }
        }
        statuses.0 = client.decrypt(into: &input, limit: .max).status
        return statuses
    }

    @Test func requestsAndRepliesRoundTrip() throws {
        let client = try client()
        let server = try #require(TLSStream(context: try server(), server: true))
        _ = handshake(client, server)
        #expect(client.handshakeComplete && server.handshakeComplete)
        #expect(server.version == "TLSv1.3")
        #expect(client.encrypt(ByteBuffer(string: "get k\r\n")))
        pass(client, server)
        var requests = ByteBuffer()
        let decrypted = server.decrypt(into: &requests, limit: .max)
        #expect(decrypted.status == .needInput && decrypted.appended == 7)
        #expect(String(buffer: requests) == "get k\r\n")
        // A reply larger than one record comes out whole, in several records.
        let reply = ByteBuffer(repeating: UInt8(ascii: "v"), count: 100_000)
        #expect(server.encrypt(reply))
        #expect(pass(server, client) > 100_000)
        var replies = ByteBuffer()
        #expect(client.decrypt(into: &replies, limit: .max).appended == 100_000)
        #expect(replies == reply)
        // Idle: the record buffers can be given back, and are taken again by the next record.
        #expect(server.releaseBuffers())
        #expect(client.encrypt(ByteBuffer(string: "get k\r\n")))
        pass(client, server)
        requests.clear()
        #expect(server.decrypt(into: &requests, limit: .max).appended == 7)
    }

    @Test func decryptStopsAtItsLimit() throws {
        let client = try client()
        let server = try #require(TLSStream(context: try server(), server: true))
        _ = handshake(client, server)
        #expect(client.encrypt(ByteBuffer(repeating: 1, count: 40_000)))
        pass(client, server)
        var input = ByteBuffer()
        #expect(server.decrypt(into: &input, limit: 10_000).appended == 10_000)
        #expect(server.decrypt(into: &input, limit: .max).appended == 30_000)
    }

    @Test func plaintextOnATLSPortFailsWithAnAlert() throws {
        let server = try #require(TLSStream(context: try server(), server: true))
        let request = Array("version\r\n".utf8)
        #expect(request.withUnsafeBytes { server.receive($0) })
        var input = ByteBuffer()
        let result = server.decrypt(into: &input, limit: .max)
        guard case .failed(let why) = result.status else {
            Issue.record("expected a failure, got \(result.status)")
            return
        }
        #expect(!why.isEmpty)
        #expect(result.appended == 0 && input.readableBytes == 0)
        var alert = ByteBuffer()
        server.takeCiphertext(into: &alert)
        #expect(Array(alert.readableBytesView) == [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46])  // fatal protocol_version
        #expect(!server.handshakeComplete)
    }

    @Test func aRequiredClientCertificateIsVerifiedAndItsNameRead() throws {
        let context = try server(verifyMode: 2)
        let good = try client("client")
        let accepted = try #require(TLSStream(context: context, server: true))
        _ = handshake(good, accepted)
        #expect(accepted.handshakeComplete)
        let names = try #require(accepted.peerCommonNames())
        #expect(names.count == 1 && names.first == "client")

        let twice = try client("twice")
        let multi = try #require(TLSStream(context: context, server: true))
        _ = handshake(twice, multi)
        #expect(multi.peerCommonNames()?.count == 2)

        for name in ["stranger", nil] as [String?] {
            let refused = try #require(TLSStream(context: context, server: true))
            let statuses = handshake(try client(name), refused)
            guard case .failed = statuses.server else {
                Issue.record("\(name ?? "no certificate"): accepted")
                continue
            }
            #expect(refused.peerCommonNames() == nil)
        }
    }

    @Test func withoutVerificationNoNameIsRead() throws {
        let server = try #require(TLSStream(context: try server(verifyMode: 0), server: true))
        _ = handshake(try client("client"), server)
        #expect(server.handshakeComplete)
        #expect(server.peerCommonNames() == nil)  // not asked for, so nothing logs in by it
    }

    @Test func closeNotifyEndsThePeersStream() throws {
        let client = try client()
        let server = try #require(TLSStream(context: try server(), server: true))
        _ = handshake(client, server)
        #expect(server.encrypt(ByteBuffer(string: "END\r\n")))
        server.closeNotify()
        pass(server, client)
        var replies = ByteBuffer()
        let result = client.decrypt(into: &replies, limit: .max)
        #expect(result.status == .closed)
        #expect(String(buffer: replies) == "END\r\n")  // the reply before it arrives whole
    }

    @Test func brokenFilesAreRefusedWithTheirReason() throws {
        let pki = try #require(Self.pki)
        var options = TLSOptions(chainCertificate: pki.path("missing.pem"))
        #expect(throws: TLSSetupError.self) { try TLSCertificates(options: options) }
        options = TLSOptions(chainCertificate: pki.path("server.pem"))
        options.privateKey = pki.path("client.key")  // not this certificate's key
        do {
            _ = try TLSCertificates(options: options)
            Issue.record("a mismatched key was accepted")
        } catch {
            #expect("\(error)".contains("cannot load TLS certificates"))
        }
    }

    @Test func theHandshakeDeadlineRunsOnlyUntilTheHandshakeEnds() {
        var deadlines = ConnectionDeadlines(limits: .init(idle: 60, handshake: 5), now: 0, tls: true)
        deadlines.received(at: 4_000)  // bytes arriving do not extend it
        #expect(deadlines.expired(at: 4_999, isAuthenticated: true) == nil)
        #expect(deadlines.expired(at: 5_000, isAuthenticated: true) == .tlsHandshakeTimeout)
        deadlines.handshakeCompleted()
        #expect(deadlines.expired(at: 30_000, isAuthenticated: true) == nil)
        let plain = ConnectionDeadlines(limits: .init(handshake: 5), now: 0)
        #expect(plain.expired(at: 60_000, isAuthenticated: true) == nil)  // no handshake on a plaintext connection
    }
}
