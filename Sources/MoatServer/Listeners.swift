import Logging
import MoatConfig

/// The listener policy: every configured TCP address, then the unix socket.
/// A failure is fatal, except for ::1 in the default pair (a host without IPv6 still serves on
/// 127.0.0.1); opening nothing at all is fatal too. On failure, what was opened is closed.
func openListeners<Listener>(
    _ configuration: ServerConfiguration, logger: Logger,
    tcp: (ListenAddress) throws -> Listener, unix: (String) throws -> Listener, close: (Listener) -> Void
) throws -> [Listener] {
    var opened: [Listener] = []
    var completed = false
    defer { if !completed { opened.forEach(close) } }
    for address in configuration.listeners {
        do {
            opened.append(try tcp(address))
        } catch {
            if configuration.listenersAreDefault, address.isIPv6 {
                logger.warning("not listening on \(address): \(error)")
                continue
            }
            throw ListenError(description: "cannot listen on \(address): \(error)")
        }
    }
    if let path = configuration.unixSocket {
        do {
            opened.append(try unix(path))
        } catch {
            throw ListenError(description: "cannot listen on unix socket \(path): \(error)")
        }
    }
    if opened.isEmpty { throw ListenError(description: "no listener could be opened") }
    completed = true
    return opened
}
