import Logging
import MoatConfig
import MoatEngine
import MoatSnapshot
import MoatStorage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `-e PATH`: the cache saved when the server stops and loaded when it starts, so that a restart,
/// an upgrade or a reboot does not send the whole load to the database behind the cache. Every
/// bucket's items keep key, value, flags, CAS, expiry and recency; nothing older than
/// `-o restore_max_age` comes back (deletes made while the server was down are not in it), and a
/// file that is truncated, corrupt, forged or under another key is moved aside, whole.
package final class WarmRestart: Sendable {
    let options: SnapshotOptions
    let key: SnapshotKey?
    let engine: Engine
    let logger: Logger
    /// One save at a time (SIGUSR2 may arrive during the stop's): both write the same temporary file.
    private let saving = Mutex(())

    init(options: SnapshotOptions, key: SnapshotKey?, engine: Engine, logger: Logger) {
        self.options = options
        self.key = key
        self.engine = engine
        self.logger = logger
    }

    /// Loads the snapshot into the buckets; called once, after root is gone and before connections are
    /// accepted (clients that connect meanwhile wait in the listen backlog).
    func restore() {
        let started = monotonicSeconds()
        let now = engine.cache.now()
        let buckets = Dictionary(engine.tenancy.buckets.map { ($0.name, $0.cache) }) { first, _ in first }
        do {
            guard
                let summary = try SnapshotReader.restore(
                    from: options.path, key: key, maxAge: Int64(options.maxAge), now: now, bucket: { buckets[$0] })
            else {
                logger.notice("warm restart: no snapshot at \(options.path); starting empty")
                return
            }
            var message =
                """
                warm restart: restored \(summary.restored) items from \(options.path) (written \
                \(max(0, now - summary.created)) s ago, \(summary.bytes) bytes) in \(seconds(since: started))
                """
            var left: [String] = []
            if summary.expired > 0 { left.append("\(summary.expired) expired while down") }
            if summary.dropped > 0 { left.append("\(summary.dropped) dropped: over the memory limit (-m)") }
            if summary.tooLarge > 0 { left.append("\(summary.tooLarge) over the item size limit (-I)") }
            if summary.unknownBucket > 0 { left.append("\(summary.unknownBucket) in buckets no longer configured") }
            if summary.duplicates > 0 { left.append("\(summary.duplicates) repeating a key restored before") }
            if !left.isEmpty { message += "; not restored: " + left.joined(separator: ", ") }
            logger.notice("\(message)")
        } catch {
            refused(error, now: now)
        }
    }

    private func refused(_ error: SnapshotError, now: Int64) {
        var message = "warm restart: \(options.path) refused, starting empty: \(error)"
        switch error {
        case .tooOld, .io:
            // Not damaged: the next stop overwrites it.
            break
        default:
            if let aside = SnapshotFile.moveAside(options.path, now: now) { message += " (moved aside to \(aside))" }
        }
        logger.error("\(message)")
        let critical: Bool
        switch error {
        case .tampered, .notEncrypted: critical = true
        default: critical = false
        }
        engine.securityLog.record(.snapshotRefused(path: options.path, reason: error.description, critical: critical))
    }

    /// Saves every bucket's items; `reason` says when (for the log). False when the file could not be
    /// written (the previous snapshot, if any, stays).
    @discardableResult
    func save(reason: String) -> Bool {
        saving.withLock { _ in write(reason: reason) }
    }

    private func write(reason: String) -> Bool {
        let started = monotonicSeconds()
        let buckets = engine.tenancy.buckets.map { (name: $0.name, cache: $0.cache) }
        do {
            let summary = try SnapshotWriter.write(buckets, to: options.path, key: key, now: engine.cache.now())
            logger.notice(
                """
                warm restart: saved \(summary.items) items (\(summary.bytes) bytes\(key == nil ? "" : ", encrypted")) \
                to \(options.path) in \(seconds(since: started)) (\(reason))
                """
            )
            return true
        } catch {
            logger.error("warm restart: cannot save to \(options.path) (\(reason)): \(error)")
            return false
        }
    }

    private func seconds(since start: Double) -> String {
        let elapsed = monotonicSeconds() - start
        return "\(Double(Int(elapsed * 1000)) / 1000) s"
    }
}
