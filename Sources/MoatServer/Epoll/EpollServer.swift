import Logging
import MoatAccess
import MoatConfig
import MoatEngine
import MoatTLS
import NIOCore
import Synchronization

#if canImport(Glibc)
import CEpoll
import Glibc

/// Every client connection (TCP, TLS, unix socket) is served here, without SwiftNIO's channel machinery:
/// one epoll loop per `-t` thread, each accepting from the shared listening sockets (EPOLLEXCLUSIVE) and
/// handing each ready socket to its connection's `ConnectionCore` (one `read` and one `send` per wake-up).
/// SwiftNIO's per-event user-space cost was most of the gap to memcached on request/response traffic
/// (docs/performance.md).
///
/// The loop owns sockets, epoll interest and the clock; the rules are the core's (the deadlines,
/// back-pressure, the output budget, bounded buffers, the drain), and admission is the gate's, before a
/// core exists. TLS is a transform inside the core (`TLSStream`, OpenSSL over memory buffers), so the
/// same loop and the same rules serve it. No accept before the privilege drop (threads start after it).
final class EpollServer: @unchecked Sendable {
    private let configuration: ServerConfiguration
    private let engine: Engine
    private let logger: Logger
    private var listenFDs: [Int32] = []
    private var threads: [pthread_t] = []
    private var loops: [EpollLoop] = []
    private let stopping = StopFlag()
    private let onShutdown: @Sendable () -> Void
    private let gate: ConnectionGate
    private let certificates: TLSCertificates?
    /// The listening sockets whose connections speak TLS (`-Z`, but not `notls:` ones).
    private var tlsListenFDs: Set<Int32> = []

    init(
        configuration: ServerConfiguration, engine: Engine, gate: ConnectionGate, certificates: TLSCertificates?,
        logger: Logger, onShutdown: @escaping @Sendable () -> Void
    ) {
        self.certificates = certificates
        self.configuration = configuration
        self.engine = engine
        self.gate = gate
        self.logger = logger
        self.onShutdown = onShutdown
    }

    // MARK: listeners

    func bindAll() throws {
        let backlog = configuration.backlog
        let mask = configuration.unixMask
        let tls = certificates != nil
        var secure: Set<Int32> = []
        listenFDs = try openListeners(
            configuration, logger: logger,
            tcp: { address in
                let fd = try Self.listenTCP(address, backlog: backlog)
                if tls, address.tls { secure.insert(fd) }
                return fd
            },
            unix: { try Self.listenUnix($0, mask: mask, backlog: backlog) },
            close: { _ = close($0) })
        tlsListenFDs = secure
    }

    private static func failure(_ what: String) -> ListenError {
        ListenError(description: "\(what): \(String(cString: strerror(errno)))")
    }

    static func listenTCP(_ address: ListenAddress, backlog: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &result)
        guard status == 0, let info = result else {
            throw ListenError(description: "cannot resolve \(address.host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(
            info.pointee.ai_family,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if info.pointee.ai_family == AF_INET6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let error = failure("bind")
            close(fd)
            throw error
        }
        guard listen(fd, Int32(clamping: backlog)) == 0 else {
            let error = failure("listen")
            close(fd)
            throw error
        }
        return fd
    }

