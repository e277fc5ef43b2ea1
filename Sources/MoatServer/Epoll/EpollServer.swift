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
/// driving the pure `Session` with one `read` and one `write` per ready socket. SwiftNIO's per-event
/// user-space cost was most of the gap to memcached on request/response traffic (docs/performance.md).
///
/// TLS is a transform between the socket and the session (`TLSStream`, OpenSSL with memory buffers): the
/// same loop reads and writes the socket, the same rules apply. Those rules: the gate's admission, the
/// deadlines, back-pressure (a client whose replies are not draining is not read from), the output
/// budget, bounded buffers, the drain on stop, no accept before the privilege drop (threads start after it).
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
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
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
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket") }
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let previous = umask(mode_t(~mask & 0o777))
        defer { umask(previous) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
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
            let created = pthread_create(&thread, nil, { raw in
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
/// listening sockets.
final class EpollLoop: @unchecked Sendable {
    final class Connection {
        let fd: Int32
        var session: Session
        /// Plaintext requests and replies (decrypted and not yet encrypted, on TLS).
        var input: ByteBuffer
        var output: ByteBuffer
        /// TLS only: the transform, and the records not yet taken by the socket.
        let tls: TLSStream?
        var cipher: ByteBuffer
        /// TLS only: close_notify has been queued (on a drain).
        var closeNotified = false
        /// Replies are not draining: reading is paused until the socket is writable again.
        var blocked = false
        /// Its idle, authentication, command and output deadlines.
        var deadlines: ConnectionDeadlines
        let peer: String
        /// Who the client is, read from the socket address (what the gate counts).
        let address: PeerAddress?
        /// The address without the port, for the security log.
        let host: String
        /// Output bytes charged to the engine's output budget while `blocked`.
        var charged = 0

        init(fd: Int32, session: Session, tls: TLSStream?, deadlines: ConnectionDeadlines, peer: String, address: PeerAddress?) {
            self.fd = fd
            self.session = session
            self.tls = tls
            self.cipher = EpollLoop.noBuffer
            // Idle connections own no buffer memory: they borrow the loop's while they are served.
            self.input = EpollLoop.noBuffer
            self.output = EpollLoop.noBuffer
            self.deadlines = deadlines
            self.peer = peer
            self.address = address
            self.host = address?.description ?? "unknown"
        }

        /// What is waiting for the socket: replies, or on TLS their records.
        var pending: ByteBuffer { tls == nil ? output : cipher }
    }

    static let readChunk = 16 * 1024
    /// What an idle connection holds instead of buffers (shared; the first write to it allocates).
    static let noBuffer = ByteBuffer()
    /// A connection quiet this long gives its (empty) buffers back, so that thousands of idle
    /// connections hold no buffer memory; busy ones keep theirs and pay nothing per request.
    static let bufferReleaseMilliseconds: Int64 = 1000
    /// The tenancy generation the last sweep checked the connections against.
    private var tenancyGeneration = 0

    let index: Int
    let listenFDs: [Int32]
    let tlsListenFDs: Set<Int32>
    let certificates: TLSCertificates?
    /// `-o ssl_cert_auth`.
    let certificateAuthentication: Bool
    /// TLS records are read here, then decrypted into the connection's input.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    let engine: Engine
    let logger: Logger
    let stopping: StopFlag
    let deadlineLimits: ConnectionDeadlines.Limits
    let gate: ConnectionGate
    let onShutdown: @Sendable () -> Void
    private var epfd: Int32 = -1
    /// Written by `wake()` so that a stop does not wait for epoll_wait's timeout.
    private var wakeFD: Int32 = -1
    private var connections: [Connection?] = []
    private var open = 0
    private let allocator = ByteBufferAllocator()
    private var lastSweep: Int64 = 0

    init(
        index: Int, listenFDs: [Int32], tlsListenFDs: Set<Int32>, certificates: TLSCertificates?, engine: Engine,
        logger: Logger, stopping: StopFlag, deadlines: ConnectionDeadlines.Limits, gate: ConnectionGate,
        onShutdown: @escaping @Sendable () -> Void
    ) {
        self.tlsListenFDs = tlsListenFDs
        self.certificates = certificates
        self.certificateAuthentication = certificates?.options.certificateAuthentication ?? false
        self.deadlineLimits = deadlines
        self.gate = gate
        self.index = index
        self.listenFDs = listenFDs
        self.engine = engine
        self.logger = logger
        self.stopping = stopping
        self.onShutdown = onShutdown
    }

    deinit { scratch.deallocate() }

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
            var event = epoll_event(events: EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue, data: epoll_data_t(u64: UInt64(UInt32(bitPattern: fd)) | (1 << 32)))
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
            for i in 0..<Int(count) {
                let event = events[i]
                let data = event.data.u64
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                if data >> 32 == 1 {
                    acceptAll(fd)
                    continue
                }
                if data >> 32 == 2 { continue }  // woken to notice a stop
                guard Int(fd) < connections.count, let connection = connections[Int(fd)] else { continue }
                if event.events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0, event.events & EPOLLIN.rawValue == 0 {
                    closeConnection(connection, reason: .error)
                    continue
                }
                if connection.blocked {
                    if event.events & EPOLLOUT.rawValue != 0 { resume(connection) }
                } else if event.events & EPOLLIN.rawValue != 0 {
                    readable(connection)
                }
            }
            sweep()
        }
    }

    /// On stop: nothing new is served, but replies already computed (and requests already buffered) are
    /// written out, for up to `drainMilliseconds`, so that no client is cut off mid-reply. A connection
    /// whose output is out is half-closed (FIN after the last reply) and what the client still sends is
    /// read and dropped until it closes too: closing a socket with unread input would send a reset,
    /// which makes the client's kernel discard replies it has received but not yet read.
    static let drainMilliseconds: Int64 = 10_000

    private func drain(events: UnsafeMutablePointer<epoll_event>, capacity: Int) {
        // Level-triggered listeners and the wake-up would otherwise wake every wait at once.
        epoll_ctl(epfd, EPOLL_CTL_DEL, wakeFD, nil)
        for fd in listenFDs { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil) }
        var halfClosed = Set<Int32>()
        func halfCloseIfDone(_ connection: Connection) {
            guard !connection.blocked, connections[Int(connection.fd)] === connection, !halfClosed.contains(connection.fd) else { return }
            // TLS: close_notify after the last reply says the end is not a truncation.
            if let tls = connection.tls, !connection.closeNotified {
                connection.closeNotified = true
                tls.closeNotify()
                guard flush(connection) else { return }  // not drained yet (resumed below) or closed
            }
            halfClosed.insert(connection.fd)
            shutdown(connection.fd, Int32(SHUT_WR))
        }
        for case let connection? in connections { halfCloseIfDone(connection) }
        var scratch = [UInt8](repeating: 0, count: 65_536)
        let deadline = Self.now() + Self.drainMilliseconds
        while connections.contains(where: { $0 != nil }), Self.now() < deadline {
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
                if connection.blocked {
                    if events[i].events & EPOLLOUT.rawValue != 0 { resume(connection) }
                    if connections[Int(fd)] === connection { halfCloseIfDone(connection) }
                } else if halfClosed.contains(fd) {
                    // Drop what the client still sends; its close (0) or an error ends the connection.
                    while true {
                        let read = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                        if read > 0 { continue }
                        if read < 0, errno == EAGAIN || errno == EINTR { break }
                        closeConnection(connection, reason: .shutdown)
                        break
                    }
                }
            }
        }
    }

    // MARK: accept

    private func acceptAll(_ listenFD: Int32) {
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
                ConnectionGate.tooManyConnectionsReply.withUTF8Buffer { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
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
                fd: fd, session: engine.makeSession(address: address), tls: tls,
                deadlines: ConnectionDeadlines(limits: deadlineLimits, now: Self.now(), tls: tls != nil), peer: peer,
                address: address)
            if Int(fd) >= connections.count {
                connections.append(contentsOf: repeatElement(nil, count: Int(fd) + 1 - connections.count + 64))
            }
            connections[Int(fd)] = connection
            open += 1
            var event = epoll_event(events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, data: epoll_data_t(u64: UInt64(UInt32(bitPattern: fd))))
            if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0 {
                closeConnection(connection, reason: .error)
                continue
            }
        }
    }

    // MARK: reading and writing

    private func readable(_ connection: Connection) {
        var received = 0
        if connection.tls != nil {
            received = read(connection.fd, scratch.baseAddress, scratch.count)
        } else {
            let wanted = connection.input.readableBytes == 0 ? Self.readChunk : max(Self.readChunk, connection.input.readableBytes)
            _ = connection.input.writeWithUnsafeMutableBytes(minimumWritableBytes: min(wanted, 1 << 20)) { target in
                received = read(connection.fd, target.baseAddress, target.count)
                return max(received, 0)
            }
        }
        if received == 0 || (received < 0 && errno != EAGAIN && errno != EINTR) {
            closeConnection(connection, reason: received == 0 ? .normal : .error)
            return
        }
        guard received > 0 else { return }
        let now = Self.now()
        connection.deadlines.received(at: now)
        var peerClosed = false
        if let tls = connection.tls {
            guard let status = decrypt(connection, tls, UnsafeRawBufferPointer(rebasing: scratch[0..<received])) else { return }
            peerClosed = status == .closed
        } else {
            connection.session.countReceived(received)
        }
        drive(connection)
        if peerClosed {
            closeConnection(connection, reason: .normal)
            return
        }
        if connections[Int(connection.fd)] === connection {
            connection.deadlines.request(incomplete: connection.session.hasPartialRequest(pendingInput: connection.input.readableBytes), at: now)
        }
    }

    /// TLS: ciphertext in, plaintext onto the connection's input; the handshake's end logs in a client
    /// certificate's user (`-o ssl_cert_auth`). Nil when the connection was closed (a TLS failure).
    private func decrypt(_ connection: Connection, _ tls: TLSStream, _ records: UnsafeRawBufferPointer) -> TLSStream.Status? {
        guard tls.receive(records) else {
            closeConnection(connection, reason: .error)
            return nil
        }
        // At most what one read brought in, decrypted: the input stays bounded as on plaintext.
        let (status, appended) = tls.decrypt(into: &connection.input, limit: .max)
        if connection.deadlines.handshaking, tls.handshakeComplete {
            connection.deadlines.handshakeCompleted()
            if certificateAuthentication { authenticateWithCertificate(connection, tls) }
        }
        if case .failed(let why) = status {
            logger.debug("TLS error", metadata: ["peer": "\(connection.peer)", "error": "\(why)"])
            // The alert OpenSSL queued tells the client why (once, without waiting for the socket).
            tls.takeCiphertext(into: &connection.cipher)
            _ = Self.send(connection.fd, &connection.cipher)
            closeConnection(connection, reason: .tlsError)
            return nil
        }
        connection.session.countReceived(appended)
        return status
    }

    /// `-o ssl_cert_auth`: the handshake verified the client's certificate; its subject common name logs in
    /// the user of that name, if the credentials hold one (otherwise SASL or ASCII auth is still needed).
    /// A subject with several common names names no one: a CA that signs a requester's chosen subject
    /// ("CN=me, CN=admin") must not let it pick the most powerful of them. Subject alternative names are
    /// not read.
    private func authenticateWithCertificate(_ connection: Connection, _ tls: TLSStream) {
        guard let names = tls.peerCommonNames(), names.count > 0 else { return }
        guard names.count == 1, let name = names.first else {
            logger.warning("client certificate with \(names.count) common names: not used to log in", metadata: ["peer": "\(connection.peer)"])
            engine.securityLog.record(.authentication(.failed(user: nil, peer: connection.host, mechanism: "tls-client-certificate")))
            return
        }
        _ = connection.session.authenticateWithCertificate(user: name)
    }

    /// Runs the session over buffered input, writing replies; pauses reading when they do not drain.
    private func drive(_ connection: Connection) {
        while true {
            let action = connection.session.process(&connection.input, into: &connection.output)
            switch action {
            case .needInput:
                if connection.input.readableBytes == 0 {
                    connection.input.clear()
                } else if connection.input.readerIndex > 64 * 1024 {
                    connection.input.discardReadBytes()
                }
                guard flush(connection) else { return }
                connection.session.publishCounters()
                return
            case .outputFull:
                guard flush(connection) else { return }
            case .close:
                _ = flush(connection)
                closeConnection(connection, reason: .normal)
                return
            case .shutdown:
                _ = flush(connection)
                closeConnection(connection, reason: .shutdown)
                logger.notice("shutdown requested by a client")
                onShutdown()
                return
            }
        }
    }

    /// Writes what is pending (on TLS, encrypted first: one batch of records per read cycle). False when
    /// the socket is full (reading is then paused) or dead.
    private func flush(_ connection: Connection) -> Bool {
        let result: SendResult
        if let tls = connection.tls {
            if connection.output.readableBytes > 0 {
                connection.session.countSent(connection.output.readableBytes)
                guard tls.encrypt(connection.output) else {
                    closeConnection(connection, reason: .tlsError)
                    return false
                }
                connection.output.clear()
            }
            tls.takeCiphertext(into: &connection.cipher)
            result = Self.send(connection.fd, &connection.cipher).result
            if result == .done { connection.cipher.clear() }
        } else {
            let sent = Self.send(connection.fd, &connection.output)
            connection.session.countSent(sent.written)
            result = sent.result
            if result == .done { connection.output.clear() }
        }
        switch result {
        case .done:
            return true
        case .wouldBlock:
            pause(connection)
            return false
        case .failed:
            closeConnection(connection, reason: .error)
            return false
        }
    }

    enum SendResult { case done, wouldBlock, failed }

    /// Sends `buffer`'s readable bytes until they are out or the socket is full.
    private static func send(_ fd: Int32, _ buffer: inout ByteBuffer) -> (result: SendResult, written: Int) {
        var total = 0
        while buffer.readableBytes > 0 {
            // send with MSG_NOSIGNAL: a peer that has gone away must not raise SIGPIPE in the server.
            let written = buffer.withUnsafeReadableBytes { bytes in
                Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                total += written
                buffer.moveReaderIndex(forwardBy: written)
                continue
            }
            if written < 0, errno == EINTR { continue }
            return (written < 0 && errno == EAGAIN ? .wouldBlock : .failed, total)
        }
        return (.done, total)
    }

    private func pause(_ connection: Connection) {
        guard !connection.blocked else { return }
        // The memory held is the buffer's capacity (a value is copied in whole), not just what is left to send.
        let held = connection.pending.capacity
        guard engine.outputBudget.charge(held) else {
            closeConnection(connection, reason: .outputBudget)
            return
        }
        connection.charged = held
        connection.blocked = true
        connection.deadlines.stalled(at: Self.now())
        // Writability only: a half-closed peer (EPOLLRDHUP) would otherwise wake this loop forever.
        var event = epoll_event(events: EPOLLOUT.rawValue, data: epoll_data_t(u64: UInt64(UInt32(bitPattern: connection.fd))))
        epoll_ctl(epfd, EPOLL_CTL_MOD, connection.fd, &event)
    }

    private func resume(_ connection: Connection) {
        guard flush(connection) else { return }
        connection.blocked = false
        connection.deadlines.drained()
        engine.outputBudget.release(connection.charged)
        connection.charged = 0
        var event = epoll_event(events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, data: epoll_data_t(u64: UInt64(UInt32(bitPattern: connection.fd))))
        epoll_ctl(epfd, EPOLL_CTL_MOD, connection.fd, &event)
        // Requests that arrived while paused are still buffered.
        if connections[Int(connection.fd)] != nil { drive(connection) }
    }

    private func closeConnection(_ connection: Connection, reason: CloseReason) {
        guard Int(connection.fd) < connections.count, connections[Int(connection.fd)] === connection else { return }
        connections[Int(connection.fd)] = nil
        open -= 1
        engine.outputBudget.release(connection.charged)
        connection.charged = 0
        epoll_ctl(epfd, EPOLL_CTL_DEL, connection.fd, nil)
        close(connection.fd)
        connection.session.publishCounters()
        gate.leave(peer: connection.address)
        if reason == .tlsError || reason == .tlsHandshakeTimeout { engine.connections.tlsHandshakeErrors.add(1, ordering: .relaxed) }
        logger.info("connection closed", metadata: ["peer": "\(connection.peer)", "reason": "\(reason.rawValue)"])
        if reason.isLimit { engine.securityLog.record(.connectionClosed(peer: connection.host, reason: reason.rawValue)) }
    }

    /// Every quarter second: close connections idle past `-o idle_timeout` or not authenticated within
    /// `-o auth_timeout`; once a second, reclaim
    /// expired items (first thread only).
    private func sweep() {
        let now = Self.now()
        guard now - lastSweep >= 250 else { return }
        if index == 0, now / 1000 != lastSweep / 1000 { engine.reclaimExpired(perShardLimit: 2000) }
        lastSweep = now
        // A reload removed users or moved them to another bucket: their connections go, idle or not.
        let generation = engine.tenancy.generation.load(ordering: .acquiring)
        if generation != tenancyGeneration {
            tenancyGeneration = generation
            for case let connection? in connections where !connection.session.revalidate() {
                closeConnection(connection, reason: .accessRevoked)
            }
        }
        var released = 0
        for case let connection? in connections
        where now - connection.deadlines.lastReceived >= Self.bufferReleaseMilliseconds && !connection.blocked
            && connection.input.readableBytes == 0 && connection.output.readableBytes == 0 && connection.cipher.readableBytes == 0
            && connection.input.capacity + connection.output.capacity + connection.cipher.capacity > 0 {
            connection.input = Self.noBuffer
            connection.output = Self.noBuffer
            connection.cipher = Self.noBuffer
            released += 1
        }
        // Freed buffers sit in malloc's heap; hand a large batch back to the system.
        if released >= 256 { moat_malloc_trim() }
        guard deadlineLimits.any else { return }
        for case let connection? in connections {
            if let reason = connection.deadlines.expired(at: now, isAuthenticated: connection.session.isAuthenticated) {
                closeConnection(connection, reason: reason)
            }
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
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0 else { return "unknown" }
        let h = String(nulTerminated: host)
        let s = String(nulTerminated: service)
        return family == AF_INET6 ? "[\(h)]:\(s)" : "\(h):\(s)"
    }
}
#endif
