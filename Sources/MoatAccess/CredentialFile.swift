import MoatProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The credential file: a versioned text format an operator can read, diff and edit, holding only
// derived SCRAM keys. One user a line:
//   name:scram-sha-256:<iterations>:<salt>:<storedKey>:<serverKey>:scram-sha-1:<iterations>:<salt>:<storedKey>:<serverKey>
// with base64 binary fields; blank lines and lines starting with '#' are ignored, but for one:
//   # unknown-user-salt-key: <base64 of 32 bytes>
// (a comment, so that a Moat that predates it still reads the file).
extension CredentialStore {
    public static let fileHeader = "# moat credentials v1"
    static let saltKeyPrefix = "# unknown-user-salt-key:"
    /// Larger than any plausible user list; keeps a wrong path (a log, a device) from being slurped.
    public static let maximumFileBytes = 16 << 20

    private static let fieldLayout =
        "name:scram-sha-256:iterations:salt:storedKey:serverKey:scram-sha-1:iterations:salt:storedKey:serverKey"

    /// Reads the text of a credential file. Errors name the line and what is wrong with it.
    public static func parse(_ text: String) throws -> CredentialStore {
        var store = CredentialStore()
        var definedOn: [String: Int] = [:]
        var sawHeader = false
        for (index, rawLine) in lines(of: text).enumerated() {
            let number = index + 1
            let line = trimmed(rawLine)
            if !sawHeader {
                guard line == fileHeader else {
                    if line.hasPrefix("# moat credentials") {
                        throw CredentialError(
                            """
                            line \(number): unsupported credential file version '\(line)'; this Moat reads \
                            '\(fileHeader)'
                            """
                        )
                    }
                    throw CredentialError(
                        """
                        line \(number): expected the header '\(fileHeader)' as the first line; is this a Moat \
                        credential file? (a memcached 'user:password' file is read with the plaintext import \
                        instead)
                        """
                    )
                }
                sawHeader = true
                continue
            }
            if line.hasPrefix(saltKeyPrefix) {
                let text = trimmed(String(line.dropFirst(saltKeyPrefix.count)))
                guard store.saltKey == nil else {
                    throw CredentialError("line \(number): a second unknown-user salt key; remove one of them")
                }
                guard let key = Base64.decode(text.utf8), key.count == 32 else {
                    throw CredentialError("line \(number): the unknown-user salt key must be 32 bytes of base64")
                }
                store.saltKey = key
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let credential: UserCredential
            do {
                credential = try parseUser(line)
                try store.add(credential)
            } catch let error as CredentialError {
                throw CredentialError("line \(number): \(error.description)")
            }
            if let previous = definedOn[credential.name] {
                throw CredentialError(
                    """
                    line \(number): user '\(escaped(credential.name))' is already defined on line \(previous); \
                    remove one of them
                    """
                )
            }
            definedOn[credential.name] = number
        }
        guard sawHeader else {
            throw CredentialError("line 1: the file is empty; a credential file starts with '\(fileHeader)'")
        }
        // Derived once here rather than at every attempt; the next `moat user` edit writes it down.
        if store.saltKey == nil { store.saltKey = store.unknownUserSaltKey }
        return store
    }

    private static func parseUser(_ line: String) throws -> UserCredential {
        let fields = fields(of: line)
        guard fields.count == 11 else {
            throw CredentialError("expected 11 colon-separated fields (\(fieldLayout)), found \(fields.count)")
        }
        try validate(name: fields[0])
        return UserCredential(
            name: fields[0],
            sha256: try parseKeys(fields[1...5], marker: "scram-sha-256", .sha256),
            sha1: try parseKeys(fields[6...10], marker: "scram-sha-1", .sha1))
    }

    private static func parseKeys(_ fields: ArraySlice<String>, marker: String, _ hash: SCRAMHash) throws -> SCRAMKeys {
        let f = Array(fields)
        guard f[0] == marker else {
            throw CredentialError("field \(fields.startIndex + 1) is '\(f[0].prefix(32))', expected '\(marker)'")
        }
        guard let iterations = Int(f[1]), (minimumIterations...maximumIterations).contains(iterations) else {
            throw CredentialError(
                """
                \(marker) iterations '\(f[1].prefix(32))' is not a whole number in \
                \(minimumIterations)...\(maximumIterations)
                """
            )
        }
        var decoded: [[UInt8]] = []
        for (offset, label) in ["salt", "stored key", "server key"].enumerated() {
            guard let bytes = Base64.decode(f[2 + offset]) else {
                throw CredentialError("\(marker) \(label) is not valid base64")
            }
            decoded.append(bytes)
        }
        return SCRAMKeys(salt: decoded[0], iterations: iterations, storedKey: decoded[1], serverKey: decoded[2])
    }

    /// The file's text: header, then one line per user in name order (stable diffs).
    public func serialized() -> String {
        var out = Self.fileHeader + "\n"
        if let saltKey {
            out += "\(Self.saltKeyPrefix) \(Base64.encode(saltKey))\n"
        }
        for name in userNames {
            guard let user = credential(for: name) else { continue }
            var fields = [user.name]
            for (marker, keys) in [("scram-sha-256", user.sha256), ("scram-sha-1", user.sha1)] {
                fields += [
                    marker, String(keys.iterations), Base64.encode(keys.salt),
                    Base64.encode(keys.storedKey), Base64.encode(keys.serverKey),
                ]
            }
            out += fields.joined(separator: ":") + "\n"
        }
        return out
    }

    /// Imports memcached's `-Y` file: `user:password` a line (the password runs from the first ':'
    /// to the end of the line, so it may contain ':'), blank lines skipped. Unlike memcached, which
    /// silently keeps only the first 8 entries, every user is imported. Keys use SCRAM's minimum
    /// iterations: the password is on disk in clear anyway, and a big import should not take minutes.
    /// `previous`: the credentials in use (on reload); a user whose password is unchanged keeps its keys, so
    /// the reload does not look like a password change and close that user's sessions.
    public static func fromMemcachedPlaintext(_ text: String, reusing previous: CredentialStore? = nil) throws
        -> CredentialStore
    {
        var store = CredentialStore()
        // Real salts here are new at each start, so the fake ones are too; a reload keeps both.
        store.saltKey = previous?.saltKey ?? randomBytes(32)
        var definedOn: [String: Int] = [:]
        for (index, line) in lines(of: text).enumerated() {
            let number = index + 1
            if trimmed(line).isEmpty { continue }
            let utf8 = Array(line.utf8)
            guard let colon = utf8.firstIndex(of: UInt8(ascii: ":")) else {
                throw CredentialError("line \(number): expected 'user:password' (no ':' found)")
            }
            let name = String(decoding: utf8[..<colon], as: UTF8.self)
            let password = Array(utf8[(colon + 1)...])
            if let previous = definedOn[name] {
                throw CredentialError(
                    "line \(number): user '\(escaped(name))' is already defined on line \(previous); remove one of them"
                )
            }
            do {
                if let old = previous?.credential(for: name), old.sha256.iterations == minimumIterations,
                    old.sha256.matches(password: password, .sha256), old.sha1.matches(password: password, .sha1)
                {
                    try store.add(old)
                } else {
                    try store.add(user: name, password: password, iterations: minimumIterations)
                }
            } catch let error as CredentialError {
                throw CredentialError("line \(number): \(error.description)")
            }
            definedOn[name] = number
        }
        return store
    }

    /// Lines without their terminator; a CRLF file reads like an LF one. Split on Unicode scalars,
    /// not Characters: Swift joins "\r\n", and a ':' followed by a combining mark, into one Character.
    private static func lines(of text: String) -> [String] {
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }  // the final newline ends a line, it does not start one
        return lines.map { String($0.last == "\r" ? $0.dropLast() : $0) }
    }

