/// The configuration file's `server` section, read into the types of the flags it names (memcached's
/// long flag names): nil or false where the file says nothing. `ServeOptions.fill(from:)` puts it
/// under the command line's flags; nothing goes through argv.
package struct ServerSection: Sendable, Equatable {
    package var port: Int?
    package var listen: [String]?
    package var unixSocket: String?
    package var unixMask: String?
    package var udpPort: Int?
    package var memoryLimit: String?
    package var disableEvictions = false
    package var connLimit: Int?
    package var threads: Int?
    package var maxItemSize: String?
    package var verbose = 0
    package var user: String?
    package var protocolMode: String?
    package var enableShutdown = false
    package var disableFlushAll = false
    package var disableDumping = false
    package var disableWatch = false
    package var extended: [String] = []
    package var enableSASL = false
    package var credentials: String?
    package var authFile: String?
    package var enableTLS = false
    package var pidFile: String?
    package var memoryFile: String?
    package var backlog: Int?
    package var logFormat: String?

    package init() {}
}

extension ServeOptions {
    /// Takes what `file` sets wherever the command line did not: a value given on the command line
    /// wins, a command-line `-l` replaces the file's listen list, a flag either turns on stays on, and
    /// `-v` and `-o` add to the file's.
    package mutating func fill(from file: ServerSection) {
        let numbers: [(WritableKeyPath<ServeOptions, Int?>, KeyPath<ServerSection, Int?>)] = [
            (\.port, \.port), (\.udpPort, \.udpPort), (\.connLimit, \.connLimit), (\.threads, \.threads),
            (\.backlog, \.backlog),
        ]
        for (flag, setting) in numbers where self[keyPath: flag] == nil { self[keyPath: flag] = file[keyPath: setting] }
        let texts: [(WritableKeyPath<ServeOptions, String?>, KeyPath<ServerSection, String?>)] = [
            (\.unixSocket, \.unixSocket), (\.unixMask, \.unixMask), (\.memoryLimit, \.memoryLimit),
            (\.maxItemSize, \.maxItemSize), (\.user, \.user), (\.protocolMode, \.protocolMode),
            (\.credentials, \.credentials), (\.authFile, \.authFile), (\.pidFile, \.pidFile),
            (\.memoryFile, \.memoryFile), (\.logFormat, \.logFormat),
        ]
        for (flag, setting) in texts where self[keyPath: flag] == nil { self[keyPath: flag] = file[keyPath: setting] }
        let switches: [(WritableKeyPath<ServeOptions, Bool>, KeyPath<ServerSection, Bool>)] = [
            (\.disableEvictions, \.disableEvictions), (\.enableShutdown, \.enableShutdown),
            (\.disableFlushAll, \.disableFlushAll), (\.disableDumping, \.disableDumping),
            (\.disableWatch, \.disableWatch), (\.enableSASL, \.enableSASL), (\.enableTLS, \.enableTLS),
        ]
        for (flag, setting) in switches where file[keyPath: setting] { self[keyPath: flag] = true }
        if listen.isEmpty { listen = file.listen ?? [] }
        verbose += file.verbose
        extended = file.extended + extended
    }
}
