import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decodes memcached's text protocol: bytes in, one `TextRequest` at a time out.
///
/// Pure and incremental: feed it whatever arrived; it consumes only complete requests and keeps the
/// state of a partially received data block. Every buffer it may ask the caller to hold is bounded:
/// a command line by `maxLineLength` (retrieval lines by `maxRetrievalLineLength`), a data block by
/// `maxItemSize` + 2. Larger data blocks are swallowed as they arrive, never buffered.
public struct TextDecoder: Sendable {
    struct PendingStore: Sendable, Equatable {
        var verb: StoreVerb
        var key: [UInt8]
        var flags: UInt32
        var exptime: Int64
        var length: Int
        var casUnique: UInt64
        var noreply: Bool
    }

    enum State: Sendable, Equatable {
        case line
        case data(PendingStore)
        /// Bytes of a refused data block still to discard.
        case swallow(Int)
    }

    private(set) var state: State = .line
    public let limits: ProtocolLimits

    public init(limits: ProtocolLimits = ProtocolLimits()) {
        self.limits = limits
    }

    /// True while a data block or swallowed bytes are outstanding (a request is half received).
    public var isMidRequest: Bool { state != .line }

    /// The next complete request, consuming its bytes from `buffer`; nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> TextRequest? {
        while true {
            switch state {
            case .swallow(let remaining):
                let count = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: count)
                if count < remaining {
                    state = .swallow(remaining - count)
                    return nil
                }
                state = .line
            case .data(let pending):
                guard buffer.readableBytes >= pending.length + 2 else { return nil }
                let value = buffer.readBytes(length: pending.length) ?? []
                let terminator = buffer.readInteger(as: UInt16.self) ?? 0
                state = .line
                guard terminator == 0x0D0A else { return .error(.badDataChunk, noreply: pending.noreply) }
                return .store(
                    StoreRequest(
                        verb: pending.verb, key: pending.key, flags: pending.flags, exptime: pending.exptime,
                        value: value, casUnique: pending.casUnique, noreply: pending.noreply))
            case .line:
                switch decodeLine(&buffer) {
                case .needMore: return nil
                case .request(let request): return request
                case .awaitData: continue
                }
            }
        }
    }

    enum LineOutcome {
        case needMore
        case request(TextRequest)
        /// A storage header was read; its data block comes next.
        case awaitData
    }

    private mutating func decodeLine(_ buffer: inout ByteBuffer) -> LineOutcome {
        let newline: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
            guard let found = memchr(base, 0x0A, bytes.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
        guard let newline else {
            if buffer.readableBytes > limits.maxLineLength {
                if buffer.readableBytes <= limits.maxRetrievalLineLength, Self.startsRetrieval(buffer) {
                    return .needMore
                }
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                return .request(.error(.lineTooLong, noreply: false))
            }
            return .needMore
        }
        let line = buffer.readBytes(length: newline + 1) ?? []
        var end = newline
        if end > 0, line[end - 1] == 0x0D { end -= 1 }
        if end > limits.maxLineLength, !Self.startsRetrieval(line) || end > limits.maxRetrievalLineLength {
            return .request(.error(.lineTooLong, noreply: false))
        }
        let tokens = Self.tokenize(line, end: end)
        return parse(line, tokens)
    }

    static func startsRetrieval(_ buffer: ByteBuffer) -> Bool {
        let prefix = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, 5)) ?? []
        return startsRetrieval(prefix)
    }

    static func startsRetrieval(_ bytes: [UInt8]) -> Bool {
        func has(_ word: String) -> Bool {
            let w = Array(word.utf8)
            return bytes.count >= w.count && Array(bytes[0..<w.count]) == w
        }
        return has("get ") || has("gets ") || has("gat ") || has("gats ")
    }

    /// Splits on spaces, skipping empty tokens, as memcached does.
    static func tokenize(_ line: [UInt8], end: Int) -> [Range<Int>] {
        var tokens: [Range<Int>] = []
        var start = -1
        for index in 0..<end {
            if line[index] == 0x20 {
                if start >= 0 { tokens.append(start..<index); start = -1 }
            } else if start < 0 {
                start = index
            }
        }
        if start >= 0 { tokens.append(start..<end) }
        return tokens
    }

    // MARK: commands

    private mutating func parse(_ line: [UInt8], _ tokens: [Range<Int>]) -> LineOutcome {
        guard let first = tokens.first else { return .request(.error(.error, noreply: false)) }
        let command = String(decoding: line[first], as: UTF8.self)
        func token(_ i: Int) -> ArraySlice<UInt8> { line[tokens[i]] }
        let noreply = tokens.count > 1 && Self.equals(line, tokens[tokens.count - 1], "noreply")

        switch command {
        case "get", "gets":
            return .request(retrieval(line, tokens, keysFrom: 1, withCAS: command == "gets", exptime: nil))
        case "gat", "gats":
            guard tokens.count >= 3 else { return .request(.error(.error, noreply: false)) }
            guard let exptime = Self.parseSigned(token(1)) else {
                return .request(.error(.invalidExptime, noreply: false))
            }
            return .request(retrieval(line, tokens, keysFrom: 2, withCAS: command == "gats", exptime: exptime))
        case "set", "add", "replace", "append", "prepend", "cas":
            return storageHeader(command, line, tokens, noreply: noreply)
        case "delete":
            guard tokens.count >= 2, tokens.count <= 4 else { return .request(.error(.error, noreply: false)) }
            if tokens.count > 2 {
                let holdIsZero = Self.equals(line, tokens[2], "0")
                let valid = (tokens.count == 3 && (holdIsZero || noreply)) || (tokens.count == 4 && holdIsZero && noreply)
                guard valid else { return .request(.error(.badDeleteUsage, noreply: false)) }
            }
            guard let key = validKey(token(1)) else { return .request(.error(.badCommandLine, noreply: noreply)) }
            return .request(.delete(key: key, noreply: noreply))
        case "incr", "decr":
            guard tokens.count == 3 || tokens.count == 4 else { return .request(.error(.error, noreply: false)) }
            guard let key = validKey(token(1)) else { return .request(.error(.badCommandLine, noreply: noreply)) }
            guard let delta = Self.parseUnsigned(token(2)) else { return .request(.error(.invalidDelta, noreply: noreply)) }
            return .request(.arithmetic(key: key, delta: delta, increment: command == "incr", noreply: noreply))
        case "touch":
            guard tokens.count == 3 || tokens.count == 4 else { return .request(.error(.error, noreply: false)) }
            guard let key = validKey(token(1)) else { return .request(.error(.badCommandLine, noreply: noreply)) }
            guard let exptime = Self.parseSigned(token(2)) else { return .request(.error(.invalidExptime, noreply: noreply)) }
            return .request(.touch(key: key, exptime: exptime, noreply: noreply))
        case "flush_all":
            guard tokens.count <= 3 else { return .request(.error(.error, noreply: false)) }
            let delayTokens = tokens.count - 1 - (noreply ? 1 : 0)
            var delay: Int64 = 0
            if delayTokens == 1 {
                guard let parsed = Self.parseSigned(token(1)) else {
                    return .request(.error(.badCommandLine, noreply: noreply))
                }
                delay = parsed
            } else if delayTokens != 0 {
                return .request(.error(.error, noreply: false))
            }
            return .request(.flushAll(delay: delay, noreply: noreply))
        case "version":
            return .request(.version)
        case "verbosity":
            guard tokens.count == 2 || tokens.count == 3 else { return .request(.error(.error, noreply: false)) }
            let level = Self.parseUnsigned(token(1)).map { UInt32(clamping: $0) } ?? 0
            return .request(.verbosity(level: level, noreply: noreply))
        case "quit":
            return .request(.quit)
        case "shutdown":
            return .request(.shutdown(arguments: Self.strings(line, tokens.dropFirst())))
        case "stats":
            return .request(.stats(arguments: Self.strings(line, tokens.dropFirst())))
        case "lru_crawler":
            return .request(.lruCrawler(arguments: Self.strings(line, tokens.dropFirst())))
        case "cache_memlimit":
            guard tokens.count == 2 || tokens.count == 3 else { return .request(.error(.error, noreply: false)) }
            guard let megabytes = Self.parseUnsigned(token(1)) else {
                return .request(.error(.badCommandLine, noreply: noreply))
            }
            return .request(.cacheMemlimit(megabytes: megabytes, noreply: noreply))
        default:
            // A forged HTTP request ("GET / HTTP/1.1") must not drive the cache: close, as memcached does.
            // Only for unknown commands (as memcached), so that `get HTTP/1.1` stays a lookup of that key.
            if tokens.count >= 2, Self.hasPrefix(line, tokens[tokens.count - 1], "HTTP/") {
                return .request(.error(.forgedHTTP, noreply: false))
            }
            return .request(.error(.error, noreply: false))
        }
    }

    private func retrieval(_ line: [UInt8], _ tokens: [Range<Int>], keysFrom: Int, withCAS: Bool, exptime: Int64?) -> TextRequest {
        guard tokens.count > keysFrom else { return .error(.error, noreply: false) }
        var keys: [[UInt8]] = []
        keys.reserveCapacity(tokens.count - keysFrom)
        for index in keysFrom..<tokens.count {
            guard let key = validKey(line[tokens[index]]) else { return .error(.badCommandLine, noreply: false) }
            keys.append(key)
        }
        return .retrieve(keys: keys, withCAS: withCAS, touchExptime: exptime)
    }

    private mutating func storageHeader(_ command: String, _ line: [UInt8], _ tokens: [Range<Int>], noreply: Bool) -> LineOutcome {
        let isCAS = command == "cas"
        let required = isCAS ? 6 : 5
        guard tokens.count == required || tokens.count == required + 1 else {
            return .request(.error(.error, noreply: false))
        }
        // Without a sane length we cannot know where the data block ends: answer and read it as commands,
        // as memcached does.
        guard let declared = Self.parseSigned(line[tokens[4]]), declared >= 0, declared <= Int64(Int32.max) - 2 else {
            return .request(.error(.badCommandLine, noreply: noreply))
        }
        let length = Int(declared)
        let verb: StoreVerb
        switch command {
        case "set": verb = .set
        case "add": verb = .add
        case "replace": verb = .replace
        case "append": verb = .append
        case "prepend": verb = .prepend
        default: verb = .cas
        }
        let key = validKey(line[tokens[1]])
        let flags = Self.parseUnsigned(line[tokens[2]]).flatMap { UInt32(exactly: $0) }
        let exptime = Self.parseSigned(line[tokens[3]])
        let casUnique: UInt64? = isCAS ? Self.parseUnsigned(line[tokens[5]]) : 0
        guard let key, let flags, let exptime, let casUnique else {
            // Unlike memcached, discard the data block too: it must never be read as commands.
            state = .swallow(length + 2)
            return .request(.error(.badCommandLine, noreply: noreply))
        }
        if length > limits.maxItemSize {
            state = .swallow(length + 2)
            return .request(.storeTooLarge(verb: verb, key: key, noreply: noreply))
        }
        state = .data(
            PendingStore(verb: verb, key: key, flags: flags, exptime: exptime, length: length, casUnique: casUnique, noreply: noreply))
        return .awaitData
    }

    private func validKey(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        KeyRules.isValid(bytes, maxLength: limits.maxKeyLength, allowControlBytes: limits.allowControlBytesInKeys)
            ? Array(bytes) : nil
    }

    // MARK: lexical helpers

    static func equals(_ line: [UInt8], _ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count == word.utf8CodeUnitCount else { return false }
        return word.withUTF8Buffer { w in
            for i in 0..<w.count where line[range.lowerBound + i] != w[i] { return false }
            return true
        }
    }

    static func hasPrefix(_ line: [UInt8], _ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count >= word.utf8CodeUnitCount else { return false }
        return equals(line, range.lowerBound..<(range.lowerBound + word.utf8CodeUnitCount), word)
    }

    static func strings(_ line: [UInt8], _ tokens: ArraySlice<Range<Int>>) -> [String] {
        tokens.map { String(decoding: line[$0], as: UTF8.self) }
    }

    /// Strict decimal: digits only, at most 20 of them, no overflow.
    static func parseUnsigned(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }

    /// Decimal with an optional leading minus, within ±2^62 (far beyond any meaningful time).
    static func parseSigned(_ bytes: ArraySlice<UInt8>) -> Int64? {
        var digits = bytes
        var negative = false
        if digits.first == UInt8(ascii: "-") {
            negative = true
            digits = digits.dropFirst()
        }
        guard let magnitude = parseUnsigned(digits), magnitude <= 1 << 62 else { return nil }
        return negative ? -Int64(magnitude) : Int64(magnitude)
    }
}
