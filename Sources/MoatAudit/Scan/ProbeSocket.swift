#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a probe got no answer.
package enum ProbeFailure: Error, Equatable, Sendable {
    /// Nothing listens (RST, or ICMP port unreachable for UDP).
    case refused
    /// No answer before the deadline (filtered, or a server that waits).
    case timedOut
    case other(String)
}

/// A blocking socket whose every wait has a deadline: the scanner may be pointed at anything, so it
/// never trusts a peer to answer, to stop answering, or to keep its replies small.
final class ProbeSocket {
    private(set) var descriptor: Int32
    let timeout: Double

    /// Connects (TCP) or fixes the peer (UDP) within `timeout` seconds.
    init(_ endpoint: Endpoint, datagram: Bool = false, timeout: Double) throws(ProbeFailure) {
        self.timeout = timeout
        var storage = sockaddr_storage()
        var length: socklen_t
        let family: Int32
        if endpoint.isIPv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(endpoint.port).bigEndian)
            guard inet_pton(AF_INET6, endpoint.host, &address.sin6_addr) == 1 else {
                throw .other("bad address \(endpoint.host)")
            }
            withUnsafeBytes(of: address) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            family = AF_INET6
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(endpoint.port).bigEndian)
            guard inet_pton(AF_INET, endpoint.host, &address.sin_addr) == 1 else {
                throw .other("bad address \(endpoint.host)")
            }
            withUnsafeBytes(of: address) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            family = AF_INET
        }
        #if canImport(Glibc)
        let type =
            Int32(datagram ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue)
            | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        #else
        let type = datagram ? SOCK_DGRAM : SOCK_STREAM
        #endif
        descriptor = socket(family, type, 0)
        guard descriptor >= 0 else { throw .other("socket: errno \(errno)") }
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, length) }
        }
        if result != 0 {
            guard errno == EINPROGRESS else {
                let code = errno
                close()
                throw code == ECONNREFUSED ? .refused : .other("connect: errno \(code)")
            }
            guard wait(for: Int16(POLLOUT), until: Self.now() + timeout) else {
                close()
                throw .timedOut
            }
            var error: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &size)
            if error != 0 {
                close()
                throw error == ECONNREFUSED ? .refused : .other("connect: errno \(error)")
            }
        }
    }

    deinit { close() }

    func close() {
        if descriptor >= 0 {
            _ = Glibc.close(descriptor)
            descriptor = -1
        }
    }

    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// True when the socket became ready before the deadline.
    func wait(for events: Int16, until deadline: Double) -> Bool {
        while true {
            let left = deadline - Self.now()
            if left <= 0 { return false }
            var entry = pollfd(fd: descriptor, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(max(1, (left * 1000).rounded(.up))))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return false }
        }
    }

    func send(_ bytes: [UInt8]) throws(ProbeFailure) {
        var offset = 0
        let deadline = Self.now() + timeout
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
                continue
            }
            if sent < 0 && (errno == EAGAIN || errno == EINTR) {
                guard wait(for: Int16(POLLOUT), until: deadline) else { throw .timedOut }
                continue
            }
            throw errno == ECONNREFUSED ? .refused : .other("send: errno \(errno)")
        }
    }

    /// Reads until `complete` says the reply is whole, `limit` bytes arrived, the peer closed, or
    /// the deadline passed; returns what arrived (the caller judges a partial reply).
    func receive(limit: Int, within seconds: Double? = nil, until complete: ([UInt8]) -> Bool) -> (
        bytes: [UInt8], closed: Bool
    ) {
        var buffer: [UInt8] = []
        let deadline = Self.now() + (seconds ?? timeout)
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while buffer.count < limit {
            guard wait(for: Int16(POLLIN), until: deadline) else { return (buffer, false) }
            let count = chunk.withUnsafeMutableBytes {
                recv(descriptor, $0.baseAddress, min($0.count, limit - buffer.count), 0)
            }
            if count == 0 { return (buffer, true) }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return (buffer, true)
            }
            buffer.append(contentsOf: chunk[0..<count])
            if complete(buffer) { break }
        }
        return (buffer, false)
    }

    /// UDP: every datagram that arrives until `quiet` seconds pass without one (or the deadline, or
    /// the caps) and that `belongs` (memcached's frame echoes the request id: another UDP service's
    /// replies are not memcached's). Returns the sizes, or `.refused` when ICMP said nothing listens.
    func receiveDatagrams(
        quiet: Double, maximumCount: Int, maximumBytes: Int, belongs: (ArraySlice<UInt8>) -> Bool
    ) -> Result<[Int], ProbeFailure> {
        var sizes: [Int] = []
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let hardDeadline = Self.now() + timeout
        while sizes.count < maximumCount, total < maximumBytes {
            let wait = sizes.isEmpty ? hardDeadline : min(hardDeadline, Self.now() + quiet)
            guard self.wait(for: Int16(POLLIN), until: wait) else { break }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                if errno == ECONNREFUSED { return sizes.isEmpty ? .failure(.refused) : .success(sizes) }
                break
            }
            total += count
            if belongs(buffer[0..<count]) { sizes.append(count) }
        }
        return .success(sizes)
    }
}
