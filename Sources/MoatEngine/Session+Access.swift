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

    /// What a text command needs, by the name the security log gives it. A multi-key get needs its
    /// first key here; `permits` asks for the others.
    static func need(_ command: TextCommand) -> (name: String, need: AccessNeed, noreply: Bool) {
        switch command {
        case .retrieve(let keys, _, let touch):
            // gat/gats set a TTL (gat -1 deletes in effect): a write as well.
            guard let first = keys.first else { return ("get", .nothing, false) }
            return touch == nil ? ("get", .read(first), false) : ("gat", .readWrite(first), false)
        case .store(let verb, let key, _, _, _, _, let noreply), .storeTooLarge(let verb, let key, let noreply):
            return ("\(verb)", .write(key), noreply)
        case .delete(let key, let noreply): return ("delete", .write(key), noreply)
        case .arithmetic(let key, _, let increment, let noreply):
            return (increment ? "incr" : "decr", .write(key), noreply)
        case .touch(let key, _, let noreply): return ("touch", .write(key), noreply)
        case .flushAll(_, let noreply): return ("flush_all", .permission(.manage), noreply)
        case .verbosity(_, let noreply): return ("verbosity", .permission(.admin), noreply)
        case .shutdown: return ("shutdown", .permission(.admin), false)
        case .refreshCerts: return ("refresh_certs", .permission(.admin), false)
        case .cacheMemlimit(_, let noreply): return ("cache_memlimit", .permission(.admin), noreply)
        case .stats(let arguments):
            let words = arguments.strings
            return ("stats \(words.first ?? "")", .stats(words), false)
        case .lruCrawler: return ("lru_crawler", .permission(.dump), false)
        case .watch: return ("watch", .permission(.dump), false)
        case .meta, .version, .quit, .error: return ("", .nothing, false)  // meta: checked once its key is decoded
        }
    }

    /// What a meta command needs once its key is decoded.
    static func need(_ command: MetaCommand, _ key: UnsafeRawBufferPointer) -> (name: String, need: AccessNeed) {
        switch command.verb {
        case .noop: return ("mn", .nothing)
        case .get:
            // mg with N creates the item on a miss, and with T sets its TTL: those are writes as well.
            let writes = command.flags.has("N") || command.flags.has("T")
            return ("mg", writes ? .readWrite(key) : .read(key))
        case .debug: return ("me", .read(key))
        case .set: return ("ms", .write(key))
        case .delete: return ("md", .write(key))
        case .arithmetic: return ("ma", .write(key))
        }
    }

    /// What a binary operation needs.
    static func need(_ operation: BinaryOperation<UnsafeRawBufferPointer>) -> (name: String, need: AccessNeed) {
        switch operation {
        case .get(let key, _, _): return ("get", .read(key))
        case .getAndTouch(let key, _, _, _): return ("gat", .readWrite(key))  // setting the TTL is a write
        case .touch(let key, _): return ("touch", .write(key))
        case .store(let verb, let key, _, _, _, _), .storeTooLarge(let verb, let key, _):
            return ("\(verb)", .write(key))
        case .delete(let key, _): return ("delete", .write(key))
        case .arithmetic(let key, let increment, _, _, _, _): return (increment ? "incr" : "decr", .write(key))
        case .flush: return ("flush_all", .permission(.manage))
        case .verbosity: return ("verbosity", .permission(.admin))
        case .stat(let key):
            let words = String(decoding: key, as: UTF8.self).split(separator: " ").map(String.init)
            return ("stats \(words.first ?? "")", .stats(words))
        case .quit, .noop, .version, .saslListMechanisms, .saslAuthenticate, .unknownCommand, .invalidArguments,
            .mechanismTooLong, .badMagic:
            return ("", .nothing)
        }
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

    // MARK: checks, per dialect

    /// Checks a text command against the grant; on refusal writes the error and returns false.
    mutating func permits(_ command: TextCommand, into out: inout ByteBuffer) -> Bool {
        let (name, need, noreply) = Self.need(command)
        var category = missing(need)
        if category == nil, case .retrieve(let keys, _, let touch) = command {
            for key in keys.dropFirst() where category == nil {  // the first was `need`'s
                category = missing(touch == nil ? .read(key) : .readWrite(key))
            }
        }
        guard let category else { return true }
        deny(name, category)
        if !noreply { TextEncoder.writeLine("CLIENT_ERROR permission denied", into: &out) }
        return false
    }

    /// Checks a meta command once its key is known; on refusal writes the error and returns false.
    mutating func permitsMeta(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) -> Bool
    {
        let (name, need) = Self.need(command, key)
        guard let category = missing(need) else { return true }
        deny(name, category)
        TextEncoder.writeLine("CLIENT_ERROR permission denied", into: &out)
        return false
    }

    /// The name and category a binary operation lacks under the grant; nil when allowed.
    func binaryRefusal(_ operation: BinaryOperation<UnsafeRawBufferPointer>) -> (String, Permissions)? {
        let (name, need) = Self.need(operation)
        return missing(need).map { (name, $0) }
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
