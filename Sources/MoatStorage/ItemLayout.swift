/// The layout of one item inside its chunk. Items live in memory the shard manages (see `SlabShard`),
/// not in Swift objects: no reference counting, no per-item heap header, exact byte accounting.
///
///     0  hashNext   8   next item in the same hash bucket
///     8  lruOlder   8   towards the least recently used end of the class's LRU list
///    16  lruNewer   8
///    24  cas        8
///    32  expiresAt  4   seconds since the cache epoch; 0 = never
///    36  lastAccess 4   seconds since the cache epoch: stored, fetched or touched (memcached's
///                       `it->time`: the delayed flush, the `age` stat and meta `l`/`la` read it)
///    40  flags      4   the client's opaque 32-bit flags
///    44  valueCount 4
///    48  hash       4   low bits of the key's hash (cheap mismatch test before comparing bytes)
///    52  keyCount   1
///    53  classID    1   size class, or `SizeClasses.large` for individually allocated items
///    54  state      1   bit 0: linked (live), bit 1: fetched since stored, bit 2: stale (meta
///                       invalidation), bit 3: a recache win token was handed out
///    55  (pad)      1
///    56  key bytes, then value bytes
@usableFromInline
struct ItemPointer: Equatable {
    @usableFromInline let raw: UnsafeMutableRawPointer

    @inlinable init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }

    @usableFromInline static let headerSize = 56

    static let linkedBit: UInt8 = 1
    static let fetchedBit: UInt8 = 2
    static let staleBit: UInt8 = 4
    static let tokenSentBit: UInt8 = 8

    @inlinable var hashNext: ItemPointer? {
        get { raw.load(as: UnsafeMutableRawPointer?.self).map(ItemPointer.init) }
        nonmutating set { raw.storeBytes(of: newValue?.raw, as: UnsafeMutableRawPointer?.self) }
    }
    var lruOlder: ItemPointer? {
        get { raw.load(fromByteOffset: 8, as: UnsafeMutableRawPointer?.self).map(ItemPointer.init) }
        nonmutating set { raw.storeBytes(of: newValue?.raw, toByteOffset: 8, as: UnsafeMutableRawPointer?.self) }
    }
    var lruNewer: ItemPointer? {
        get { raw.load(fromByteOffset: 16, as: UnsafeMutableRawPointer?.self).map(ItemPointer.init) }
        nonmutating set { raw.storeBytes(of: newValue?.raw, toByteOffset: 16, as: UnsafeMutableRawPointer?.self) }
    }
    @inlinable var cas: UInt64 {
        get { raw.load(fromByteOffset: 24, as: UInt64.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 24, as: UInt64.self) }
    }
    @inlinable var expiresAt: UInt32 {
        get { raw.load(fromByteOffset: 32, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 32, as: UInt32.self) }
    }
    var lastAccess: UInt32 {
        get { raw.load(fromByteOffset: 36, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 36, as: UInt32.self) }
    }
    @inlinable var flags: UInt32 {
        get { raw.load(fromByteOffset: 40, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 40, as: UInt32.self) }
    }
    @inlinable var valueCount: Int {
        get { Int(raw.load(fromByteOffset: 44, as: UInt32.self)) }
        nonmutating set { raw.storeBytes(of: UInt32(truncatingIfNeeded: newValue), toByteOffset: 44, as: UInt32.self) }
    }
    @inlinable var hash: UInt32 {
        get { raw.load(fromByteOffset: 48, as: UInt32.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 48, as: UInt32.self) }
    }
    @inlinable var keyCount: Int {
        get { Int(raw.load(fromByteOffset: 52, as: UInt8.self)) }
        nonmutating set { raw.storeBytes(of: UInt8(truncatingIfNeeded: newValue), toByteOffset: 52, as: UInt8.self) }
    }
    var classID: UInt8 {
        get { raw.load(fromByteOffset: 53, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 53, as: UInt8.self) }
    }
    var state: UInt8 {
        get { raw.load(fromByteOffset: 54, as: UInt8.self) }
        nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 54, as: UInt8.self) }
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

    static func size(keyCount: Int, valueCount: Int) -> Int { headerSize + keyCount + valueCount }

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

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
