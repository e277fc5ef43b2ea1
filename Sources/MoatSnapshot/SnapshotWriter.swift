import Crypto
import MoatStorage

#if canImport(Glibc)
import Glibc
#endif

/// What a snapshot holds.
public struct SnapshotSummary: Sendable, Equatable {
    public var items = 0
    /// The file's size.
    public var bytes = 0
}

/// Writes snapshots (see `SnapshotFormat`).
public enum SnapshotWriter {
    /// Writes every bucket's items to `path`, atomically: into `PATH.tmp` (created with mode 0600, never
    /// through a symlink), flushed to disk, renamed over `path`, the rename flushed. A crash midway
    /// leaves the previous snapshot, or none, never a partial one. Each bucket's cache is locked while
    /// its items are written (at a stop nothing waits for it; on demand, its clients do).
    public static func write(
        _ buckets: [(name: String, cache: Cache)], to path: String, key: SnapshotKey?, now: Int64
    ) throws(SnapshotError) -> SnapshotSummary {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SnapshotFile.failure("cannot create \(temporary)") }
        var done = false
        defer {
            if !done {
                close(fd)
                unlink(temporary)
            }
        }
        var nonce = [UInt8](repeating: 0, count: 12)
        if key != nil {
            var generator = SystemRandomNumberGenerator()
            for index in nonce.indices { nonce[index] = generator.next() }
        }
        let header = SnapshotHeader(encrypted: key != nil, created: now, nonce: nonce).encoded()
        try SnapshotFile.writeAll(fd, header, path: temporary)
        let output = ChunkWriter(fd: fd, path: temporary, seal: ChunkSeal(header: header, key: key?.key))
        for bucket in buckets {
            output.bucket(
                name: bucket.name, pendingFlush: bucket.cache.pendingFlush, items: bucket.cache.counters().currentItems)
        }
        var items = 0
        for (index, bucket) in buckets.enumerated() {
            bucket.cache.forEachItemMostRecentFirst { item in
                output.item(item, bucket: UInt16(index))
                items += 1
                return output.error == nil
            }
        }
        output.end(items: items)
        try output.finish()
        guard fsync(fd) == 0 else { throw SnapshotFile.failure("cannot flush \(temporary) to disk") }
        guard close(fd) == 0 else {
            done = true
            unlink(temporary)
            throw SnapshotFile.failure("cannot close \(temporary)")
        }
        done = true
        guard rename(temporary, path) == 0 else {
            let error = SnapshotFile.failure("cannot rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        SnapshotFile.syncDirectory(of: path)
        return SnapshotSummary(items: items, bytes: header.count + output.written)
    }
}

extension SnapshotWriter {
    /// An unencrypted snapshot whose chunks carry `chunks` as they are, with the right checksums: for
    /// tests and the fuzzer, which hand the record parser records of their own making.
    public static func plainSnapshot(chunks: [[UInt8]], created: Int64) -> [UInt8] {
        let header = SnapshotHeader(encrypted: false, created: created, nonce: Array(repeating: 0, count: 12)).encoded()
        let seal = ChunkSeal(header: header, key: nil)
        var bytes = header
        for (index, chunk) in chunks.enumerated() {
            let final = index == chunks.count - 1
            // Sealing without a key is a digest and cannot fail.
            guard
                let (payload, tag) = try? chunk.withUnsafeBytes({
                    try seal.seal($0, index: UInt64(index), final: final)
                })
            else { continue }
            bytes.appendBigEndian(UInt32(payload.count))
            bytes.append(final ? 1 : 0)
            bytes += payload + tag
        }
        return bytes
    }
}

/// The record stream, cut into sealed chunks as it fills (a record may span chunks), so that no more
/// than one chunk of the cache is ever copied.
final class ChunkWriter {
    let fd: Int32
    let path: String
    let seal: ChunkSeal
    private var buffer: [UInt8] = []
    private var index: UInt64 = 0
    private(set) var written = 0
    private(set) var error: SnapshotError?

    init(fd: Int32, path: String, seal: ChunkSeal) {
        self.fd = fd
        self.path = path
        self.seal = seal
        buffer.reserveCapacity(SnapshotFormat.chunkSize)
    }

    func bucket(name: String, pendingFlush: Int64, items: Int) {
        var record: [UInt8] = [SnapshotFormat.bucketRecord, UInt8(truncatingIfNeeded: name.utf8.count)]
        record += name.utf8.prefix(255)
        record.appendBigEndian(UInt64(bitPattern: pendingFlush))
        record.appendBigEndian(UInt64(max(0, items)))
        record.withUnsafeBytes { append($0) }
    }

    func item(_ item: SnapshotItem, bucket: UInt16) {
        withUnsafeTemporaryAllocation(byteCount: SnapshotFormat.itemHeaderSize, alignment: 1) { header in
            var offset = 0
            func put<T: FixedWidthInteger>(_ value: T) {
                header.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
                offset += MemoryLayout<T>.size
            }
            put(SnapshotFormat.itemRecord)
            put(bucket)
            put(UInt8(item.key.count))
            put(UInt32(item.value.count))
            put(item.flags)
            put(item.cas)
            put(UInt64(bitPattern: item.expiresAt))
            put(UInt64(bitPattern: item.lastAccess))
            put((item.fetched ? SnapshotFormat.fetchedBit : 0) | (item.stale ? SnapshotFormat.staleBit : 0))
            append(UnsafeRawBufferPointer(header))
        }
        append(item.key)
        append(item.value)
    }

    func end(items: Int) {
        var record: [UInt8] = [SnapshotFormat.endRecord]
        record.appendBigEndian(UInt64(items))
        record.withUnsafeBytes { append($0) }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty, error == nil {
            let count = min(SnapshotFormat.chunkSize - buffer.count, rest.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[..<count]))
            rest = UnsafeRawBufferPointer(rebasing: rest[count...])
            if buffer.count == SnapshotFormat.chunkSize { emit(final: false) }
        }
    }

    private func emit(final: Bool) {
        guard error == nil else { return }
        do {
            let (payload, tag) = try buffer.withUnsafeBytes { try seal.seal($0, index: index, final: final) }
            var prefix: [UInt8] = []
            prefix.appendBigEndian(UInt32(payload.count))
            prefix.append(final ? 1 : 0)
            for part in [prefix, payload, tag] {
                try SnapshotFile.writeAll(fd, part, path: path)
                written += part.count
            }
        } catch let failure as SnapshotError {
            error = failure
        } catch {
            self.error = .io("cannot seal chunk \(index): \(error)")
        }
        buffer.removeAll(keepingCapacity: true)
        index += 1
    }

    /// Writes the last chunk; throws the first error met on the way.
    func finish() throws(SnapshotError) {
        emit(final: true)
        if let error { throw error }
    }
}
