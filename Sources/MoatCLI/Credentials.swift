import ArgumentParser
import Logging
import MoatAccess
import MoatConfig
import MoatEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns `-S --credentials FILE` / `-Y FILE` and the `-o auth_*` limits into the engine's settings.
func loadAuthentication(_ options: AuthenticationOptions, logger: Logger) throws -> AuthenticationSettings {
    let store = try loadCredentials(options, logger: logger)
    var policy = AuthPolicy()
    policy.failureBurst = options.failureBurst
    policy.failureDelay = options.failureDelay
    policy.maxFailureDelay = max(options.failureDelay, policy.maxFailureDelay)
    policy.lockoutThreshold = options.lockoutFailures
    policy.lockoutDuration = Double(options.lockoutSeconds)
    return AuthenticationSettings(
        store: store, mechanisms: options.mechanisms.compactMap(SASLMechanism.init(rawValue:)), policy: policy,
        maxFailuresPerConnection: options.maxFailuresPerConnection, timeout: options.timeout)
}

/// The users of `--credentials FILE` or `-Y FILE` (at start, and again on SIGHUP).
/// `previous`: the credentials in use, on reload (see `fromMemcachedPlaintext`).
func loadCredentials(_ options: AuthenticationOptions, logger: Logger, previous: CredentialStore? = nil) throws
    -> CredentialStore
{
    let store: CredentialStore
    if let path = options.credentialsPath {
        store = try CredentialStore.load(path: path)
    } else if let path = options.plaintextPath {
        let text = try readTextFile(path)
        store = try CredentialStore.fromMemcachedPlaintext(text, reusing: previous)
        logger.warning(
            """
            -Y \(path) holds passwords in plaintext (memcached's format); move its users to a credentials file \
            with `moat user add NAME --credentials FILE` and serve with --credentials
            """
        )
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & 0o077 != 0 {
            logger.warning(
                """
                -Y \(path) can be read by other accounts (mode \(String(status.st_mode & 0o777, radix: 8))): chmod \
                600 it
                """
            )
        }
    } else {
        throw CLIError("no credentials given")
    }
    let uncommon = store.usersWithUncommonIterations
    if !uncommon.isEmpty {
        logger.warning(
            """
            \(options.credentialsPath ?? options.plaintextPath ?? ""): \(uncommon.count) user(s) have other \
            iteration counts than most (\(uncommon.prefix(5).joined(separator: ", "))); SCRAM shows a client the \
            count, which tells that these names exist: give every user the same --iterations
            """
        )
    }
    // No users is a valid state (nobody can log in): deleting the last user and reloading must take
    // effect, not leave the old users in place.
    if store.isEmpty {
        logger.warning(
            """
            \(options.credentialsPath ?? options.plaintextPath ?? ""): no users, so nobody can log in; add one \
            with `moat user add NAME --credentials FILE`
            """
        )
    }
    return store
}

