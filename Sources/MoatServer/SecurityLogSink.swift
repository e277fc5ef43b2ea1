import MoatEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the security log's JSON lines go: standard error (the default), a file opened before root is
/// dropped (append, created 0600), or nowhere. One write per event under a lock, so lines never interleave.
/// At most `linesPerSecond` lines are written each second, so a client looping refused commands cannot
/// fill the disk; the lines dropped are reported by one `security_log_dropped` line (`stats` counts all).
public final class SecurityLogSink: Sendable {
    private struct Budget {
        var second: Int = 0
        var written = 0
        var dropped = 0
    }

    private let fd: Int32
    private let lock = Mutex(Budget())
    static let linesPerSecond = 1000

    /// `destination`: "stderr", "off", or a file path.
    public init(destination: String) throws {
        switch destination {
        case "stderr": fd = 2
        case "off": fd = -1
        default:
            let opened = open(destination, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard opened >= 0 else {
                throw ListenError(description: "-o security_log=\(destination): cannot open: \(String(cString: strerror(errno)))")
            }
            fd = opened
        }
    }

    public func write(_ event: SecurityLog.Event) {
        guard fd >= 0 else { return }
        let timestamp = SecurityLog.timestamp()
        var line = SecurityLog.jsonLine(event, timestamp: timestamp) + "\n"
        lock.withLock { budget in
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let second = Int(now.tv_sec)
            if second != budget.second {
                if budget.dropped > 0 {
                    line = "{\"ts\":\"\(timestamp)\",\"event\":\"security_log_dropped\",\"severity\":\"warning\",\"lines\":\(budget.dropped)}\n" + line
                }
                budget = Budget(second: second)
            }
            guard budget.written < Self.linesPerSecond else {
                budget.dropped += 1
                return
            }
            budget.written += 1
            var bytes = Array(line.utf8)
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
