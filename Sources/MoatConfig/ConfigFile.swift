import MoatAccess
import Yams

/// `moat serve --config FILE`: a YAML file with three sections, all optional.
///
/// ```yaml
/// server:            # memcached's long flag names; flags on the command line win
///   memory-limit: 1024
///   credentials: /etc/moat/credentials
///   extended: [idle_timeout=600]
/// buckets:           # name: quota and what a full bucket does
///   shop: { memory: 256m, when_full: evict }
/// users:             # who may log in, to which bucket, with which permissions
///   shop-web: { bucket: shop, permissions: [read, write], keys: ["cart:*"] }
/// ```
/// Every error names the file and line; a file with any error is rejected whole.
package struct ConfigFile: Sendable, Equatable {
    /// The `server` section, in the flags' own types.
    package var server: ServerSection
    package var tenants: TenantPlan

    /// Read by `moat serve` when it exists and neither --config nor --no-config is given.
    package static let defaultPath = "/etc/moat/moat.conf"

    /// Largest file read (a configuration of thousands of users fits easily).
    package static let maximumBytes = 4 * 1024 * 1024
    /// Most nodes walked: aliases can make a small file describe an exponentially large tree.
    static let maximumNodes = 200_000
    /// Deepest nesting of lists and mappings (aliases included) accepted; a configuration needs 4.
    static let maximumDepth = 64

    package static func parse(_ text: String, path: String) throws(ConfigurationError) -> ConfigFile {
        var parser = Walker(path: path)
        do {
            return try parser.file(text)
        } catch let error as ConfigurationError {
            throw error
        } catch let error as YamlError {
            throw ConfigurationError("\(path): \(Self.describe(error))")
        } catch {
            throw ConfigurationError("\(path): \(error)")
        }
    }

    static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            return "line \(mark.line): \(problem)" + (context.map { " \($0.text)" } ?? "")
        case .composer(let context, let problem, let mark, _):
            return "line \(mark.line): \(problem)" + (context.map { " \($0.text)" } ?? "")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return
                """
                line \(context.mark.line): the mapping there gives \
                \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) twice
                """
        case .reader(let problem, _, _, _):
            return problem
        default:
            return "\(error)"
        }
    }
}

/// Walks the YAML tree, turning each node into settings, with the line of anything wrong.
private struct Walker {
    let path: String
    var visited = 0

    init(path: String) { self.path = path }

    func fail(_ node: Node?, _ message: String) -> ConfigurationError {
        ConfigurationError("\(path):\(node?.mark.map { "\($0.line)" } ?? "?"): \(message)")
    }

    mutating func count(_ node: Node) throws(ConfigurationError) {
        visited += 1
        guard visited <= ConfigFile.maximumNodes else {
            throw fail(node, "the file is too large (more than \(ConfigFile.maximumNodes) values)")
        }
    }

    mutating func file(_ text: String) throws -> ConfigFile {
        guard text.utf8.count <= ConfigFile.maximumBytes else {
            throw ConfigurationError("\(path): larger than \(ConfigFile.maximumBytes / 1_048_576) MiB")
        }
        var result = ConfigFile(server: ServerSection(), tenants: TenantPlan())
        // Before composing: Yams recurses per level and would overflow the stack on a deep file.
        if let problem = YAMLShape.check(
            text, maximumDepth: ConfigFile.maximumDepth, maximumNodes: ConfigFile.maximumNodes)
        {
            throw ConfigurationError("\(path):\(problem.line): \(problem.message)")
        }
        guard let root = try Yams.compose(yaml: text) else { return result }  // an empty file sets nothing
        for (key, value) in try mapping(root, "the file") {
            switch key {
            case "server":
                result.server = try server(value)
            case "buckets":
                result.tenants.buckets = try buckets(value)
            case "users":
                result.tenants.users = try users(value)
            default:
                throw fail(value, "unknown section \"\(key)\" (expected server, buckets or users)")
            }
        }
        if let users = result.tenants.users {
            let names = Set(result.tenants.buckets.map(\.name)).union([TenantPlan.defaultBucket])
            for user in users where !names.contains(user.bucket) {
                throw ConfigurationError(
                    """
                    \(path):\(userLines[user.name] ?? 0): user \(user.name) names bucket \"\(user.bucket)\", which \
                    is not declared under buckets
                    """
                )
            }
        }
        return result
    }

