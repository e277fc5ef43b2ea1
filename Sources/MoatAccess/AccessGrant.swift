/// Command categories a user may be granted, in the manner of Redis 6 ACL categories.
public struct Permissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// get, gets, gat, gats, mg, and their binary forms.
    public static let read = Permissions(rawValue: 1 << 0)
    /// set, add, replace, append, prepend, cas, delete, incr, decr, touch, ms, md, ma.
    public static let write = Permissions(rawValue: 1 << 1)
    /// Server administration: verbosity, shutdown, refresh_certs, cache_memlimit, `stats settings`,
    /// `stats buckets`, `stats users`, `stats reset` of every bucket, and the server-wide lines of
    /// `stats` (connections, authentication, security). It sees every tenant: not for tenants.
    public static let admin = Permissions(rawValue: 1 << 2)
    /// Key dumping and detailed stats (cachedump, metadump, `stats detail`, `stats conns`).
    public static let dump = Permissions(rawValue: 1 << 3)
    /// The user's own bucket only: flush_all of it and `stats reset` of its counters. `admin` implies it.
    public static let manage = Permissions(rawValue: 1 << 4)

    public static let all: Permissions = [.read, .write, .manage, .admin, .dump]

    /// The names the configuration file uses, in the order they are listed.
    public static let names: [(String, Permissions)] = [
        ("read", .read), ("write", .write), ("manage", .manage), ("admin", .admin), ("dump", .dump),
    ]

    public init?(name: String) {
        if name == "all" {
            self = .all
            return
        }
        guard let found = Self.names.first(where: { $0.0 == name }) else { return nil }
        // Administering the server includes administering one's bucket.
        self = found.1 == .admin ? [.admin, .manage] : found.1
    }

    /// The category names held, for logs and `stats users`.
    public var description: String {
        let held = Self.names.filter { contains($0.1) }.map(\.0)
        return held.isEmpty ? "none" : held.joined(separator: ",")
    }
}

/// Keys a user may touch: exact keys and prefixes (a pattern ending in `*`), as Redis's `~pattern`
/// restricted to what memcached operators use, key prefixes per application.
public struct KeyPatterns: Sendable, Equatable {
    public private(set) var exact: Set<[UInt8]> = []
    public private(set) var prefixes: [[UInt8]] = []
    /// True when the list holds `*`: every key.
    public private(set) var matchesAll = false

    public init() {}

    /// Parses patterns; throws the first that is empty, holds a space or control byte, or has a `*`
    /// anywhere but at its end.
    public init(patterns: [String]) throws(InvalidKeyPattern) {
        for pattern in patterns {
            let bytes = Array(pattern.utf8)
            guard !bytes.isEmpty, bytes.count <= 251 else { throw InvalidKeyPattern(pattern: pattern) }
            let stars = bytes.filter { $0 == UInt8(ascii: "*") }.count
            if stars == 0 {
                guard !bytes.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
                    throw InvalidKeyPattern(pattern: pattern)
                }
                exact.insert(bytes)
            } else if stars == 1, bytes.last == UInt8(ascii: "*") {
                let prefix = Array(bytes.dropLast())
                guard !prefix.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
                    throw InvalidKeyPattern(pattern: pattern)
                }
                if prefix.isEmpty { matchesAll = true } else { prefixes.append(prefix) }
            } else {
                throw InvalidKeyPattern(pattern: pattern)
            }
        }
    }

    public var isEmpty: Bool { exact.isEmpty && prefixes.isEmpty && !matchesAll }

    public func matches(_ key: UnsafeRawBufferPointer) -> Bool {
        if matchesAll { return true }
        for prefix in prefixes where key.count >= prefix.count {
            if prefix.withUnsafeBytes({ memcmp($0.baseAddress!, key.baseAddress!, prefix.count) == 0 }) { return true }
        }
        return !exact.isEmpty && exact.contains(Array(key))
    }

    public func matches(_ key: [UInt8]) -> Bool {
        key.withUnsafeBytes { matches($0) }
    }

    static func + (lhs: KeyPatterns, rhs: KeyPatterns) -> KeyPatterns {
        var sum = lhs
        sum.exact.formUnion(rhs.exact)
        sum.prefixes += rhs.prefixes
        sum.matchesAll = lhs.matchesAll || rhs.matchesAll
        return sum
    }
}

public struct InvalidKeyPattern: Error, Sendable, Equatable {
    public let pattern: String
    public init(pattern: String) { self.pattern = pattern }
}

/// What an authenticated user may do: the command categories, and (optionally) the keys it may read
/// and write. Checked by the engine before every command.
public struct AccessGrant: Sendable, Equatable {
    public var permissions: Permissions
    /// nil: every key. Otherwise reads need a key matching `readable`, writes one matching `writable`.
    public var readable: KeyPatterns?
    public var writable: KeyPatterns?

    /// Everything (no configuration, or a user the configuration does not restrict).
    public static let unrestricted = AccessGrant(permissions: .all)

    public init(permissions: Permissions, readable: KeyPatterns? = nil, writable: KeyPatterns? = nil) {
        self.permissions = permissions
        self.readable = readable
        self.writable = writable
    }

    /// Redis-style key lists: `keys` for both directions, `readKeys` and `writeKeys` for one each. No
    /// list at all means every key; any list means only the keys listed.
    public init(permissions: Permissions, keys: KeyPatterns?, readKeys: KeyPatterns?, writeKeys: KeyPatterns?) {
        self.permissions = permissions
        if keys == nil, readKeys == nil, writeKeys == nil { return }
        let both = keys ?? KeyPatterns()
        self.readable = both + (readKeys ?? KeyPatterns())
        self.writable = both + (writeKeys ?? KeyPatterns())
    }

    /// True when some key or category check can fail (the hot path skips them otherwise).
    public var isRestricted: Bool {
        permissions != .all || readable.map { !$0.matchesAll } == true || writable.map { !$0.matchesAll } == true
    }

    public func mayRead(_ key: UnsafeRawBufferPointer) -> Bool {
        permissions.contains(.read) && (readable?.matches(key) ?? true)
    }

    public func mayWrite(_ key: UnsafeRawBufferPointer) -> Bool {
        permissions.contains(.write) && (writable?.matches(key) ?? true)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
