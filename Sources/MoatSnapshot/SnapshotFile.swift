#if canImport(Glibc)
import Glibc
#endif

/// The file operations a snapshot needs, with errno's text in their errors.
package enum SnapshotFile {
    static func failure(_ what: String) -> SnapshotError {
        .io("\(what): \(String(cString: strerror(errno)))")
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(SnapshotError) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw failure("cannot write \(path)")
            }
            offset += written
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(SnapshotError) {
        let failure: SnapshotError? = bytes.withUnsafeBytes { raw in
            do throws(SnapshotError) {
                try writeAll(fd, raw, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Exactly `count` bytes; nil at the end of the file before the first of them; `truncated` when
    /// it ends among them.
    static func read(_ fd: Int32, count: Int, path: String) throws(SnapshotError) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count - offset) }
            if got < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read \(path)")
            }
            if got == 0 {
                if offset == 0 { return nil }
                throw .truncated
            }
            offset += got
        }
        return bytes
    }

    /// Makes a rename in the directory holding `path` durable.
    static func syncDirectory(of path: String) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Moves a snapshot that was refused aside, to `PATH.bad-<unix time>`, for inspection (and so that
    /// the next stop does not overwrite it). Returns the new path.
    package static func moveAside(_ path: String, now: Int64) -> String? {
        let aside = "\(path).bad-\(now)"
        return rename(path, aside) == 0 ? aside : nil
    }
}
