import Crypto

/// Moat's snapshot file (`-e PATH`): the cache's items, written when the server stops and read back
/// when it starts. Independent of `-m`, `-t` and the slab layout: a stream of records (buckets, then
/// items most recently used first, then an end record with the count), cut into chunks of 1 MiB, each
/// sealed on its own:
///
///     header   32 bytes, in the clear: "MOATSNAP", version (2), flags (2; bit 0: encrypted), created
///              (8, Unix seconds), nonce (12; random per file, zero when not encrypted)
///     chunk    length (4) | final (1) | payload (length) | tag (16 or 32)
///
/// With a restore key the payload is AES-256-GCM ciphertext and the tag GCM's, the nonce the file's
/// XOR the chunk's index, and the header, the index and the final byte are authenticated data: a
/// changed byte, a reordered, dropped or appended chunk, a changed creation time or another key are
/// all refused. Without one the payload is the records and the tag a SHA-256 of header, index, final
/// byte and payload, which finds corruption and truncation but not a forgery (anyone who can write
/// the file can compute it). Integers are big-endian.
enum SnapshotFormat {
    static let magic = Array("MOATSNAP".utf8)
    static let version: UInt16 = 1
    static let headerSize = 32
    static let encryptedFlag: UInt16 = 1
    /// Plaintext per chunk.
    static let chunkSize = 1 << 20
    static let gcmTagSize = 16
    static let digestSize = 32

    // Records. A bucket: name length (1), name, pending flush (8), the items it held when written (8).
    static let bucketRecord: UInt8 = 1
    static let itemRecord: UInt8 = 2
    static let endRecord: UInt8 = 3
    /// type, bucket (2), key length (1), value length (4), flags (4), CAS (8), expiry (8), last access
    /// (8), state bits (1); then key and value.
    static let itemHeaderSize = 1 + 2 + 1 + 4 + 4 + 8 + 8 + 8 + 1
    static let fetchedBit: UInt8 = 1
    static let staleBit: UInt8 = 2
    /// Buckets a file may name (a corrupt count must not make a reader build a huge table).
    static let maxBuckets = 1 << 16
    /// The largest value a record may carry (memcached's -I tops out at 1 GiB).
    static let maxValueLength = 1 << 30
}

/// The header, in the clear.
struct SnapshotHeader: Equatable {
    var encrypted: Bool
    /// Unix seconds when the snapshot was written.
    var created: Int64
    /// The per-file nonce of AES-GCM (zero without encryption).
    var nonce: [UInt8]

    func encoded() -> [UInt8] {
        var bytes = SnapshotFormat.magic
        bytes.appendBigEndian(SnapshotFormat.version)
        bytes.appendBigEndian(encrypted ? SnapshotFormat.encryptedFlag : 0)
        bytes.appendBigEndian(UInt64(bitPattern: created))
        bytes += nonce
        return bytes
    }

    /// Reads a header; throws `notASnapshot` or `unsupportedVersion`.
    init(decoding bytes: [UInt8]) throws(SnapshotError) {
        guard bytes.count == SnapshotFormat.headerSize, Array(bytes[0..<8]) == SnapshotFormat.magic else {
            throw .notASnapshot
        }
        let version = bytes.bigEndian(UInt16.self, at: 8)
        guard version == SnapshotFormat.version else { throw .unsupportedVersion(version) }
        let flags = bytes.bigEndian(UInt16.self, at: 10)
        guard flags & ~SnapshotFormat.encryptedFlag == 0 else { throw .corrupt("unknown header flags \(flags)") }
        encrypted = flags & SnapshotFormat.encryptedFlag != 0
        created = Int64(bitPattern: bytes.bigEndian(UInt64.self, at: 12))
        nonce = Array(bytes[20..<32])
    }

    init(encrypted: Bool, created: Int64, nonce: [UInt8]) {
        self.encrypted = encrypted
        self.created = created
        self.nonce = nonce
    }
}

/// Seals and opens one chunk: AES-GCM under the restore key, or a SHA-256 digest without one.
struct ChunkSeal {
    let header: [UInt8]
    let key: SymmetricKey?

    var tagSize: Int { key == nil ? SnapshotFormat.digestSize : SnapshotFormat.gcmTagSize }

    /// The header, the chunk's index and whether it is the last: what each chunk's tag covers besides it.
    private func context(_ index: UInt64, final: Bool) -> [UInt8] {
        var bytes = header
        bytes.appendBigEndian(index)
        bytes.append(final ? 1 : 0)
        return bytes
    }

    private func nonce(_ index: UInt64) throws -> AES.GCM.Nonce {
        var bytes = Array(header[20..<32])
        for shift in 0..<8 { bytes[11 - shift] ^= UInt8(truncatingIfNeeded: index >> (8 * UInt64(shift))) }
        return try AES.GCM.Nonce(data: bytes)
    }

    /// The payload and tag to write for `plaintext`.
    func seal(_ plaintext: UnsafeRawBufferPointer, index: UInt64, final: Bool) throws -> (
        payload: [UInt8], tag: [UInt8]
    ) {
        guard let key else {
            var hash = SHA256()
            hash.update(data: context(index, final: final))
            hash.update(bufferPointer: plaintext)
            return (Array(plaintext), Array(hash.finalize()))
        }
        let box = try AES.GCM.seal(
            plaintext, using: key, nonce: nonce(index), authenticating: context(index, final: final))
        return (Array(box.ciphertext), Array(box.tag))
    }

    /// The plaintext of a chunk read back; throws when its tag does not match.
    func open(_ payload: [UInt8], tag: [UInt8], index: UInt64, final: Bool) throws(SnapshotError) -> [UInt8] {
        guard let key else {
            var hash = SHA256()
            hash.update(data: context(index, final: final))
            hash.update(data: payload)
            guard Array(hash.finalize()) == tag else { throw .corrupt("chunk \(index) does not match its checksum") }
            return payload
        }
        do {
            let box = try AES.GCM.SealedBox(nonce: nonce(index), ciphertext: payload, tag: tag)
            return Array(try AES.GCM.open(box, using: key, authenticating: context(index, final: final)))
        } catch {
            throw .tampered(chunk: index)
        }
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    func bigEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        var value = T.zero
        for index in offset..<(offset + MemoryLayout<T>.size) { value = value << 8 | T(self[index]) }
        return value
    }
}