    /// Line of each user's entry, for errors found once the whole file is read.
    var userLines: [String: Int] = [:]

    /// A mapping's pairs in file order, with string keys; duplicate keys are an error.
    mutating func mapping(_ node: Node, _ what: String) throws(ConfigurationError) -> [(String, Node)] {
        try count(node)
        guard case .mapping(let map) = node else { throw fail(node, "\(what) must be a mapping of names to values") }
        var seen: Set<String> = []
        var pairs: [(String, Node)] = []
        for (key, value) in map {
            try count(value)
            guard case .scalar(let scalar) = key else { throw fail(key, "\(what): a key must be a plain name") }
            guard seen.insert(scalar.string).inserted else {
                throw fail(key, "\(what): \"\(scalar.string)\" is given twice")
            }
            pairs.append((scalar.string, value))
        }
        return pairs
    }

    mutating func scalar(_ node: Node, _ what: String) throws(ConfigurationError) -> String {
        try count(node)
        guard case .scalar(let scalar) = node else { throw fail(node, "\(what) must be a single value") }
        return scalar.string
    }

    /// A sequence of scalars; a single scalar counts as a list of one.
    mutating func strings(_ node: Node, _ what: String) throws(ConfigurationError) -> [String] {
        try count(node)
        switch node {
        case .scalar(let scalar): return [scalar.string]
        case .sequence(let sequence):
            var result: [String] = []
            for item in sequence { result.append(try scalar(item, "each entry of \(what)")) }
            return result
        default:
            throw fail(node, "\(what) must be a value or a list of values")
        }
    }

    mutating func boolean(_ node: Node, _ what: String) throws(ConfigurationError) -> Bool {
        switch try scalar(node, what) {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(node, "\(what) must be true or false")
        }
    }

    // MARK: sections

    mutating func server(_ node: Node) throws(ConfigurationError) -> ServerSection {
        var section = ServerSection()
        for (key, value) in try mapping(node, "server") {
            switch key {
            case "port": section.port = try integer(value, key)
            case "listen": section.listen = try strings(value, key)
            case "unix-socket": section.unixSocket = try scalar(value, key)
            case "unix-mask": section.unixMask = try scalar(value, key)
            case "udp-port": section.udpPort = try integer(value, key)
            case "memory-limit": section.memoryLimit = try scalar(value, key)
            case "disable-evictions": section.disableEvictions = try boolean(value, key)
            case "conn-limit": section.connLimit = try integer(value, key)
            case "threads": section.threads = try integer(value, key)
            case "max-item-size": section.maxItemSize = try scalar(value, key)
            case "verbose":
                guard let level = Int(try scalar(value, key)), (0...3).contains(level) else {
                    throw fail(value, "\(key) must be a number from 0 to 3")
                }
                section.verbose = level
            case "user": section.user = try scalar(value, key)
            case "protocol": section.protocolMode = try scalar(value, key)
            case "enable-shutdown": section.enableShutdown = try boolean(value, key)
            case "disable-flush-all": section.disableFlushAll = try boolean(value, key)
            case "disable-dumping": section.disableDumping = try boolean(value, key)
            case "disable-watch": section.disableWatch = try boolean(value, key)
            case "extended": section.extended = try strings(value, key)
            case "enable-sasl": section.enableSASL = try boolean(value, key)
            case "credentials": section.credentials = try scalar(value, key)
            case "auth-file": section.authFile = try scalar(value, key)
            case "enable-ssl": section.enableTLS = try boolean(value, key)
            case "pidfile": section.pidFile = try scalar(value, key)
            case "memory-file": section.memoryFile = try scalar(value, key)
            case "listen-backlog": section.backlog = try integer(value, key)
            case "log-format": section.logFormat = try scalar(value, key)
            default:
                throw fail(
                    value,
                    """
                    server: unknown setting \"\(key)\" (use memcached's long flag names, as `moat serve --help` \
                    lists them)
                    """
                )
            }
        }
        return section
    }

    mutating func integer(_ node: Node, _ what: String) throws(ConfigurationError) -> Int {
        let text = try scalar(node, what)
        guard let number = Int(text) else { throw fail(node, "\(what) must be a whole number, not \"\(text)\"") }
        return number
    }

