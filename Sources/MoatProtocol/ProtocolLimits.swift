/// Bounds every codec enforces on hostile input.
public struct ProtocolLimits: Sendable, Equatable {
    /// memcached's key limit.
    public var maxKeyLength: Int = 250
    /// A command line longer than this with no newline closes the connection (memcached: 2048).
    public var maxLineLength: Int = 2048
    /// Retrieval lines (`get k1 k2 ...`) may be longer, up to this many bytes.
    public var maxRetrievalLineLength: Int = 64 * 1024
    /// Largest value accepted (`-I`); larger data is swallowed unbuffered and refused.
    public var maxItemSize: Int = 1024 * 1024
    /// protocol.txt forbids control characters in keys and Moat enforces it; memcached does not, and
    /// some tools (memcaslap) send such keys. True accepts any byte but space and newline, as memcached.
    public var allowControlBytesInKeys = false

    public init() {}

    /// What an unauthenticated connection may make the server buffer: ASCII authentication's
    /// "user password" block and command lines, nothing like a full `-I` value or a 1 MiB get line
    /// (SASL frames are bounded separately, at 4 KiB). Larger blocks are refused from their header.
    public var beforeAuthentication: ProtocolLimits {
        var limits = self
        limits.maxItemSize = min(maxItemSize, Self.maxAuthenticationBlock)
        limits.maxRetrievalLineLength = maxLineLength
        return limits
    }

    /// The largest data block accepted before authentication (a user name, a space and a password).
    public static let maxAuthenticationBlock = 4096

    public init(maxItemSize: Int) {
        self.maxItemSize = maxItemSize
        // A multi-get of many keys is legitimate; keep its line bounded by the same knob as values.
        self.maxRetrievalLineLength = max(64 * 1024, min(maxItemSize, 16 * 1024 * 1024))
    }
}

public enum KeyRules {
    /// 1 to `maxLength` bytes, none of them a space or a control character.
    @inlinable
    public static func isValid<C: Collection>(_ key: C, maxLength: Int = 250, allowControlBytes: Bool = false) -> Bool
    where C.Element == UInt8 {
        let count = key.count
        guard count > 0, count <= maxLength else { return false }
        if allowControlBytes {
            for byte in key where byte == 0x20 || byte == 0x0a { return false }
        } else {
            for byte in key where byte <= 0x20 || byte == 0x7f { return false }
        }
        return true
    }
}
