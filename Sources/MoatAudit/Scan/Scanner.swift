import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `moat audit`'s settings.
package struct AuditSettings: Sendable {
    /// Seconds each connect and each reply may take.
    package var timeout = 2.0
    /// Endpoints probed at once.
    package var concurrency = 32
    /// Also set (then delete) a probe key to learn whether unauthenticated writes work.
    package var intrusive = false
    package var probeTLS = true
    /// Probe UDP too; on this port, or on each endpoint's own port when nil.
    package var udp = false
    package var udpPort: Int?

    package init() {}
}

/// Probes endpoints with a bounded number of threads; each endpoint's probes run one after another.
package final class AuditScanner: @unchecked Sendable {
    let settings: AuditSettings
    let tls: TLSProber?
    let probeKey: String

    package init(settings: AuditSettings) throws {
        self.settings = settings
        tls = settings.probeTLS ? try TLSProber() : nil
        probeKey = "moat-audit-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    /// Observations in the order of `endpoints`; `progress(done, services)` is called as they finish.
    package func scan(_ endpoints: [Endpoint], progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in })
        -> [ServiceObservation]
    {
        struct Progress {
            var results: [ServiceObservation?]
            var next = 0
            var done = 0
            var services = 0
        }
        final class Shared: Sendable {
            let state: Mutex<Progress>
            init(count: Int) { state = Mutex(Progress(results: Array(repeating: nil, count: count))) }
        }
        let shared = Shared(count: endpoints.count)
        let workers = max(1, min(settings.concurrency, endpoints.count))
        let work: @Sendable () -> Void = { [self] in
            while true {
                let index = shared.state.withLock { state in
                    defer { state.next += 1 }
                    return state.next
                }
                guard index < endpoints.count else { return }
                let endpoint = endpoints[index]
                let prober = EndpointProber(
                    timeout: settings.timeout, intrusive: settings.intrusive, probeTLS: settings.probeTLS,
                    udpPort: settings.udp ? (settings.udpPort ?? endpoint.port) : nil, tls: tls, probeKey: probeKey)
                let observation = prober.observe(endpoint)
                let (doneNow, servicesNow) = shared.state.withLock { state in
                    state.results[index] = observation
                    state.done += 1
                    if observation.isMemcached { state.services += 1 }
                    return (state.done, state.services)
                }
                progress(doneNow, servicesNow)
            }
        }
        var threads: [pthread_t] = []
        for _ in 0..<workers {
            guard let thread = startThread(stackSize: 1 << 20, work) else { break }
            threads.append(thread)
        }
        // No thread could be started: the endpoints are probed here, one at a time.
        if threads.isEmpty { work() }
        for thread in threads { pthread_join(thread, nil) }
        return shared.state.withLock { $0.results.map { $0! } }
    }
}

/// Starts `body` on a joinable thread with a stack of `stackSize` bytes; nil when none can be started.
private func startThread(stackSize: Int, _ body: @escaping @Sendable () -> Void) -> pthread_t? {
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, stackSize)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Body(body))
    let created = pthread_create(
        &thread, &attributes,
        { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
    guard created == 0 else {
        box.release()
        return nil
    }
    return thread
}

/// A one-line progress bar on a terminal: `[=====     ] 120/256 endpoints, 2 services`.
package struct ProgressBar: Sendable {
    package static func render(done: Int, total: Int, services: Int, width: Int = 30) -> String {
        let filled = total == 0 ? width : min(width, done * width / total)
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        return "\r[\(bar)] \(done)/\(total) endpoints, \(services) service\(services == 1 ? "" : "s")"
    }
}