    mutating func buckets(_ node: Node) throws(ConfigurationError) -> [BucketPlan] {
        var result: [BucketPlan] = []
        for (name, value) in try mapping(node, "buckets") {
            guard Self.isValidName(name) else {
                throw fail(value, "bucket name \"\(name)\": use 1 to 64 letters, digits, '-', '_' or '.'")
            }
            var memory: Int?
            var evict = true
            for (key, setting) in try mapping(value, "bucket \(name)") {
                switch key {
                case "memory":
                    let text = try scalar(setting, "memory")
                    // A bare number is megabytes, as -m.
                    let size = Int(text).map { $0 * 1_048_576 } ?? (try? ServeOptions.parseSize(text, flag: "memory"))
                    guard let size, size >= 1_048_576, size <= 1 << 40 else {
                        throw fail(
                            setting, "bucket \(name): memory must be at least 1m, such as 64 (megabytes), 512m or 2g")
                    }
                    memory = size
                case "when_full":
                    switch try scalar(setting, "when_full") {
                    case "evict": evict = true
                    case "refuse": evict = false
                    default: throw fail(setting, "bucket \(name): when_full must be evict or refuse")
                    }
                default:
                    throw fail(setting, "bucket \(name): unknown setting \"\(key)\" (expected memory or when_full)")
                }
            }
            guard let memory else { throw fail(value, "bucket \(name): memory is required") }
            result.append(BucketPlan(name: name, memoryLimit: memory, evictionsEnabled: evict))
        }
        return result
    }

    mutating func users(_ node: Node) throws(ConfigurationError) -> [UserPlan] {
        var result: [UserPlan] = []
        var subjects: [String: String] = [:]
        for (name, value) in try mapping(node, "users") {
            guard !name.isEmpty, name.utf8.count <= CredentialStore.maximumNameBytes,
                !name.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F || $0 == ":" })
            else {
                throw fail(value, "user name \"\(name)\": no spaces, colons or control characters, at most 250 bytes")
            }
            userLines[name] = value.mark?.line ?? 0
            var bucket = TenantPlan.defaultBucket
            var permissions: Permissions = [.read, .write]
            var keys: KeyPatterns?
            var readKeys: KeyPatterns?
            var writeKeys: KeyPatterns?
            var certificateSubjects: [String] = []
            for (key, setting) in try mapping(value, "user \(name)") {
                switch key {
                case "bucket":
                    bucket = try scalar(setting, "bucket")
                case "permissions":
                    permissions = []
                    for word in try strings(setting, "permissions") {
                        guard let category = Permissions(name: word) else {
                            throw fail(
                                setting,
                                """
                                user \(name): unknown permission \"\(word)\" (expected read, write, manage, admin, \
                                dump or all)
                                """
                            )
                        }
                        permissions.formUnion(category)
                    }
                case "keys", "read_keys", "write_keys":
                    let list = try strings(setting, key)
                    let patterns: KeyPatterns
                    do {
                        patterns = try KeyPatterns(patterns: list)
                    } catch {
                        throw fail(
                            setting,
                            """
                            user \(name): key pattern \"\(error.pattern)\": use a key, or a prefix ending in a \
                            single '*'
                            """
                        )
                    }
                    if key == "keys" {
                        keys = patterns
                    } else if key == "read_keys" {
                        readKeys = patterns
                    } else {
                        writeKeys = patterns
                    }
                case "certificate_subjects":
                    certificateSubjects = try strings(setting, key)
                    for subject in certificateSubjects {
                        if let other = subjects[subject] {
                            throw fail(
                                setting,
                                "user \(name): certificate subject \"\(subject)\" already belongs to user \(other)")
                        }
                        subjects[subject] = name
                    }
                default:
                    throw fail(
                        setting,
                        """
                        user \(name): unknown setting \"\(key)\" (expected bucket, permissions, keys, read_keys, \
                        write_keys or certificate_subjects)
                        """
                    )
                }
            }
            let grant = AccessGrant(permissions: permissions, keys: keys, readKeys: readKeys, writeKeys: writeKeys)
            result.append(UserPlan(name: name, bucket: bucket, grant: grant, certificateSubjects: certificateSubjects))
        }
        return result
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
                    || $0 == 0x2E
            }
    }
}
