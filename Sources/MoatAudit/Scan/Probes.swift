#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The probes of one endpoint, each on its own connection so that one protocol's state (a binary
/// request, a half-read dump) never confuses the next.
struct EndpointProber {
    var timeout: Double
    var intrusive: Bool
    var probeTLS: Bool
    var udpPort: Int?
    var tls: TLSProber?
    /// Unique per run, so a probe key never collides with a real one.
    var probeKey: String

    static let lineLimit = 4_096
    static let statsLimit = 262_144
    static let dumpLimit = 65_536

    func observe(_ endpoint: Endpoint) -> ServiceObservation {
        var observation = ServiceObservation(endpoint: endpoint)
        if let connection = try? ProbeSocket(endpoint, timeout: timeout) {
            observation.tcpOpen = true
            probeText(connection, into: &observation)
            connection.close()
            if observation.text == .open { probeMetadump(endpoint, into: &observation) }
            probeBinary(endpoint, into: &observation)
            if probeTLS, let tls {
                let (state, access, version) = tls.probe(endpoint, timeout: timeout)
                observation.tls = state
                observation.tlsText = access
                if observation.version == nil { observation.version = version }
            }
        }
        if let udpPort { probeUDP(Endpoint(host: endpoint.host, port: udpPort), into: &observation) }
        return observation
    }

    // MARK: text protocol

    static func endsLine(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[bytes.count - 2] == 13 && bytes.last == 10
    }

    static func firstLine(_ bytes: [UInt8]) -> String {
        let end = bytes.firstIndex(of: 13) ?? bytes.firstIndex(of: 10) ?? bytes.count
        return String(decoding: bytes[..<min(end, 512)], as: UTF8.self)
    }

    static func isError(_ line: String) -> Bool {
        line.hasPrefix("ERROR") || line.hasPrefix("CLIENT_ERROR") || line.hasPrefix("SERVER_ERROR")
    }

    /// A multi-line reply is whole at `END\r\n`, or at once when its first line is an error.
    static func multiLineComplete(_ bytes: [UInt8]) -> Bool {
        guard endsLine(bytes) else { return false }
        if isError(firstLine(bytes)) { return true }
        return bytes.count >= 5 && Array(bytes.suffix(5)) == Array("END\r\n".utf8)
    }

    func request(_ connection: ProbeSocket, _ command: String, multiLine: Bool, limit: Int) -> [UInt8]? {
        do {
            try connection.send(Array(command.utf8))
        } catch {
            return nil
        }
        let reply = connection.receive(limit: limit) { multiLine ? Self.multiLineComplete($0) : Self.endsLine($0) }
        return reply.bytes.isEmpty ? nil : reply.bytes
    }

    /// `version` names the server; whether commands need authentication shows only on a real command
    /// (Moat and others answer `version` before authentication, as a health check).
    func probeText(_ connection: ProbeSocket, into observation: inout ServiceObservation) {
        guard let reply = request(connection, "version\r\n", multiLine: false, limit: Self.lineLimit) else { return }
        let line = Self.firstLine(reply)
        if line.hasPrefix("VERSION ") {
            observation.version = String(line.dropFirst(8))
        } else if Self.isError(line) && line.lowercased().contains("auth") {
            observation.text = .authenticationRequired
            return
        } else {
            return
        }
        guard let stats = request(connection, "stats\r\n", multiLine: true, limit: Self.statsLimit) else { return }
        let statsLine = Self.firstLine(stats)
        if statsLine.hasPrefix("STAT ") {
            observation.statsReadable = true
            observation.text = .open
        } else if Self.isError(statsLine) && statsLine.lowercased().contains("auth") {
            observation.text = .authenticationRequired
            return
        } else if let get = request(connection, "get \(probeKey)\r\n", multiLine: true, limit: Self.lineLimit) {
            // stats refused for another reason: a read tells whether data is open.
            let getLine = Self.firstLine(get)
            if getLine == "END" || getLine.hasPrefix("VALUE ") {
                observation.text = .open
            } else {
                observation.text = getLine.lowercased().contains("auth") ? .authenticationRequired : .notServed
                return
            }
        } else {
            return
        }
        // go-derper's path: stats items names the slab classes, cachedump lists a class's keys.
        var slab = "1"
        if let items = request(connection, "stats items\r\n", multiLine: true, limit: Self.statsLimit) {
            let text = String(decoding: items, as: UTF8.self)
            if let range = text.range(of: "STAT items:") {
                slab = String(text[range.upperBound...].prefix { $0.isNumber })
                if slab.isEmpty { slab = "1" }
            }
        }
        if let dump = request(connection, "stats cachedump \(slab) 5\r\n", multiLine: true, limit: Self.dumpLimit) {
            let line = Self.firstLine(dump)
            if !Self.isError(line), Self.multiLineComplete(dump) {
                let keys = String(decoding: dump, as: UTF8.self).components(separatedBy: "\r\n").filter {
                    $0.hasPrefix("ITEM ")
                }.count
                observation.enumeration["stats cachedump"] =
                    keys == 0 ? "accepted (slab class \(slab) empty)" : "listed \(keys) keys"
            }
        }
        if intrusive {
            let value = "moat-audit"
            if let stored = request(
                connection, "set \(probeKey) 0 60 \(value.utf8.count)\r\n\(value)\r\n", multiLine: false,
                limit: Self.lineLimit)
            {
                observation.writable = Self.firstLine(stored) == "STORED"
                if observation.writable == true {
                    _ = request(connection, "delete \(probeKey)\r\n", multiLine: false, limit: Self.lineLimit)
                }
            } else {
                observation.writable = false
            }
        }
    }

