/// How a storage command wants its value combined with what is cached.
public enum StoreMode: Sendable, Equatable {
    case set, add, replace, append, prepend
    /// Compare-and-swap against this CAS unique.
    case cas(UInt64)
}

/// Domain outcomes are values, not errors: each maps to one memcached reply.
public enum StoreOutcome: Sendable, Equatable {
    case stored
    case notStored
    case exists
    case notFound
    case tooLarge
    case noMemory
}

public enum DeleteOutcome: Sendable, Equatable {
    case deleted
    case notFound
    /// A CAS was given (binary protocol) and the item's differs.
    case exists
}

public enum ArithmeticOutcome: Sendable, Equatable {
    case value(UInt64)
    case notFound
    case nonNumeric
    /// The longer number did not fit and nothing could be evicted (`-M`); the old value stays.
    case noMemory
    /// A CAS was given (binary protocol) and the item's differs.
    case exists
}

public enum TouchOutcome: Sendable, Equatable {
    case touched
    case notFound
}

/// A copy of what a hit returns. `value` shares storage with the cached item (copy on write).
public struct ItemSnapshot: Sendable, Equatable {
    public let value: [UInt8]
    public let flags: UInt32
    public let cas: UInt64
}

/// A hit, seen in place: the pointers are valid only inside the closure that receives it, while the
/// shard is locked. Copy out what must outlive it.
public struct ItemView {
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    public let flags: UInt32
    public let cas: UInt64
}