    static func listenUnix(_ path: String, mask: UInt32, backlog: Int) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ListenError(description: "unix socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(
            AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let previous = umask(mode_t(~mask & 0o777))
        defer { umask(previous) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let error = failure("bind \(path)")
            close(fd)
            throw error
        }
        // The umask gave the socket its mode; a chmod by name would follow a symlink put in its place.
        guard listen(fd, Int32(clamping: backlog)) == 0 else {
            let error = failure("listen \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    // MARK: threads

    func startThreads() throws {
        for index in 0..<configuration.threads {
            let loop = EpollLoop(
                index: index, listenFDs: listenFDs, tlsListenFDs: tlsListenFDs, certificates: certificates,
                engine: engine, logger: logger, stopping: stopping,
                deadlines: ConnectionDeadlines.Limits(configuration), gate: gate, onShutdown: onShutdown)
            try loop.register()
            loops.append(loop)
            var thread = pthread_t()
            let box = Unmanaged.passRetained(loop)
            let created = pthread_create(
                &thread, nil,
                { raw in
                    let loop = Unmanaged<EpollLoop>.fromOpaque(raw!).takeRetainedValue()
                    loop.run()
                    return nil
                }, box.toOpaque())
            guard created == 0 else {
                box.release()
                throw ListenError(description: "cannot start thread: \(String(cString: strerror(created)))")
            }
            threads.append(thread)
        }
    }

    func stop() {
        stopping.value.store(true, ordering: .relaxed)
        for loop in loops { loop.wake() }
    }

    func wait() {
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
        for loop in loops { loop.closeWakeup() }
        loops.removeAll()
        for fd in listenFDs { close(fd) }
        listenFDs.removeAll()
    }
}

final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// One thread's event loop: level-triggered epoll over this thread's connections and the shared
/// listening sockets. It owns the sockets and nothing else: each connection's life is its
/// `ConnectionCore`, which the loop hands readiness events (with the socket's read and send) and
/// obeys (wait for input or writability, half-close, close).
final class EpollLoop: @unchecked Sendable {
    final class Connection {
        let fd: Int32
        let core: ConnectionCore
        /// Armed for writability only (the core's replies do not drain), not for input.
        var waitingToWrite = false

        init(fd: Int32, core: ConnectionCore) {
            self.fd = fd
            self.core = core
        }
    }

    /// The tenancy generation the last sweep checked the connections against.
    private var tenancyGeneration = 0

    let index: Int
    let listenFDs: [Int32]
    let tlsListenFDs: Set<Int32>
    let certificates: TLSCertificates?
    let context: ConnectionContext
    let engine: Engine
    let logger: Logger
    let stopping: StopFlag
    let gate: ConnectionGate
    let onShutdown: @Sendable () -> Void
    private var epfd: Int32 = -1
    /// Written by `wake()` so that a stop does not wait for epoll_wait's timeout.
    private var wakeFD: Int32 = -1
    private var connections: [Connection?] = []
    private var open = 0
    private var lastSweep: Int64 = 0
    /// Connections that gave their idle buffers back since malloc was last trimmed.
    private var releasedSinceTrim = 0

    init(
        index: Int, listenFDs: [Int32], tlsListenFDs: Set<Int32>, certificates: TLSCertificates?, engine: Engine,
        logger: Logger, stopping: StopFlag, deadlines: ConnectionDeadlines.Limits, gate: ConnectionGate,
        onShutdown: @escaping @Sendable () -> Void
    ) {
        self.tlsListenFDs = tlsListenFDs
        self.certificates = certificates
        self.context = ConnectionContext(
            engine: engine, gate: gate, logger: logger, limits: deadlines,
            certificateAuthentication: certificates?.options.certificateAuthentication ?? false)
        self.gate = gate
        self.index = index
        self.listenFDs = listenFDs
        self.engine = engine
        self.logger = logger
        self.stopping = stopping
        self.onShutdown = onShutdown
    }

    func register() throws {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw ListenError(description: "epoll_create1: \(String(cString: strerror(errno)))") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        var wakeEvent = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: 2 << 32))
        guard wakeFD >= 0, epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFD, &wakeEvent) == 0 else {
            throw ListenError(description: "eventfd: \(String(cString: strerror(errno)))")
        }
        for fd in listenFDs {
            // EPOLLEXCLUSIVE: one thread wakes per pending connection, spreading accepts over threads.
            var event = epoll_event(
                events: EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue,
                data: epoll_data_t(u64: UInt64(UInt32(bitPattern: fd)) | (1 << 32)))
            guard epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) == 0 else {
                throw ListenError(description: "epoll_ctl: \(String(cString: strerror(errno)))")
            }
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    func closeWakeup() {
        close(wakeFD)
    }

    func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer {
            drain(events: events, capacity: capacity)
            events.deallocate()
            for case let connection? in connections { closeConnection(connection, reason: .shutdown) }
            close(epfd)
        }
        while !stopping.value.load(ordering: .relaxed) {
            let count = epoll_wait(epfd, events, Int32(capacity), 250)
            if count < 0 {
                if errno == EINTR { continue }
                logger.error("epoll_wait: \(String(cString: strerror(errno)))")
                return
            }
            // One clock reading per wake-up: the deadlines count in milliseconds, a batch takes microseconds.
            let now = Self.now()
            for i in 0..<Int(count) {
                let event = events[i]
                let data = event.data.u64
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                if data >> 32 == 1 {
                    acceptAll(fd, at: now)
                    continue
                }
                if data >> 32 == 2 { continue }  // woken to notice a stop
                guard Int(fd) < connections.count, let connection = connections[Int(fd)] else { continue }
                if event.events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0, event.events & EPOLLIN.rawValue == 0 {
                    closeConnection(connection, reason: .error)
                    continue
                }
                ready(connection, event.events, at: now)
            }
            sweep(at: now)
        }
    }