    /// `lru_crawler metadump` alone on its connection (memcached refuses it behind pipelined commands).
    /// Stops reading at 64 KiB: a few keys prove the point, a whole cache's worth is not needed.
    func probeMetadump(_ endpoint: Endpoint, into observation: inout ServiceObservation) {
        guard let connection = try? ProbeSocket(endpoint, timeout: timeout) else { return }
        defer { connection.close() }
        guard let dump = request(connection, "lru_crawler metadump all\r\n", multiLine: true, limit: Self.dumpLimit)
        else { return }
        let line = Self.firstLine(dump)
        if line.hasPrefix("key=") {
            let keys = String(decoding: dump, as: UTF8.self).components(separatedBy: "\r\n").filter {
                $0.hasPrefix("key=")
            }.count
            observation.enumeration["lru_crawler metadump"] =
                "listed \(keys)\(dump.count >= Self.dumpLimit ? "+" : "") keys"
        } else if line == "END" {
            observation.enumeration["lru_crawler metadump"] = "accepted (no keys stored)"
        } else if line.hasPrefix("BUSY") {
            observation.enumeration["lru_crawler metadump"] = "accepted (crawler busy)"
        }
    }

    // MARK: binary protocol

    static func binaryRequest(opcode: UInt8, key: String = "") -> [UInt8] {
        let keyBytes = Array(key.utf8)
        var header = [UInt8](repeating: 0, count: 24)
        header[0] = 0x80
        header[1] = opcode
        header[2] = UInt8(keyBytes.count >> 8)
        header[3] = UInt8(keyBytes.count & 0xff)
        header[11] = UInt8(keyBytes.count)  // total body: the key alone (keys are at most 250 bytes)
        header[12] = 0x4d  // opaque, echoed back
        return header + keyBytes
    }

    /// (status, body) of one binary reply, or nil when the reply is not memcached's binary protocol.
    func binaryExchange(_ connection: ProbeSocket, opcode: UInt8, key: String = "") -> (UInt16, [UInt8])? {
        do {
            try connection.send(Self.binaryRequest(opcode: opcode, key: key))
        } catch {
            return nil
        }
        let reply = connection.receive(limit: 24 + Self.lineLimit) { bytes in
            guard bytes.count >= 24 else { return false }
            let body = Int(bytes[8]) << 24 | Int(bytes[9]) << 16 | Int(bytes[10]) << 8 | Int(bytes[11])
            return bytes.count >= 24 + min(body, Self.lineLimit)
        }.bytes
        guard reply.count >= 24, reply[0] == 0x81, reply[1] == opcode else { return nil }
        let status = UInt16(reply[6]) << 8 | UInt16(reply[7])
        return (status, Array(reply[24...]))
    }

    func probeBinary(_ endpoint: Endpoint, into observation: inout ServiceObservation) {
        guard let connection = try? ProbeSocket(endpoint, timeout: timeout) else { return }
        defer { connection.close() }
        guard let (status, body) = binaryExchange(connection, opcode: 0x0b) else { return }
        switch status {
        case 0:
            if observation.version == nil { observation.version = String(decoding: body.prefix(64), as: UTF8.self) }
            // As with text, a read (get of the probe key: hit or miss) shows whether data is open.
            guard let (getStatus, _) = binaryExchange(connection, opcode: 0x00, key: probeKey) else { return }
            switch getStatus {
            case 0, 1: observation.binary = .open
            case 0x20: observation.binary = .authenticationRequired
            default: return
            }
        case 0x20:
            observation.binary = .authenticationRequired
        default:
            return
        }
        // SASL list-mechs: which mechanisms a client may use (PLAIN without TLS sends the password).
        if let (mechanismStatus, mechanisms) = binaryExchange(connection, opcode: 0x20), mechanismStatus == 0 {
            observation.saslMechanisms = String(decoding: mechanisms.prefix(512), as: UTF8.self)
                .split(separator: " ").map(String.init)
        }
    }

    // MARK: UDP

    /// memcached's 8-byte UDP frame: request id, sequence 0, one datagram, reserved 0.
    static func udpFrame(id: UInt16, _ command: String) -> [UInt8] {
        [UInt8(id >> 8), UInt8(id & 0xff), 0, 0, 0, 1, 0, 0] + Array(command.utf8)
    }

    func probeUDP(_ endpoint: Endpoint, into observation: inout ServiceObservation) {
        observation.udpProbed = true
        observation.udpPort = endpoint.port
        for (index, command) in ["stats\r\n", "get \(probeKey)\r\n"].enumerated() {
            guard let socket = try? ProbeSocket(endpoint, datagram: true, timeout: timeout) else { return }
            defer { socket.close() }
            let id = UInt16(0x4d00 + index)
            let request = Self.udpFrame(id: id, command)
            guard (try? socket.send(request)) != nil else { return }
            // A reply spread over many datagrams arrives within milliseconds on any network worth
            // scanning; the caps bound what a hostile peer can make the scanner hold.
            guard
                case .success(let sizes) = socket.receiveDatagrams(
                    quiet: 0.3, maximumCount: 4_096, maximumBytes: 8 << 20,
                    belongs: {
                        $0.count >= 8 && $0[$0.startIndex] == UInt8(id >> 8)
                            && $0[$0.startIndex + 1] == UInt8(id & 0xff)
                    }),
                !sizes.isEmpty
            else { continue }
            let name = command.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? command
            observation.udp.append(
                ServiceObservation.UDPExchange(
                    command: name, requestBytes: request.count, replyBytes: sizes.reduce(0, +), datagrams: sizes.count))
        }
    }
}
