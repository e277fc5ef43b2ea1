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

    // MARK: text

    /// Checks a text command against the grant; on refusal writes the error and returns false.
    mutating func permits(_ command: TextCommand, into out: inout ByteBuffer) -> Bool {
        let refused: (String, Permissions, Bool)?
        switch command {
        case .retrieve(let keys, _, let touch):
            if !keys.allSatisfy({ grant.mayRead($0) }) {
                refused = (touch == nil ? "get" : "gat", .read, false)
            } else if touch != nil, !keys.allSatisfy({ grant.mayWrite($0) }) {
                // gat/gats set a TTL (gat -1 deletes in effect): a write.
                refused = ("gat", .write, false)
            } else {
                refused = nil
            }
        case .store(let verb, let key, _, _, _, _, let noreply), .storeTooLarge(let verb, let key, let noreply):
            refused = grant.mayWrite(key) ? nil : ("\(verb)", .write, noreply)
        case .delete(let key, let noreply):
            refused = grant.mayWrite(key) ? nil : ("delete", .write, noreply)
        case .arithmetic(let key, _, let increment, let noreply):
            refused = grant.mayWrite(key) ? nil : (increment ? "incr" : "decr", .write, noreply)
        case .touch(let key, _, let noreply):
            refused = grant.mayWrite(key) ? nil : ("touch", .write, noreply)
        case .flushAll(_, let noreply):
            refused = grant.permissions.contains(.manage) ? nil : ("flush_all", .manage, noreply)
        case .verbosity(_, let noreply):
            refused = grant.permissions.contains(.admin) ? nil : ("verbosity", .admin, noreply)
        case .shutdown:
            refused = grant.permissions.contains(.admin) ? nil : ("shutdown", .admin, false)
        case .refreshCerts:
            refused = grant.permissions.contains(.admin) ? nil : ("refresh_certs", .admin, false)
        case .cacheMemlimit(_, let noreply):
            refused = grant.permissions.contains(.admin) ? nil : ("cache_memlimit", .admin, noreply)
        case .stats(let arguments):
            let needed = Self.permissionForStats(arguments.strings)
            refused =
                needed.isEmpty || grant.permissions.contains(needed)
                ? nil : ("stats \(arguments.strings.first ?? "")", needed, false)
        case .lruCrawler:
            refused = grant.permissions.contains(.dump) ? nil : ("lru_crawler", .dump, false)
        case .watch:
            refused = grant.permissions.contains(.dump) ? nil : ("watch", .dump, false)
        case .meta, .version, .quit, .error:
            refused = nil  // meta commands are checked once their key is decoded
        }
        guard let (name, category, noreply) = refused else { return true }
        deny(name, category)
        if !noreply { TextEncoder.writeLine("CLIENT_ERROR permission denied", into: &out) }
        return false
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

    /// Checks a meta command once its key is known; on refusal writes the error and returns false.
    mutating func permitsMeta(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) -> Bool
    {
        let allowed: Bool
        let category: Permissions
        switch command.verb {
        case .noop: return true
        case .get, .debug:
            // mg with N creates the item on a miss, and with T sets its TTL: those are writes as well.
            let writes = command.verb == .get && (command.flags.has("N") || command.flags.has("T"))
            if !grant.mayRead(key) {
                allowed = false
                category = .read
            } else {
                allowed = !writes || grant.mayWrite(key)
                category = .write
            }
        case .set, .delete, .arithmetic:
            allowed = grant.mayWrite(key)
            category = .write
        }
        guard !allowed else { return true }
        let names: [MetaVerb: String] = [.get: "mg", .debug: "me", .set: "ms", .delete: "md", .arithmetic: "ma"]
        deny(names[command.verb] ?? "meta", category)
        TextEncoder.writeLine("CLIENT_ERROR permission denied", into: &out)
        return false
    }

    // MARK: binary

    /// The category a binary operation needs when the grant refuses it; nil when allowed.
    func binaryRefusal(_ operation: BinaryOperation<UnsafeRawBufferPointer>) -> (String, Permissions)? {
        switch operation {
        case .get(let key, _, _):
            return grant.mayRead(key) ? nil : ("get", .read)
        case .getAndTouch(let key, _, _, _):
            // Setting the TTL is a write.
            if !grant.mayRead(key) { return ("gat", .read) }
            return grant.mayWrite(key) ? nil : ("gat", .write)
        case .touch(let key, _):
            return grant.mayWrite(key) ? nil : ("touch", .write)
        case .store(let verb, let key, _, _, _, _), .storeTooLarge(let verb, let key, _):
            return grant.mayWrite(key) ? nil : ("\(verb)", .write)
        case .delete(let key, _):
            return grant.mayWrite(key) ? nil : ("delete", .write)
        case .arithmetic(let key, let increment, _, _, _, _):
            return grant.mayWrite(key) ? nil : (increment ? "incr" : "decr", .write)
        case .flush:
            return grant.permissions.contains(.manage) ? nil : ("flush_all", .manage)
        case .verbosity:
            return grant.permissions.contains(.admin) ? nil : ("verbosity", .admin)
        case .stat(let key):
            let words = String(decoding: key, as: UTF8.self).split(separator: " ").map(String.init)
            let needed = Self.permissionForStats(words)
            return needed.isEmpty || grant.permissions.contains(needed) ? nil : ("stats \(words.first ?? "")", needed)
        case .quit, .noop, .version, .saslListMechanisms, .saslAuthenticate, .unknownCommand, .invalidArguments,
            .mechanismTooLong, .badMagic:
            return nil
        }
    }
}
