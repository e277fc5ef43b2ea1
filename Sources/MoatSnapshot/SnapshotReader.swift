import MoatStorage

#if canImport(Glibc)
import Glibc
#endif

/// What a restore did.
public struct RestoreSummary: Sendable, Equatable {
    /// When the snapshot was written (Unix seconds).
    public var created: Int64 = 0
    public var restored = 0
    /// Their time ran out while the server was down.
    public var expired = 0
    /// No room left under the memory limit (the more recent items were restored).
    public var dropped = 0
    /// Over the item size limit now (`-I` was lowered).
    public var tooLarge = 0
    /// In a bucket the configuration no longer has.
    public var unknownBucket = 0
    public var duplicates = 0
    /// The file's size.
    public var bytes = 0
}

/// Reads snapshots back into the caches (see `SnapshotFormat`).
public enum SnapshotReader {
    /// Restores `path` into the buckets `bucket` names (nil: a bucket the configuration no longer has).
    /// Returns nil when there is no file. Throws, having restored nothing (the caches are flushed), when
    /// the file is older than `maxAge` seconds, truncated, corrupt, forged or under another key.
    public static func restore(
        from path: String, key: SnapshotKey?, maxAge: Int64, now: Int64, bucket: (String) -> Cache?
    ) throws(SnapshotError) -> RestoreSummary? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SnapshotFile.failure("cannot open \(path)")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw .io("\(path) is not a regular file")
        }
        return try restore(
            read: { (count) throws(SnapshotError) in try SnapshotFile.read(fd, count: count, path: path) }, key: key,
            maxAge: maxAge, now: now, bucket: bucket)
    }

    /// The same from bytes in memory (tests, the fuzzer).
    public static func restore(
        bytes: [UInt8], key: SnapshotKey?, maxAge: Int64, now: Int64, bucket: (String) -> Cache?
    ) throws(SnapshotError) -> RestoreSummary {
        var offset = 0
        return try restore(
            read: { (count) throws(SnapshotError) in
                guard offset < bytes.count else { return nil }
                guard bytes.count - offset >= count else { throw .truncated }
                defer { offset += count }
                return Array(bytes[offset..<(offset + count)])
            }, key: key, maxAge: maxAge, now: now, bucket: bucket)
    }

    /// `read(count)`: exactly `count` bytes, nil at the end before the first, `truncated` among them.
    private static func restore(
        read: (Int) throws(SnapshotError) -> [UInt8]?, key: SnapshotKey?, maxAge: Int64, now: Int64,
        bucket: (String) -> Cache?
    ) throws(SnapshotError) -> RestoreSummary {
        guard let headerBytes = try read(SnapshotFormat.headerSize) else { throw .truncated }
        let header = try SnapshotHeader(decoding: headerBytes)
        if header.encrypted, key == nil { throw .encryptedWithoutKey }
        if !header.encrypted, key != nil { throw .notEncrypted }
        // A forged creation time must not overflow the arithmetic (the fuzzer's first find).
        let (age, overflow) = now.subtractingReportingOverflow(header.created)
        if overflow { throw .corrupt("a creation time out of range") }
        if age > maxAge { throw .tooOld(age: age, maxAge: maxAge) }

        let seal = ChunkSeal(header: headerBytes, key: key?.key)
        var records = RecordReader()
        records.summary.created = header.created
        records.summary.bytes = headerBytes.count
        do throws(SnapshotError) {
            var index: UInt64 = 0
            while true {
                guard let prefix = try read(5) else { throw SnapshotError.truncated }
                let length = Int(prefix.bigEndian(UInt32.self, at: 0))
                guard prefix[4] <= 1, length <= SnapshotFormat.chunkSize + SnapshotFormat.gcmTagSize else {
                    throw SnapshotError.corrupt("chunk \(index) declares \(length) bytes")
                }
                let final = prefix[4] == 1
                guard let sealed = try read(length + seal.tagSize) else { throw SnapshotError.truncated }
                let plaintext = try seal.open(
                    Array(sealed[..<length]), tag: Array(sealed[length...]), index: index, final: final)
                try records.feed(plaintext, bucket: bucket)
                records.summary.bytes += 5 + sealed.count
                index += 1
                if final { break }
            }
            guard try read(1) == nil else { throw SnapshotError.corrupt("bytes after the last chunk") }
            try records.finish()
        } catch {
            // Nothing of a refused file stays: before the listeners accept, the caches hold only it.
            for cache in records.caches { cache.flushAll() }
            throw error
        }
        for cache in records.caches { cache.raiseCAS(above: records.largestCAS) }
        return records.summary
    }
}

