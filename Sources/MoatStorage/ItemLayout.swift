#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an item lives inside its shard: the segment's index in the high bits, the item's offset in
/// 2-byte units in the low bits (see `SegmentShard.unitBits`); 0 is no item. Half a pointer, so a hash
/// chain link costs 4 bytes per item; 2^32 units address 8 GiB per shard.
@usableFromInline typealias ItemRef = UInt32

/// The layout of one item inside its segment. Items are written back to back, each starting at an
/// even offset, into memory the shard manages (see `SegmentShard`): no Swift objects, no per-item
/// heap header, no LRU links and no size-class slack; 30 bytes of header against memcached's 48-56.
///
///     0  next        4   the next item in the same hash bucket (an `ItemRef`; 0 ends the chain)
///     4  valueCount  4
///     8  flags       4   the client's opaque 32-bit flags
///     12 expiresAt   4   seconds since the cache epoch; 0 = never
///     16 lastAccess  4   seconds since the cache epoch: stored, fetched or touched (memcached's
///                        `it->time`: the delayed flush, the `age` stat and meta `l`/`la` read it)
///     20 cas         8
///                        (every field is read and written unaligned)
///     28 keyCount    1
///     29 state       1   bit 0: linked (live), bit 1: fetched since stored, bit 2: stale (meta
///                        invalidation), bit 3: a recache win token was handed out, bits 4-5: reads
///                        since the eviction pass last saw it, up to 3 (`uses`)
///     30 key bytes, then value bytes
///
/// A dead item (deleted, replaced or expired) keeps its header, so that a walk over a segment can step
/// over it, until the segment is compacted.
@usableFromInline
struct ItemPointer: Equatable {
    @usableFromInline let raw: UnsafeMutableRawPointer
    @usableFromInline let ref: ItemRef

    @inlinable init(_ raw: UnsafeMutableRawPointer, ref: ItemRef) {
        self.raw = raw
        self.ref = ref
    }

    @usableFromInline static let headerSize = 30
    static let alignment = 2

    static let linkedBit: UInt8 = 1
    static let fetchedBit: UInt8 = 2
    static let staleBit: UInt8 = 4
    static let tokenSentBit: UInt8 = 8
    static let usesShift: UInt8 = 4
    static let usesMask: UInt8 = 0x30

    @inlinable var next: ItemRef {
        get { raw.loadUnaligned(as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, as: UInt32.self) }
    }
    @inlinable var valueCount: Int {
        get { Int(raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
        nonmutating set { raw.storeBytes(of: UInt32(truncatingIfNeeded: newValue), toByteOffset: 4, as: UInt32.self) }
    }
    @inlinable var flags: UInt32 {
        get { raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 8, as: UInt32.self) }
    }
    @inlinable var expiresAt: UInt32 {
        get { raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 12, as: UInt32.self) }
    }
    var lastAccess: UInt32 {
        get { raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 16, as: UInt32.self) }
    }
    @inlinable var cas: UInt64 {
        get { raw.loadUnaligned(fromByteOffset: 20, as: UInt64.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 20, as: UInt64.self) }
    }
    @inlinable var keyCount: Int {
        get { Int(raw.load(fromByteOffset: 28, as: UInt8.self)) }
        nonmutating set { raw.storeBytes(of: UInt8(truncatingIfNeeded: newValue), toByteOffset: 28, as: UInt8.self) }
    }
    var state: UInt8 {
        get { raw.load(fromByteOffset: 29, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 29, as: UInt8.self) }
    }
    var isLinked: Bool { state & Self.linkedBit != 0 }
    var fetched: Bool {
        get { state & Self.fetchedBit != 0 }
        nonmutating set { state = newValue ? state | Self.fetchedBit : state & ~Self.fetchedBit }
    }
    var stale: Bool {
        get { state & Self.staleBit != 0 }
        nonmutating set { state = newValue ? state | Self.staleBit : state & ~Self.staleBit }
    }
    var tokenSent: Bool {
        get { state & Self.tokenSentBit != 0 }
        nonmutating set { state = newValue ? state | Self.tokenSentBit : state & ~Self.tokenSentBit }
    }
    /// Reads since the eviction pass last saw the item, up to 3. Each pass over a live item takes one
    /// off, so an item read often survives that many passes unread (a frequency-aware second chance:
    /// a single bit kept 0.86 points fewer hits on `bench/hitrate.py`'s Zipf 0.9 trace).
    var uses: UInt8 { (state & Self.usesMask) >> Self.usesShift }

    func markUsed() {
        let count = uses
        if count < 3 { state = (state & ~Self.usesMask) | ((count + 1) << Self.usesShift) }
    }

    /// What an eviction pass that keeps the item does to its count.
    func passOver() {
        let count = uses
        if count > 0 { state = (state & ~Self.usesMask) | ((count - 1) << Self.usesShift) }
    }

    @inlinable var keyBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: raw + Self.headerSize, count: keyCount)
    }
    @inlinable var valueBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: raw + Self.headerSize + keyCount, count: valueCount)
    }
    var mutableValue: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: raw + Self.headerSize + keyCount, count: valueCount)
    }

    /// Header + key + value: what memcached's `bytes` stat counts for an item.
    var totalSize: Int { Self.headerSize + keyCount + valueCount }

    /// The bytes the item takes in its segment (the next one starts there).
    var footprint: Int { Self.footprint(keyCount: keyCount, valueCount: valueCount) }

    static func size(keyCount: Int, valueCount: Int) -> Int { headerSize + keyCount + valueCount }

    static func footprint(keyCount: Int, valueCount: Int) -> Int {
        (size(keyCount: keyCount, valueCount: valueCount) + alignment - 1) & ~(alignment - 1)
    }

    @inlinable func keyEquals(_ key: UnsafeRawBufferPointer) -> Bool {
        guard keyCount == key.count else { return false }
        guard let base = key.baseAddress else { return true }
        return memcmp(raw + Self.headerSize, base, key.count) == 0
    }

    func isExpired(now: UInt32) -> Bool {
        let deadline = expiresAt
        return deadline != 0 && deadline <= now
    }

}
