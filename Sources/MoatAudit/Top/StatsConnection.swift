import MoatTLS
import NIOCore

/// Why `moat top` could not read a server's figures.
package struct TopError: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// How `moat top` reaches its servers: plain or TLS, and the login, if any, to send first.
package struct StatsConnectionOptions: Sendable {
    package var tls: TLSContext?
    /// The name the server's certificate must carry (SNI too); nil: the host as given.
    package var serverName: String?
    package var user: String?
    package var password: String?
    package var timeout: Double

    package init(
        tls: TLSContext? = nil, serverName: String? = nil, user: String? = nil, password: String? = nil,
        timeout: Double = 5
    ) {
        self.tls = tls
        self.serverName = serverName
        self.user = user
        self.password = password
        self.timeout = timeout
    }
}

/// One text-protocol connection that asks `stats`: over TLS when configured (the same OpenSSL transform
/// as the server), after memcached's ASCII auth when a user is given. Every wait has a deadline and every
/// reply a size limit: a server that stalls or floods gives an error, not a hang.
package final class StatsConnection {
    static let replyLimit = 1 << 20
    private let socket: ProbeSocket
    private let stream: TLSStream?
    private var plaintext = ByteBuffer()

    package init(host: String, port: Int, options: StatsConnectionOptions) throws(TopError) {
        let endpoint = Endpoint(host: host, port: port)
        do {
            socket = try ProbeSocket(endpoint, timeout: options.timeout)
        } catch {
            throw TopError(
                error == .refused ? "connection refused" : error == .timedOut ? "no answer" : "cannot connect")
        }
        if let context = options.tls {
            guard let made = TLSStream(context: context, server: false, host: options.serverName ?? host) else {
                throw TopError("cannot start TLS")
            }
            stream = made
        } else {
            stream = nil
        }
        if let user = options.user {
            let credentials = Array("\(user) \(options.password ?? "")".utf8)
            let reply = try request(Array("set auth 0 0 \(credentials.count)\r\n".utf8) + credentials + [13, 10]) {
                $0.last == 10
            }
            guard Self.line(reply) == "STORED" else {
                throw TopError("login refused: \(Self.line(reply))")
            }
        }
    }

    deinit { socket.close() }

    /// `stats`: name to value, in the server's order.
    package func stats() throws(TopError) -> [(name: String, value: String)] {
        let reply = try request(Array("stats\r\n".utf8)) { bytes in
            bytes.count >= 5 && bytes.suffix(5).elementsEqual("END\r\n".utf8) || Self.isError(bytes)
        }
        if Self.isError(reply) { throw TopError(Self.line(reply)) }
        var figures: [(String, String)] = []
        for line in String(decoding: reply, as: UTF8.self).split(separator: "\r\n") where line.hasPrefix("STAT ") {
            let parts = line.split(separator: " ", maxSplits: 2)
            if parts.count == 3 { figures.append((String(parts[1]), String(parts[2]))) }
        }
        return figures
    }

    static func isError(_ bytes: [UInt8]) -> Bool {
        guard bytes.last == 10 else { return false }
        return EndpointProber.isError(line(bytes)) && !bytes.starts(with: Array("STAT ".utf8))
    }

    static func line(_ bytes: [UInt8]) -> String {
        EndpointProber.firstLine(bytes)
    }

    /// Sends `bytes` and reads until `complete`; through TLS when the connection has it.
    private func request(_ bytes: [UInt8], until complete: ([UInt8]) -> Bool) throws(TopError) -> [UInt8] {
        let deadline = ProbeSocket.now() + socket.timeout
        guard let stream else {
            do { try socket.send(bytes) } catch { throw TopError("the connection failed") }
            let (reply, closed) = socket.receive(limit: Self.replyLimit, until: complete)
            guard complete(reply) else { throw TopError(closed ? "the server closed the connection" : "no answer") }
            return reply
        }
        var pending: [UInt8]? = bytes
        var records = ByteBuffer()
        plaintext.clear()
        while true {
            let (status, _) = stream.decrypt(into: &plaintext, limit: Self.replyLimit - plaintext.readableBytes)
            if stream.handshakeComplete, let send = pending {
                pending = nil
                guard stream.encrypt(ByteBuffer(bytes: send)) else { throw TopError("TLS failed") }
            }
            stream.takeCiphertext(into: &records)
            if records.readableBytes > 0 {
                let out = Array(records.readableBytesView)
                records.clear()
                do { try socket.send(out) } catch { throw TopError("the connection failed") }
            }
            let received = Array(plaintext.readableBytesView)
            if pending == nil, complete(received) { return received }
            if received.count >= Self.replyLimit { throw TopError("reply too large") }
            switch status {
            case .failed(let why): throw TopError("TLS: \(why)")
            case .closed: throw TopError("the server closed the connection")
            case .needInput: break
            }
            let left = deadline - ProbeSocket.now()
            guard left > 0 else { throw TopError("no answer") }
            let (input, closed) = socket.receive(limit: 16_384, within: left) { !$0.isEmpty }
            if input.isEmpty { throw TopError(closed ? "the server closed the connection" : "no answer") }
            guard input.withUnsafeBytes({ stream.receive($0) }) else { throw TopError("TLS failed") }
        }
    }
}
