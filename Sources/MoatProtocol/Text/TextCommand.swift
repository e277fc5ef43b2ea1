#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Space-separated tokens inside a command line, seen in place (keys of a multi-get, `stats` arguments).
/// Valid only while the decoder's callback runs.
public struct TokenList: Sequence {
    public let bytes: UnsafeRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        public mutating func next() -> UnsafeRawBufferPointer? {
            guard let base = bytes.baseAddress else { return nil }
            while position < bytes.count, bytes[position] == 0x20 { position += 1 }
            guard position < bytes.count else { return nil }
            let start = position
            // memchr finds the end of a key far faster than a byte loop.
            if let space = memchr(base + start, 0x20, bytes.count - start) {
                position = base.distance(to: UnsafeRawPointer(space))
            } else {
                position = bytes.count
            }
            return UnsafeRawBufferPointer(start: base + start, count: position - start)
        }
    }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }

    /// The first token, nil when there is none.
    public var first: UnsafeRawBufferPointer? {
        var iterator = makeIterator()
        return iterator.next()
    }

    /// The tokens as strings (for administrative commands only: this allocates).
    public var strings: [String] { map { String(decoding: $0, as: UTF8.self) } }
}

/// One decoded text-protocol request, borrowing its keys and value from the input buffer: no copy
/// and no allocation per request. Valid only inside `TextDecoder.decode`'s callback; `owned()` makes
/// a `TextRequest` that outlives it.
public enum TextCommand {
    case retrieve(keys: TokenList, withCAS: Bool, touchExptime: Int64?)
    case store(
        verb: StoreVerb, key: UnsafeRawBufferPointer, flags: UInt32, exptime: Int64, value: UnsafeRawBufferPointer,
        casUnique: UInt64, noreply: Bool)
    case storeTooLarge(verb: StoreVerb, key: UnsafeRawBufferPointer, noreply: Bool)
    case delete(key: UnsafeRawBufferPointer, noreply: Bool)
    case arithmetic(key: UnsafeRawBufferPointer, delta: UInt64, increment: Bool, noreply: Bool)
    case touch(key: UnsafeRawBufferPointer, exptime: Int64, noreply: Bool)
    case flushAll(delay: Int64, noreply: Bool)
    case version
    case verbosity(level: UInt32, noreply: Bool)
    case quit
    case shutdown(arguments: TokenList)
    case stats(arguments: TokenList)
    case lruCrawler(arguments: TokenList)
    /// memcached's live stream of other clients' commands and keys (refused by Moat).
    case watch(arguments: TokenList)
    /// Reload the TLS certificate files (memcached's `refresh_certs`).
    case refreshCerts
    case cacheMemlimit(megabytes: UInt64, noreply: Bool)
    case error(ErrorReply, noreply: Bool)
    /// `mg ms md ma mn me`.
    case meta(MetaCommand)

    /// A copy that owns its bytes.
    public func owned() -> TextRequest {
        switch self {
        case .retrieve(let keys, let withCAS, let touchExptime):
            return .retrieve(keys: keys.map { Array($0) }, withCAS: withCAS, touchExptime: touchExptime)
        case .store(let verb, let key, let flags, let exptime, let value, let casUnique, let noreply):
            return .store(
                StoreRequest(
                    verb: verb, key: Array(key), flags: flags, exptime: exptime, value: Array(value),
                    casUnique: casUnique,
                    noreply: noreply))
        case .storeTooLarge(let verb, let key, let noreply):
            return .storeTooLarge(verb: verb, key: Array(key), noreply: noreply)
        case .delete(let key, let noreply):
            return .delete(key: Array(key), noreply: noreply)
        case .arithmetic(let key, let delta, let increment, let noreply):
            return .arithmetic(key: Array(key), delta: delta, increment: increment, noreply: noreply)
        case .touch(let key, let exptime, let noreply):
            return .touch(key: Array(key), exptime: exptime, noreply: noreply)
        case .flushAll(let delay, let noreply):
            return .flushAll(delay: delay, noreply: noreply)
        case .version:
            return .version
        case .verbosity(let level, let noreply):
            return .verbosity(level: level, noreply: noreply)
        case .quit:
            return .quit
        case .shutdown(let arguments):
            return .shutdown(arguments: arguments.strings)
        case .stats(let arguments):
            return .stats(arguments: arguments.strings)
        case .lruCrawler(let arguments):
            return .lruCrawler(arguments: arguments.strings)
        case .watch(let arguments):
            return .watch(arguments: arguments.strings)
        case .refreshCerts:
            return .refreshCerts
        case .cacheMemlimit(let megabytes, let noreply):
            return .cacheMemlimit(megabytes: megabytes, noreply: noreply)
        case .error(let reply, let noreply):
            return .error(reply, noreply: noreply)
        case .meta(let command):
            return .meta(command.owned())
        }
    }
}
