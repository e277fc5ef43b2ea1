#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One address and port to probe.
package struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package var isIPv6: Bool { host.contains(":") }
    package var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

package struct TargetError: Error, CustomStringConvertible, Equatable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// `moat audit`'s targets: `host`, `host:port`, `[v6]:port`, `CIDR` (each address), `CIDR:port`, and
/// `@FILE` (the same, whitespace-separated, `#` starts a comment). Nothing else is ever probed.
package struct TargetList: Sendable {
    package var ports: [Int]
    /// Most endpoints one run may expand to: a typo such as /8 for /24 must not become a 16-million-host scan.
    package var limit: Int
    /// Reads a target file; replaced in tests.
    package var readFile: @Sendable (String) throws -> String

    package init(ports: [Int] = [11211], limit: Int = 65_536, readFile: @escaping @Sendable (String) throws -> String) {
        self.ports = ports
        self.limit = limit
        self.readFile = readFile
    }

    /// Every endpoint, in the order given, each once.
    package func expand(_ specs: [String]) throws -> [Endpoint] {
        var seen = Set<Endpoint>()
        var result: [Endpoint] = []
        func add(_ endpoint: Endpoint) throws {
            guard seen.insert(endpoint).inserted else { return }
            guard result.count < limit else {
                throw TargetError("more than \(limit) endpoints: narrow the ranges or raise --max-targets")
            }
            result.append(endpoint)
        }
        for spec in specs {
            if spec.hasPrefix("@") {
                let path = String(spec.dropFirst())
                let text: String
                do {
                    text = try readFile(path)
                } catch {
                    throw TargetError("\(spec): cannot read the target file: \(error)")
                }
                for line in text.split(whereSeparator: \.isNewline) {
                    let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                    for word in content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }) {
                        guard !word.hasPrefix("@") else {
                            throw TargetError("\(path): a target file cannot name another (\(word))")
                        }
                        for endpoint in try endpoints(String(word)) { try add(endpoint) }
                    }
                }
            } else {
                for endpoint in try endpoints(spec) { try add(endpoint) }
            }
        }
        return result
    }

    /// The endpoints of one target word.
    func endpoints(_ spec: String) throws -> [Endpoint] {
        let (hostPart, port) = try splitPort(spec)
        let portsToUse = port.map { [$0] } ?? ports
        if hostPart.contains("/") {
            let addresses = try expandBlock(hostPart, spec: spec)
            return addresses.flatMap { address in portsToUse.map { Endpoint(host: address, port: $0) } }
        }
        let addresses = try resolve(hostPart, spec: spec)
        return addresses.flatMap { address in portsToUse.map { Endpoint(host: address, port: $0) } }
    }

    /// `[v6]:port`, `v4:port`, `CIDR:port`; a bare IPv6 address (several colons) has no port.
    func splitPort(_ spec: String) throws -> (String, Int?) {
        guard !spec.isEmpty else { throw TargetError("empty target") }
        if spec.hasPrefix("[") {
            guard let close = spec.firstIndex(of: "]") else { throw TargetError("\(spec): missing ]") }
            let host = String(spec[spec.index(after: spec.startIndex)..<close])
            let rest = spec[spec.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.first == ":", let port = Int(rest.dropFirst()), (1...65535).contains(port) else {
                throw TargetError("\(spec): expected [address]:port")
            }
            return (host, port)
        }
        let colons = spec.filter { $0 == ":" }.count
        if colons == 1 {
            let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
            guard let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
                throw TargetError("\(spec): bad port")
            }
            return (String(parts[0]), port)
        }
        return (spec, nil)
    }

    /// Every address of a CIDR block (network and broadcast included, as nmap does).
    func expandBlock(_ text: String, spec: String) throws -> [String] {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]) else {
            throw TargetError("\(spec): expected address/prefix")
        }
        let address = String(parts[0])
        if address.contains(":") {
            var bytes = [UInt8](repeating: 0, count: 16)
            guard inet_pton(AF_INET6, address, &bytes) == 1, (0...128).contains(prefix) else {
                throw TargetError("\(spec): not an IPv6 block")
            }
            let hostBits = 128 - prefix
            guard hostBits <= 20, 1 << hostBits <= limit else {
                throw TargetError("\(spec): /\(prefix) holds more than \(limit) addresses; give a smaller range")
            }
            // Keep the network bits, then count through the low host bits.
            var low = UInt64(0)
            for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
            let mask: UInt64 = hostBits == 0 ? ~0 : ~((1 << UInt64(hostBits)) - 1)
            let base = low & mask
            return (0..<(UInt64(1) << UInt64(hostBits))).map { offset in
                var copy = bytes
                let value = base | offset
                for index in 0..<8 { copy[15 - index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                return Self.formatIPv6(copy)
            }
        }
        var bytes = [UInt8](repeating: 0, count: 4)
        guard inet_pton(AF_INET, address, &bytes) == 1, (0...32).contains(prefix) else {
            throw TargetError("\(spec): not an IPv4 block")
        }
        let hostBits = 32 - prefix
        guard UInt64(1) << UInt64(hostBits) <= UInt64(limit) else {
            throw TargetError(
                """
                \(spec): /\(prefix) holds \(UInt64(1) << UInt64(hostBits)) addresses, more than \(limit); give a \
                smaller range
                """
            )
        }
        let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let mask: UInt32 = hostBits == 32 ? 0 : ~((1 << UInt32(hostBits)) - 1)
        let base = value & mask
        return (0..<(UInt32(1) << UInt32(hostBits))).map { offset in
            let host = base | offset
            return "\(host >> 24).\(host >> 16 & 255).\(host >> 8 & 255).\(host & 255)"
        }
    }

    /// A numeric address as given; a name through the resolver (every address it returns).
    func resolve(_ host: String, spec: String) throws -> [String] {
        var v4 = [UInt8](repeating: 0, count: 4)
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, host, &v4) == 1 { return [host] }
        if inet_pton(AF_INET6, host, &v6) == 1 { return [Self.formatIPv6(v6)] }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) else {
            throw TargetError("\(spec): not an address, block or host name")
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else {
            throw TargetError("\(spec): cannot resolve \(host)")
        }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(
                entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0,
                NI_NUMERICHOST) == 0
            {
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !addresses.contains(text) { addresses.append(text) }
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }

    static func formatIPv6(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = bytes
        _ = inet_ntop(AF_INET6, &copy, &buffer, socklen_t(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
