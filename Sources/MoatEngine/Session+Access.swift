import MoatAccess
import MoatProtocol
import NIOCore

/// Tenants: which bucket a user's connection sees and which commands and keys it may use. A session
/// looks its user up when it authenticates and again after a reload, never per request.
extension Session {
    /// Binds the session to `user`'s bucket and grant; false when the configuration does not (now)
    /// admit the user.
    mutating func bind(user name: String) -> Bool {
        guard let (bucket, grant) = engine.tenancy.resolve(user: name) else { return false }
        if bucket !== self.bucket {
            // Counters so far belong to the old bucket.
            publishCounters()
            self.bucket = bucket
        }
        user = name
        self.grant = grant
        restricted = grant.isRestricted
        return true
    }

    /// After a reload: keeps the session's bucket and picks up a changed grant; false when its user
    /// was removed or moved to another bucket, and the connection must close.
    public mutating func revalidate() -> Bool {
        let generation = engine.tenancy.generation.load(ordering: .acquiring)
        guard generation != generationSeen else { return true }
        generationSeen = generation
        // An exchange begun under the old credentials must not finish under them: its next step fails.
        sasl = nil
        guard let name = user else { return true }
        // What this session counted so far belongs to the bucket it used, even if the reload removed it.
        if !counters.isZero {
            engine.tenancy.publish(counters, from: bucket, slot: counterSlot)
            counters = CommandCounters()
        }
        guard let (bucket, grant) = engine.tenancy.resolve(user: name), bucket === self.bucket else {
            revoke()
            return false
        }
        if let authenticator = engine.authenticator {
            let current = authenticator.store.credential(for: name)
            // A password login holds while its credential is unchanged (same salts and keys); a certificate
            // login while the user is still known (listed, or in the credentials without a list).
            let holds =
                loggedInByCertificate
                ? (engine.tenancy.restrictsUsers || current != nil) : (current != nil && current == loginCredential)
            guard holds else {
                revoke()
                return false
            }
        }
        self.grant = grant
        restricted = grant.isRestricted
        return true
    }

    /// The connection must close; whoever closes it records why (`accessRevoked`), once.
    private mutating func revoke() {
        isAuthenticated = false
        accessRevoked = true
    }

    /// Records a refused command: counted for `stats` and the user, and logged (never with the key).
    mutating func deny(_ command: String, _ category: Permissions) {
        engine.deniedCommands.add(1, ordering: .relaxed)
        if let user { engine.tenancy.count(user: user) { $0.denied &+= 1 } }
        engine.securityLog.record(
            .permissionDenied(
                peer: peer, user: user ?? "", bucket: bucket.name, command: command, category: category.description))
    }

    // MARK: what each operation needs

    /// The category `need` lacks under the session's grant; nil when the grant covers it. The one
    /// decision: the dialects only say which operation they decoded (`need(...)` below).
    func missing(_ need: AccessNeed) -> Permissions? {
        switch need {
        case .nothing:
            return nil
        case .read(let key):
            return grant.mayRead(key) ? nil : .read
        case .write(let key):
            return grant.mayWrite(key) ? nil : .write
        case .readWrite(let key):
            if !grant.mayRead(key) { return .read }
            return grant.mayWrite(key) ? nil : .write
        case .permission(let category):
            return grant.permissions.contains(category) ? nil : category
        case .stats(let words):
            let needed = Self.permissionForStats(words)
            return needed.isEmpty || grant.permissions.contains(needed) ? nil : needed
        }
    }

    /// The category the grant lacks for `operation` (for a multi-get, for any of its keys); nil when
    /// the grant covers it.
    func missing(for operation: Operation<UnsafeRawBufferPointer>) -> Permissions? {
        guard case .getMany(let keys, let options) = operation else { return missing(Self.need(operation)) }
        // Each key as the get it is.
        for key in TokenList(keys) {
            if let category = missing(Self.need(.get(key: key, options))) { return category }
        }
        return nil
    }

    /// What an operation needs, whichever dialect carried it.
    static func need(_ operation: Operation<UnsafeRawBufferPointer>) -> AccessNeed {
        switch operation {
        // gat, and mg with N or T, set a TTL or create the item (gat -1 deletes in effect): writes as well.
        case .get(let key, let options): return options.writes ? .readWrite(key) : .read(key)
        case .getMany(let keys, let options):
            // The first key's need; `missing(for:)` asks for every key.
            return TokenList(keys).first.map { need(.get(key: $0, options)) } ?? .nothing
        case .inspect(let key): return .read(key)
        case .store(let key, _, _), .storeTooLarge(let key, _), .delete(let key, _), .arithmetic(let key, _),
            .touch(let key, _):
            return .write(key)
        case .flushAll: return .permission(.manage)
        case .verbosity, .shutdown, .refreshCerts, .cacheMemlimit: return .permission(.admin)
        case .stats(let arguments): return .stats(TokenList(arguments).strings)
        case .lruCrawler, .watch: return .permission(.dump)
        case .noop, .version, .quit, .saslListMechanisms, .saslStart, .saslStep, .saslMechanismTooLong, .error:
            return .nothing
        }
    }

    /// The command's name in the security log (`stats` with its group).
    static func logName(_ verb: Verb, _ operation: Operation<UnsafeRawBufferPointer>) -> String {
        guard case .stats(let arguments) = operation else { return verb.name }
        return "stats \(TokenList(arguments).first.map { String(decoding: $0, as: UTF8.self) } ?? "")"
    }

    /// `stats detail on` / `stats detail off`: accepted and changing nothing (Moat keeps no per-prefix
    /// stats), because client libraries and memcached's tools send them at connect.
    static func isDetailToggle(_ words: [String]) -> Bool {
        words.count == 2 && words[0] == "detail" && (words[1] == "on" || words[1] == "off")
    }

    /// The permission a `stats` request needs (empty: any authenticated user, scoped to its bucket).
    static func permissionForStats(_ words: [String]) -> Permissions {
        if isDetailToggle(words) { return [] }
        switch words.first {
        case nil, "items", "slabs": return []
        case "cachedump", "detail", "conns": return .dump
        case "reset": return .manage  // an admin resets every bucket, a manager its own
        default: return .admin  // settings, reset, buckets, users, and anything new
        }
    }
}

/// What an operation needs of the user's grant, whatever dialect carried it.
enum AccessNeed {
    case nothing
    case read(UnsafeRawBufferPointer)
    case write(UnsafeRawBufferPointer)
    /// Reads the key and changes it (gat's TTL, mg with N or T).
    case readWrite(UnsafeRawBufferPointer)
    /// A category that covers no keys (manage: flush_all; admin; dump).
    case permission(Permissions)
    /// `stats` and its group: `permissionForStats`.
    case stats([String])
}
