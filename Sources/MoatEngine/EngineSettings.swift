import MoatProtocol

/// What the engine needs to know of the configuration, decided once at start.
public struct EngineSettings: Sendable {
    public enum ProtocolMode: String, Sendable {
        /// Sniff the first byte: 0x80 is the binary protocol.
        case auto
        case ascii
        /// Only the binary protocol; a connection whose first byte is not 0x80 is closed.
        case binary
    }

    /// The string after `VERSION ` (memcached's version first, so clients that parse it keep working).
    public var version: String
    public var protocolMode: ProtocolMode
    public var limits: ProtocolLimits
    public var flushEnabled: Bool
    public var shutdownEnabled: Bool
    /// Key dumping (`stats cachedump`, `lru_crawler metadump`); off by default and not yet implemented.
    public var dumpEnabled: Bool
    public var maxConnections: Int
    public var threads: Int
    /// Keys no legitimate client reads: a read of one is a critical security event.
    public var canaryKeys: [[UInt8]] = []
    /// `verbosity` from clients (refused with `-o disable_verbosity`).
    public var verbosityEnabled = true
    /// `-U`: `stats` reports the UDP counters.
    public var udpEnabled = false
    /// Bytes of unread replies all stalled connections together may hold (0: no budget).
    public var outputBudgetBytes = 64 << 20
    /// `stats settings` lines, rendered by whoever knows the configuration.
    public var settingsReport: [(String, String)]

    public init(
        version: String = MoatVersion.wire, protocolMode: ProtocolMode = .auto,
        limits: ProtocolLimits = ProtocolLimits(),
        flushEnabled: Bool = true, shutdownEnabled: Bool = false, dumpEnabled: Bool = false,
        maxConnections: Int = 1024, threads: Int = 4, settingsReport: [(String, String)] = []
    ) {
        self.version = version
        self.protocolMode = protocolMode
        self.limits = limits
        self.flushEnabled = flushEnabled
        self.shutdownEnabled = shutdownEnabled
        self.dumpEnabled = dumpEnabled
        self.maxConnections = maxConnections
        self.threads = threads
        self.settingsReport = settingsReport
    }
}

public enum MoatVersion {
    public static let moat = "0.1.0"
    /// The memcached release whose protocol Moat speaks; clients parse this part.
    public static let memcachedCompatible = "1.6.21"
    public static let wire = "\(memcachedCompatible)-moat-\(moat)"
}
