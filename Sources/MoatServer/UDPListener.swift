#if canImport(Glibc)
import CEpoll
import Glibc
import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import Synchronization

/// `-U PORT`: one UDP socket per listen host, each served by its own thread that hands every datagram
/// to the `UDPResponder` and sends back what it returns (at most one datagram). Works beside either
/// TCP backend. The sockets are bound before root is dropped; the threads start after.
final class UDPListener: @unchecked Sendable {
    private var sockets: [Int32] = []
    private var threads: [pthread_t] = []
    private let stopping = StopFlag()
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Binds `port` on each host of the TCP listeners (memcached's rule: UDP listens where TCP does).
    func bind(hosts: [String], port: Int) throws {
        for host in hosts {
            do {
                sockets.append(try Self.open(host: host, port: port))
            } catch {
                for fd in sockets { close(fd) }
                sockets.removeAll()
                throw error
            }
        }
    }

    static func open(host: String, port: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw ListenError(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenError(description: "udp socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        if info.pointee.ai_family == AF_INET6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        // A receive timeout lets the thread notice a stop without a wake-up socket.
        var timeout = timeval(tv_sec: 0, tv_usec: 250_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard Glibc.bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let error = ListenError(description: "udp bind \(host):\(port): \(String(cString: strerror(errno)))")
            close(fd)
            throw error
        }
        return fd
    }

    func start(responder: UDPResponder) throws {
        for fd in sockets {
            let worker = Worker(fd: fd, responder: responder, stopping: stopping)
            var thread = pthread_t()
            let box = Unmanaged.passRetained(worker)
            let created = pthread_create(
                &thread, nil,
                { raw in
                    Unmanaged<Worker>.fromOpaque(raw!).takeRetainedValue().run()
                    return nil
                }, box.toOpaque())
            guard created == 0 else {
                box.release()
                throw ListenError(description: "cannot start UDP thread: \(String(cString: strerror(created)))")
            }
            threads.append(thread)
        }
    }

    func stop() {
        stopping.value.store(true, ordering: .relaxed)
    }

    func wait() {
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
        for fd in sockets { close(fd) }
        sockets.removeAll()
    }

    final class Worker: @unchecked Sendable {
        let fd: Int32
        let responder: UDPResponder
        let stopping: StopFlag

        init(fd: Int32, responder: UDPResponder, stopping: StopFlag) {
            self.fd = fd
            self.responder = responder
            self.stopping = stopping
        }

        func run() {
            // One buffer larger than any UDP payload: a datagram is read whole or not at all.
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while !stopping.value.load(ordering: .relaxed) {
                var source = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let count = buffer.withUnsafeMutableBytes { bytes in
                    withUnsafeMutablePointer(to: &source) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &length)
                        }
                    }
                }
                guard count >= 0 else { continue }  // timeout (EAGAIN) or EINTR: check the stop flag
                // From the socket address itself: printed text would carry "%iface" for link-local sources.
                let peer = withUnsafePointer(to: &source) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { PeerAddress($0, length: length) }
                }
                let reply = buffer.withUnsafeBytes {
                    responder.respond(to: UnsafeRawBufferPointer(rebasing: $0[..<count]), from: peer)
                }
                guard let reply else { continue }
                _ = reply.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &source) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, bytes.baseAddress, bytes.count, 0, $0, length)
                        }
                    }
                }
            }
        }
    }
}
#endif