    /// Hands a ready socket to its core: writability while its replies are blocked, else input.
    private func ready(_ connection: Connection, _ events: UInt32, at now: Int64) {
        let fd = connection.fd
        let step: ConnectionStep
        if connection.waitingToWrite {
            guard events & EPOLLOUT.rawValue != 0 else { return }
            step = connection.core.writable(at: now, send: { Self.send(fd, $0) })
        } else {
            guard events & EPOLLIN.rawValue != 0 else { return }
            step = connection.core.readable(at: now, read: { Self.read(fd, $0) }, send: { Self.send(fd, $0) })
        }
        perform(step, connection)
    }

    private func perform(_ step: ConnectionStep, _ connection: Connection) {
        switch step {
        case .waitForInput:
            if connection.waitingToWrite { watch(connection, writable: false) }
        case .waitForWritable:
            if !connection.waitingToWrite { watch(connection, writable: true) }
        case .halfClose:
            shutdown(connection.fd, Int32(SHUT_WR))
            if connection.waitingToWrite { watch(connection, writable: false) }
        case .close(let reason):
            closeConnection(connection, reason: reason)
        case .closeAndStopServer:
            closeConnection(connection, reason: .shutdown)
            onShutdown()
        }
    }

    /// Input (and the peer's half-close), or writability only: a half-closed peer (EPOLLRDHUP) would
    /// otherwise wake a paused connection's loop forever.
    private func watch(_ connection: Connection, writable: Bool) {
        connection.waitingToWrite = writable
        var event = epoll_event(
            events: writable ? EPOLLOUT.rawValue : EPOLLIN.rawValue | EPOLLRDHUP.rawValue,
            data: epoll_data_t(u64: UInt64(UInt32(bitPattern: connection.fd))))
        epoll_ctl(epfd, EPOLL_CTL_MOD, connection.fd, &event)
    }

    private static func read(_ fd: Int32, _ target: UnsafeMutableRawBufferPointer) -> ReadOutcome {
        while true {
            let received = Glibc.read(fd, target.baseAddress, target.count)
            if received > 0 { return .received(received) }
            if received == 0 { return .peerClosed }
            if errno == EINTR { continue }
            return errno == EAGAIN ? .wouldBlock : .failed
        }
    }

    private static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> WriteOutcome {
        while true {
            // MSG_NOSIGNAL: a peer that has gone away must not raise SIGPIPE in the server.
            let written = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if written > 0 { return .sent(written) }
            if written < 0, errno == EINTR { continue }
            return written < 0 && errno == EAGAIN ? .wouldBlock : .failed
        }
    }

    /// On stop: nothing new is served, but replies already computed (and requests already buffered) are
    /// written out, for up to `drainMilliseconds`, so that no client is cut off mid-reply; each core
    /// half-closes when its output is out and drops what still arrives until the client closes too.
    static let drainMilliseconds: Int64 = 10_000

