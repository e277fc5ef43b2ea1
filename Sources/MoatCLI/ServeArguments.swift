import MoatConfig

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// memcached-style flags plus the configuration file they may name, as `moat serve`, `moat check` and
/// `moat firewall` all read them.
struct ServeArguments {
    var options: ServeOptions
    var file: ConfigFile?
    var path: String?

    /// `arguments` are serve's flags (no subcommand name). The configuration file's server settings
    /// fill what the command line leaves unset (`ServeOptions.fill(from:)`: a flag given on both wins,
    /// a command-line `-l` replaces the file's listen list). `parsed` saves parsing the flags twice.
    static func load(_ arguments: [String], parsed: ServeOptions? = nil) throws -> ServeArguments {
        let options: ServeOptions
        if let parsed {
            options = parsed
        } else {
            do {
                options = try ServeOptions.parse(arguments)
            } catch {
                throw ConfigurationError(ServeOptions.message(for: error))
            }
        }
        let path: String
        if let given = options.configFile, !options.noConfig {
            path = given
        } else if !options.noConfig, access(ConfigFile.defaultPath, F_OK) == 0 {
            path = ConfigFile.defaultPath
        } else {
            return ServeArguments(options: options, file: nil, path: nil)
        }
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw ConfigurationError("--config: \(error)")
        }
        let file = try ConfigFile.parse(text, path: path)
        var merged = options
        merged.fill(from: file.server)
        return ServeArguments(options: merged, file: file, path: path)
    }
}
