import MoatEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the security log's JSON lines go: standard error (the default), a file opened before root is
/// dropped (append, created 0600), or nowhere. One write per event under a lock, so lines never interleave.
public final class SecurityLogSink: Sendable {
    private let fd: Int32
    private let lock = Mutex(())

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
        var bytes = Array((SecurityLog.jsonLine(event, timestamp: SecurityLog.timestamp()) + "\n").utf8)
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