/// A whole small file as text (credentials files are bounded by the store's own checks; this reads at most 16 MiB).
func readTextFile(_ path: String) throws -> String {
    guard let file = fopen(path, "r") else {
        throw CLIError("cannot read \(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk[0..<count]
        if bytes.count > 16 << 20 { throw CLIError("\(path): larger than 16 MiB") }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// `moat user add|del|list`: manages a credentials file of salted SCRAM keys; no password is stored.
struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Manage the users of a credentials file (salted, slow SCRAM keys; never a password).",
        subcommands: [Add.self, Delete.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                """
                Add a user, or change its password. The password is asked for on a terminal, else read from \
                standard input.
                """
        )

        @Argument(help: "User name.") var name: String
        @Option(help: "Credentials file (created with mode 0600 if missing).") var credentials: String
        @Option(help: "PBKDF2 iterations for the SCRAM keys (Cyrus SASL clients such as pylibmc accept at most 65536).")
        var iterations: Int = CredentialStore.defaultIterations

        func run() throws {
            guard (CredentialStore.minimumIterations...CredentialStore.maximumIterations).contains(iterations) else {
                throw ValidationError(
                    """
                    --iterations must be between \(CredentialStore.minimumIterations) (SCRAM's minimum) and \
                    \(CredentialStore.maximumIterations) (each PLAIN attempt costs the server one derivation)
                    """
                )
            }
            if iterations > CredentialStore.cyrusClientMaximumIterations {
                FileHandleStandardError.write(
                    """
                    moat: warning: Cyrus SASL clients (pylibmc, memcstat) refuse SCRAM with more than \
                    \(CredentialStore.cyrusClientMaximumIterations) iterations; they can still use PLAIN\n
                    """
                )
            }
            let password = try readPassword()
            try withCredentialsLock(credentials) {
                var store = try loadOrCreate(credentials)
                do {
                    try store.add(user: name, password: password, iterations: iterations)
                    try store.save(path: credentials)
                } catch let error as CredentialError {
                    throw ValidationError(error.description)
                }
                if store.usersWithUncommonIterations.contains(name) {
                    FileHandleStandardError.write(
                        """
                        moat: warning: \(name) has other iteration counts than most users of \(credentials); SCRAM \
                        shows a client the count, which tells that \(name) exists\n
                        """
                    )
                }
            }
            print("saved \(name) in \(credentials)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "del", abstract: "Remove a user.", aliases: ["delete", "remove"])

        @Argument(help: "User name.") var name: String
        @Option(help: "Credentials file.") var credentials: String

        func run() throws {
            try withCredentialsLock(credentials) {
                var store = try loadExisting(credentials)
                guard store.remove(user: name) else { throw ValidationError("\(credentials): no user \(name)") }
                try wrap { try store.save(path: credentials) }
            }
            print("removed \(name) from \(credentials)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the users (names only).")

        @Option(help: "Credentials file.") var credentials: String

        func run() throws {
            let store = try loadExisting(credentials)
            for name in store.userNames { print(name) }
        }
    }
}

private func wrap<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as CredentialError { throw ValidationError(error.description) }
}

/// Runs a read-modify-write of the credentials file holding an exclusive lock on `path.lock`: two
/// `moat user` runs at once would otherwise each save their own copy and undo the other's change
/// (a deleted user back). A side file, since `save` renames a new file over `path`. Waits at most 30 s.
private func withCredentialsLock(_ path: String, _ body: () throws -> Void) throws {
    let lockPath = path + ".lock"
    let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else { throw CLIError("\(lockPath): cannot open the lock file: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var waited = 0
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
        guard errno == EWOULDBLOCK || errno == EINTR, waited < 3000 else {
            throw CLIError(
                "\(lockPath): cannot lock (another `moat user` still running?): \(String(cString: strerror(errno)))")
        }
        usleep(10_000)
        waited += 1
    }
    defer { _ = flock(fd, LOCK_UN) }
    try body()
}

private func loadExisting(_ path: String) throws -> CredentialStore {
    try wrap { try CredentialStore.load(path: path) }
}

private func loadOrCreate(_ path: String) throws -> CredentialStore {
    if access(path, F_OK) != 0, errno == ENOENT { return CredentialStore() }
    return try loadExisting(path)
}

/// Twice with echo off on a terminal; otherwise one line of standard input (so scripts and tests can pipe it).
private func readPassword() throws -> [UInt8] {
    if isatty(0) == 1 {
        let first = try promptWithoutEcho("Password: ")
        let second = try promptWithoutEcho("Again: ")
        guard first == second else { throw ValidationError("the passwords differ") }
        guard !first.isEmpty else { throw ValidationError("empty password") }
        return first
    }
    guard var line = readLine(strippingNewline: true).map({ Array($0.utf8) }) else {
        throw ValidationError("no password on standard input")
    }
    if line.last == 0x0d { line.removeLast() }
    guard !line.isEmpty else { throw ValidationError("empty password on standard input") }
    return line
}

func promptWithoutEcho(_ prompt: String) throws -> [UInt8] {
    FileHandleStandardError.write(prompt)
    var saved = termios()
    tcgetattr(0, &saved)
    var silent = saved
    silent.c_lflag &= ~tcflag_t(ECHO)
    tcsetattr(0, TCSAFLUSH, &silent)
    defer {
        tcsetattr(0, TCSAFLUSH, &saved)
        FileHandleStandardError.write("\n")
    }
    guard let line = readLine(strippingNewline: true) else { throw ValidationError("no password given") }
    return Array(line.utf8)
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