    private static func fields(of line: String) -> [String] {
        line.unicodeScalars.split(separator: ":", omittingEmptySubsequences: false).map { String($0) }
    }

    private static func trimmed(_ line: String) -> String {
        let scalars = line.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}

// MARK: Files

extension CredentialStore {
    /// Reads a credential file. It must be a regular file of at most `maximumFileBytes` that only
    /// its owner can read or write: the keys in it are enough to impersonate the server to clients
    /// and to mount an offline guessing attack on the passwords.
    public static func load(path: String) throws -> CredentialStore {
        // O_NONBLOCK: opening a FIFO must not hang startup before fstat gets to refuse it.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw CredentialError("\(path): cannot open the credential file: \(errorText())")
        }
        defer { close(fd) }
        // fstat on the descriptor we read from, so the checked file is the read one.
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw CredentialError("\(path): cannot stat the credential file: \(errorText())")
        }
        guard info.st_mode & 0o170000 == 0o100000 else {
            throw CredentialError("\(path): the credential file is not a regular file")
        }
        let permissions = info.st_mode & 0o7777
        guard permissions & 0o077 == 0 else {
            throw CredentialError(
                """
                \(path): mode \(octal(permissions)) lets other users access the credential file; restrict it to \
                its owner: chmod 600 \(path)
                """
            )
        }
        guard info.st_size <= maximumFileBytes else {
            throw CredentialError(
                """
                \(path): the credential file is \(info.st_size) bytes, more than the \(maximumFileBytes) allowed; \
                is this the right file?
                """
            )
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw CredentialError("\(path): cannot read the credential file: \(errorText())")
            }
            if count == 0 { break }
            bytes += chunk[..<count]
            // The size was checked before reading, but the file may have grown since.
            guard bytes.count <= maximumFileBytes else {
                throw CredentialError(
                    "\(path): the credential file is more than \(maximumFileBytes) bytes; is this the right file?")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CredentialError("\(path): the credential file is not valid UTF-8 text")
        }
        do {
            return try parse(text)
        } catch let error as CredentialError {
            throw CredentialError("\(path): \(error.description)")
        }
    }

    /// Writes the file atomically: a temporary file beside it (mode 0600 from creation, so the keys
    /// are never readable by others), fsync, rename over `path`, fsync of the directory. Readers see
    /// the old file or the new one, never a torn one. A symlink at `path` is replaced, not followed.
    public func save(path: String) throws {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty else {
            throw CredentialError("\(path): not a file name")
        }
        var template = Array("\(directory)/.\(base).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw CredentialError("\(path): cannot create a temporary file in \(directory): \(errorText())")
        }
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var renamed = false
        defer { if !renamed { unlink(temporary) } }
        do {
            defer { close(fd) }
            // mkstemp's 0600 is masked by the umask; make it exactly 0600 whatever the umask.
            guard fchmod(fd, 0o600) == 0 else {
                throw CredentialError("\(temporary): cannot set mode 600: \(errorText())")
            }
            let bytes = Array(serialized().utf8)
            var written = 0
            while written < bytes.count {
                let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
                if count < 0 {
                    if errno == EINTR { continue }
                    throw CredentialError("\(temporary): cannot write: \(errorText())")
                }
                written += count
            }
            guard fsync(fd) == 0 else {
                throw CredentialError("\(temporary): cannot fsync: \(errorText())")
            }
        }
        guard rename(temporary, path) == 0 else {
            throw CredentialError("\(path): cannot replace the credential file with \(temporary): \(errorText())")
        }
        renamed = true
        // Make the rename itself durable; failing here leaves a complete file in place, so it is not an error.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }
}

private func errorText() -> String {
    String(cString: strerror(errno))
}

private func octal(_ mode: mode_t) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
