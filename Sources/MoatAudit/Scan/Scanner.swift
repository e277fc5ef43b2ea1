import Foundation

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
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var results: [ServiceObservation?]
            var next = 0
            var done = 0
            var services = 0
            init(count: Int) { results = Array(repeating: nil, count: count) }
        }
        let shared = Shared(count: endpoints.count)
        let lock = shared.lock
        let workers = max(1, min(settings.concurrency, endpoints.count))
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                while true {
                    lock.lock()
                    let index = shared.next
                    shared.next += 1
                    lock.unlock()
                    guard index < endpoints.count else { return }
                    let endpoint = endpoints[index]
                    let prober = EndpointProber(
                        timeout: settings.timeout, intrusive: settings.intrusive, probeTLS: settings.probeTLS,
                        udpPort: settings.udp ? (settings.udpPort ?? endpoint.port) : nil, tls: tls, probeKey: probeKey)
                    let observation = prober.observe(endpoint)
                    lock.lock()
                    shared.results[index] = observation
                    shared.done += 1
                    if observation.isMemcached { shared.services += 1 }
                    let (doneNow, servicesNow) = (shared.done, shared.services)
                    lock.unlock()
                    progress(doneNow, servicesNow)
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        return shared.results.map { $0! }
    }
}

/// A one-line progress bar on a terminal: `[=====     ] 120/256 endpoints, 2 services`.
package struct ProgressBar: Sendable {
    package static func render(done: Int, total: Int, services: Int, width: Int = 30) -> String {
        let filled = total == 0 ? width : min(width, done * width / total)
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        return "\r[\(bar)] \(done)/\(total) endpoints, \(services) service\(services == 1 ? "" : "s")"
    }
}
