import MoatEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the security log's JSON lines go: standard error (the default), a file opened before root is
/// dropped (append, created 0600), or nowhere. One write per event under a lock, so lines never interleave.
/// Lines are rationed per second so that a client looping refused commands cannot fill the disk, and so
/// that a flood of routine events cannot hide the ones that matter: info and notice events (refused
/// connections and datagrams, which any reachable source can cause) share 1,000 lines and are then
/// sampled (one in 100); each warning or critical event kind (`canary_read`, `auth_failure`,
/// `key_dump_attempt`, ...) has 250 lines of its own. The budget is checked before a line is formatted.
/// Lines dropped are reported by one `security_log_dropped` line (`stats` counts every event).
package final class SecurityLogSink: Sendable {
    private struct Budget {
        var second: Int = 0
        var routine = 0
        /// Lines written this second per warning/critical event name.
        var important: [String: Int] = [:]
        var dropped = 0
        var droppedImportant = 0
    }

    private let fd: Int32
    private let lock = Mutex(Budget())
    static let routineLinesPerSecond = 1000
    static let routineSampling = 100
    static let importantLinesPerKind = 250

    /// `destination`: "stderr", "off", or a file path.
    package init(destination: String) throws {
        switch destination {
        case "stderr": fd = 2
        case "off": fd = -1
        default:
            let opened = open(destination, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard opened >= 0 else {
                throw ListenError(
                    description: "-o security_log=\(destination): cannot open: \(String(cString: strerror(errno)))")
            }
            fd = opened
        }
    }

    /// Whether this event's line is written, and the `security_log_dropped` line owed for the last second.
    private func admit(_ event: SecurityLog.Event) -> (Bool, dropped: Int, droppedImportant: Int) {
        let (name, severity) = SecurityLog.kind(event)
        return lock.withLock { budget in
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let second = Int(now.tv_sec)
            var owed = (0, 0)
            if second != budget.second {
                owed = (budget.dropped, budget.droppedImportant)
                budget = Budget(second: second)
            }
            if severity >= .warning {
                let used = budget.important[name, default: 0]
                guard used < Self.importantLinesPerKind else {
                    budget.dropped += 1
                    budget.droppedImportant += 1
                    return (false, owed.0, owed.1)
                }
                budget.important[name] = used + 1
                return (true, owed.0, owed.1)
            }
            budget.routine += 1
            let admitted =
                budget.routine <= Self.routineLinesPerSecond
                || (budget.routine - Self.routineLinesPerSecond) % Self.routineSampling == 0
            if !admitted { budget.dropped += 1 }
            return (admitted, owed.0, owed.1)
        }
    }

    package func write(_ event: SecurityLog.Event) {
        guard fd >= 0 else { return }
        let (admitted, dropped, droppedImportant) = admit(event)
        guard admitted || dropped > 0 else { return }
        let timestamp = JSONLine.timestamp()
        var line = ""
        if dropped > 0 {
            var notice = JSONLine()
            notice.append("ts", .string(timestamp))
            notice.append("event", .string("security_log_dropped"))
            notice.append("severity", .string("warning"))
            notice.append("lines", .number(Double(dropped)))
            notice.append("important", .number(Double(droppedImportant)))
            line = notice.line + "\n"
        }
        if admitted { line += SecurityLog.jsonLine(event, timestamp: timestamp) + "\n" }
        var bytes = Array(line.utf8)
        lock.withLock { _ in
            var offset = 0
            bytes.withUnsafeMutableBytes { buffer in
                while offset < buffer.count {
                    let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0, errno == EINTR {
                        continue
                    } else {
                        return  // a full disk must not stop the server; the counters in `stats` still count
                    }
                }
            }
        }
    }
}