/// Parses the record stream as chunks arrive (a record may span chunks) and restores each item.
struct RecordReader {
    /// The file's buckets, by index: the cache each names here, nil when there is none.
    private var buckets: [Cache?] = []
    /// Every cache something was restored into (to flush on failure, to raise CAS uniques after).
    private(set) var caches: [Cache] = []
    private var pending: [UInt8] = []
    private var items: UInt64 = 0
    private var ended = false
    private(set) var largestCAS: UInt64 = 0
    var summary = RestoreSummary()

    /// Parses what `chunk` completes; `bucket` names the cache a bucket's items go into.
    mutating func feed(_ chunk: [UInt8], bucket: (String) -> Cache?) throws(SnapshotError) {
        if pending.isEmpty { pending = chunk } else { pending += chunk }
        var position = 0
        defer { pending.removeFirst(position) }
        while position < pending.count {
            guard !ended else { throw .corrupt("records after the end record") }
            let available = pending.count - position
            switch pending[position] {
            case SnapshotFormat.bucketRecord:
                guard available >= 2 else { return }
                let nameLength = Int(pending[position + 1])
                guard available >= 2 + nameLength + 16 else { return }
                guard buckets.count < SnapshotFormat.maxBuckets else { throw .corrupt("too many buckets") }
                let name = String(decoding: pending[(position + 2)..<(position + 2 + nameLength)], as: UTF8.self)
                let flush = Int64(bitPattern: pending.bigEndian(UInt64.self, at: position + 2 + nameLength))
                let items = pending.bigEndian(UInt64.self, at: position + 10 + nameLength)
                let cache = bucket(name)
                if let cache {
                    cache.restorePendingFlush(at: flush)
                    cache.reserve(items: Int(clamping: items))
                    if !caches.contains(where: { $0 === cache }) { caches.append(cache) }
                }
                buckets.append(cache)
                position += 2 + nameLength + 16
            case SnapshotFormat.itemRecord:
                guard available >= SnapshotFormat.itemHeaderSize else { return }
                let keyLength = Int(pending[position + 3])
                let valueLength = Int(pending.bigEndian(UInt32.self, at: position + 4))
                let bucketIndex = Int(pending.bigEndian(UInt16.self, at: position + 1))
                guard bucketIndex < buckets.count else {
                    throw .corrupt("an item in bucket \(bucketIndex) of \(buckets.count)")
                }
                guard keyLength > 0, valueLength <= SnapshotFormat.maxValueLength else {
                    throw .corrupt("an item of \(keyLength) key and \(valueLength) value bytes")
                }
                let size = SnapshotFormat.itemHeaderSize + keyLength + valueLength
                guard available >= size else { return }
                let state = pending[position + SnapshotFormat.itemHeaderSize - 1]
                guard state & ~(SnapshotFormat.fetchedBit | SnapshotFormat.staleBit) == 0 else {
                    throw .corrupt("unknown item state \(state)")
                }
                let flags = pending.bigEndian(UInt32.self, at: position + 8)
                let cas = pending.bigEndian(UInt64.self, at: position + 12)
                let expiresAt = Int64(bitPattern: pending.bigEndian(UInt64.self, at: position + 20))
                let lastAccess = Int64(bitPattern: pending.bigEndian(UInt64.self, at: position + 28))
                items += 1
                largestCAS = max(largestCAS, cas)
                if let cache = buckets[bucketIndex] {
                    let keyStart = position + SnapshotFormat.itemHeaderSize
                    let outcome = pending.withUnsafeBytes { bytes in
                        cache.restore(
                            SnapshotItem(
                                key: UnsafeRawBufferPointer(rebasing: bytes[keyStart..<(keyStart + keyLength)]),
                                value: UnsafeRawBufferPointer(
                                    rebasing: bytes[(keyStart + keyLength)..<(keyStart + keyLength + valueLength)]),
                                flags: flags, cas: cas, expiresAt: expiresAt, lastAccess: lastAccess,
                                fetched: state & SnapshotFormat.fetchedBit != 0,
                                stale: state & SnapshotFormat.staleBit != 0))
                    }
                    switch outcome {
                    case .restored: summary.restored += 1
                    case .expired: summary.expired += 1
                    case .noRoom: summary.dropped += 1
                    case .tooLarge: summary.tooLarge += 1
                    case .duplicate: summary.duplicates += 1
                    }
                } else {
                    summary.unknownBucket += 1
                }
                position += size
            case SnapshotFormat.endRecord:
                guard available >= 9 else { return }
                let count = pending.bigEndian(UInt64.self, at: position + 1)
                guard count == items else { throw .corrupt("\(items) items where the end record counts \(count)") }
                ended = true
                position += 9
            case let type:
                throw .corrupt("unknown record type \(type)")
            }
        }
    }

    /// The stream must have ended with its end record and nothing pending.
    func finish() throws(SnapshotError) {
        guard ended, pending.isEmpty else { throw .corrupt("no end record") }
    }
}