    private func drain(events: UnsafeMutablePointer<epoll_event>, capacity: Int) {
        // Level-triggered listeners and the wake-up would otherwise wake every wait at once.
        epoll_ctl(epfd, EPOLL_CTL_DEL, wakeFD, nil)
        for fd in listenFDs { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil) }
        for case let connection? in connections {
            let fd = connection.fd
            perform(connection.core.stop(at: Self.now(), send: { Self.send(fd, $0) }), connection)
        }
        let deadline = Self.now() + Self.drainMilliseconds
        while open > 0, Self.now() < deadline {
            let count = epoll_wait(epfd, events, Int32(capacity), 50)
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            for i in 0..<Int(count) {
                let data = events[i].data.u64
                guard data >> 32 == 0 else { continue }
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                guard Int(fd) < connections.count, let connection = connections[Int(fd)] else { continue }
                ready(connection, events[i].events, at: Self.now())
            }
        }
    }

    // MARK: accept

    private func acceptAll(_ listenFD: Int32, at now: Int64) {
        while true {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    moat_accept4(listenFD, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            guard fd >= 0 else { return }  // EAGAIN: another thread took it, or none left
            let peer = Self.describe(&storage)
            var address = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { PeerAddress($0, length: length) }
            }
            if case .unix = address { address = .unix(uid: unixPeerUID(fd)) }
            // Before a byte is read or written: a refused client learns nothing but that the port is open.
            switch gate.enter(peer: address, described: peer) {
            case .admitted: break
            case .refused:
                close(fd)
                continue
            case .tooManyConnections:
                ConnectionGate.tooManyConnectionsReply.withUTF8Buffer {
                    _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                close(fd)
                continue
            }
            if storage.ss_family == sa_family_t(AF_INET) || storage.ss_family == sa_family_t(AF_INET6) {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            var tls: TLSStream?
            if tlsListenFDs.contains(listenFD) {
                tls = certificates?.makeStream()
                if tls == nil {
                    logger.error("cannot start TLS for a connection: \(TLSStream.lastError())")
                    close(fd)
                    gate.leave(peer: address)
                    continue
                }
            }
            let connection = Connection(
                fd: fd, core: ConnectionCore(context: context, address: address, peer: peer, tls: tls, now: now))
            if Int(fd) >= connections.count {
                connections.append(contentsOf: repeatElement(nil, count: Int(fd) + 1 - connections.count + 64))
            }
            connections[Int(fd)] = connection
            open += 1
            var event = epoll_event(
                events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, data: epoll_data_t(u64: UInt64(UInt32(bitPattern: fd))))
            if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0 {
                closeConnection(connection, reason: .error)
                continue
            }
        }
    }

    private func closeConnection(_ connection: Connection, reason: CloseReason) {
        guard Int(connection.fd) < connections.count, connections[Int(connection.fd)] === connection else { return }
        connections[Int(connection.fd)] = nil
        open -= 1
        epoll_ctl(epfd, EPOLL_CTL_DEL, connection.fd, nil)
        close(connection.fd)
        connection.core.finish(reason)
    }

    /// Every quarter second: each core's deadlines, idle buffers and access (after a reload); once a
    /// second, reclaim expired items (first thread only).
    private func sweep(at now: Int64) {
        guard now - lastSweep >= 250 else { return }
        if index == 0, now / 1000 != lastSweep / 1000 { engine.reclaimExpired(perShardLimit: 2000) }
        lastSweep = now
        let generation = engine.tenancy.generation.load(ordering: .acquiring)
        let tenancyChanged = generation != tenancyGeneration
        tenancyGeneration = generation
        for case let connection? in connections {
            switch connection.core.tick(at: now, tenancyChanged: tenancyChanged) {
            case .keep: break
            case .releasedBuffers: releasedSinceTrim += 1
            case .close(let reason): closeConnection(connection, reason: reason)
            }
        }
        // Freed buffers sit in malloc's heap; hand them back to the system in large batches (counted
        // across ticks: connections that went quiet over a few ticks are one batch too).
        if releasedSinceTrim >= 256 {
            releasedSinceTrim = 0
            moat_malloc_trim()
        }
    }

    /// Monotonic milliseconds.
    static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    static func describe(_ storage: inout sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let family = Int32(storage.ss_family)
        if family == AF_UNIX { return "unix" }
        let length = socklen_t(family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo(
                    $0, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                    NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0 else { return "unknown" }
        let h = String(nulTerminated: host)
        let s = String(nulTerminated: service)
        return family == AF_INET6 ? "[\(h)]:\(s)" : "\(h):\(s)"
    }
}
#endif
