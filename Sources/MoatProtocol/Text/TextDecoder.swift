import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decodes memcached's text protocol: bytes in, one request at a time out.
///
/// Pure and incremental: feed it whatever arrived. `decode` hands each complete request to a callback
/// as a `RequestView` whose keys and value point into the input buffer (no copy, no allocation), and
/// consumes its bytes afterwards. A storage command is handed over only once its whole data block has
/// arrived (the command line is simply read again when more bytes come). Every buffer the caller may
/// have to hold is bounded: a command line by `maxLineLength` (retrieval lines by
/// `maxRetrievalLineLength`), a storage command by its line plus `maxItemSize` + 2. Larger data blocks
/// are swallowed as they arrive, never buffered.
public struct TextDecoder: Sendable {
    enum State: Sendable, Equatable {
        case line
        /// Bytes of a refused data block still to discard, its CRLF included (checked: a block that does
        /// not end where it said it would means the framing is lost).
        case swallow(Int)
        /// A multi-get paused at the output high-water mark: its line (`newline` is where it ends) was
        /// validated once; the next call hands over its keys from `keys.lowerBound + from` without
        /// searching, tokenizing or validating the line again.
        case resume(newline: Int, keys: Range<Int>, from: Int, verb: Verb, touchTTL: Int64?)
    }

    private(set) var state: State = .line
    /// Settable: a session tightens them before authentication and restores them after.
    public var limits: ProtocolLimits
    /// Bytes at the start of the input already searched for a newline without finding one: an
    /// incomplete line is not scanned again from its start on every read (that would be quadratic).
    private var scanned = 0

    public init(limits: ProtocolLimits = ProtocolLimits()) {
        self.limits = limits
    }

    /// True while a refused data block is being swallowed (or a paused multi-get waits to resume).
    public var isMidRequest: Bool { state != .line }

    /// After a multi-get was redelivered: its next delivery starts `bytes` further into its keys (the
    /// session says how far it got, so that the keys already answered are not walked again).
    public mutating func advanceResumedKeys(by bytes: Int) {
        guard case .resume(let newline, let keys, let from, let verb, let touchTTL) = state else { return }
        state = .resume(
            newline: newline, keys: keys, from: min(keys.count, from + max(0, bytes)), verb: verb, touchTTL: touchTTL)
    }

    /// The next complete request, copied out (`owned()`); nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> OwnedRequest? {
        decode(&buffer) { $0.owned() }
    }

    /// Passes the next complete request to `body` and consumes its bytes; nil (body not called) when
    /// more bytes are needed. The command's pointers are valid only inside `body`.
    @inline(__always)
    public mutating func decode<R>(_ buffer: inout ByteBuffer, _ body: (RequestView) throws -> R) rethrows -> R? {
        try decode(&buffer) { command, _ in try body(command) }
    }

    /// As `decode`, but `body` may set its second argument to true to leave the request's bytes in
    /// the buffer, so that the next call hands the same request over again (a multi-get that stopped
    /// at the output high-water mark resumes from there instead of buffering every reply).
    @inline(__always)
    public mutating func decode<R>(_ buffer: inout ByteBuffer, _ body: (RequestView, inout Bool) throws -> R) rethrows
        -> R?
    {
        if case .swallow = state {
            guard swallow(&buffer) else {
                // The refused block did not end with CRLF where its length said: framing is lost.
                var ignored = false
                return try body(Self.failure(.badDataChunk), &ignored)
            }
            if state != .line { return nil }
        }
        var consumed = 0
        var nextState = State.line
        var redeliver = false
        var scanned = self.scanned
        var paused: (keys: Range<Int>, verb: Verb, touchTTL: Int64?)?
        let limits = self.limits
        let resuming = state
        let result: R? = try buffer.withUnsafeReadableBytes { bytes in
            if case .resume(let newline, let keys, let from, let verb, let touchTTL) = resuming, newline < bytes.count {
                consumed = newline + 1
                let rest = UnsafeRawBufferPointer(rebasing: bytes[(keys.lowerBound + from)..<keys.upperBound])
                let result = try body(Self.retrieval(verb, keys: rest, touchTTL: touchTTL), &redeliver)
                if redeliver { paused = (keys, verb, touchTTL) }
                return result
            }
            return try Self.decodeOne(
                bytes, limits: limits, scanned: &scanned, consumed: &consumed, nextState: &nextState
            ) { request in
                let result = try body(request, &redeliver)
                if redeliver, case .getMany(let keys, let options) = request.operation, let base = bytes.baseAddress,
                    let start = keys.baseAddress
                {
                    let offset = base.distance(to: start)
                    paused = (offset..<(offset + keys.count), request.verb, options.touchTTL)
                }
                return result
            }
        }
        if redeliver, result != nil {
            if let paused {
                // Kept from the last delivery when resuming (advanceResumedKeys moves it on).
                var from = 0
                if case .resume(_, _, let previous, _, _) = resuming { from = previous }
                state = .resume(
                    newline: consumed - 1, keys: paused.keys, from: from, verb: paused.verb, touchTTL: paused.touchTTL)
            }
            self.scanned = 0
            return result
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        state = nextState
        self.scanned = consumed > 0 ? 0 : scanned
        return result
    }

    /// Discards what arrived of a refused block; false when its terminating CRLF is not where it must be.
    private mutating func swallow(_ buffer: inout ByteBuffer) -> Bool {
        guard case .swallow(var remaining) = state else { return true }
        let data = min(max(0, remaining - 2), buffer.readableBytes)
        buffer.moveReaderIndex(forwardBy: data)
        remaining -= data
        while remaining > 0, remaining <= 2, let byte = buffer.readInteger(as: UInt8.self) {
            guard byte == (remaining == 2 ? 0x0D : 0x0A) else {
                state = .line
                return false
            }
            remaining -= 1
        }
        state = remaining > 0 ? .swallow(remaining) : .line
        return true
    }

    // MARK: one request

    private static func decodeOne<R>(
        _ bytes: UnsafeRawBufferPointer, limits: ProtocolLimits, scanned: inout Int, consumed: inout Int,
        nextState: inout State,
        _ body: (RequestView) throws -> R
    ) rethrows -> R? {
        let from = min(scanned, bytes.count)
        guard let base = bytes.baseAddress, bytes.count > from,
            let found = memchr(base + from, 0x0A, bytes.count - from)
        else {
            scanned = bytes.count
            if bytes.count > limits.maxLineLength {
                if bytes.count <= limits.maxRetrievalLineLength, startsRetrieval(bytes) { return nil }
                consumed = bytes.count
                return try body(failure(.lineTooLong))
            }
            return nil
        }
        let newline = base.distance(to: UnsafeRawPointer(found))
        scanned = 0
        var end = newline
        if end > 0, bytes[end - 1] == 0x0D { end -= 1 }
        let line = UnsafeRawBufferPointer(rebasing: bytes[0..<end])
        if end > limits.maxLineLength, !startsRetrieval(line) || end > limits.maxRetrievalLineLength {
            consumed = newline + 1
            return try body(failure(.lineTooLong))
        }
        var tokens = Tokens(line)
        guard let first = tokens.next() else {
            consumed = newline + 1
            return try body(failure(.error))
        }
        let rest = UnsafeRawBufferPointer(rebasing: line[first.upperBound...])

        // Meta commands: two bytes starting with "m" (one compare on the classic commands' path).
        if first.count == 2, line[first.lowerBound] == UInt8(ascii: "m") {
            return try meta(
                line[first.lowerBound + 1], rest: rest, newline: newline, input: bytes, limits: limits,
                consumed: &consumed,
                nextState: &nextState, body)
        }

        // Storage commands: the data block must be complete before anything is consumed.
        if let verb = storeVerb(line, first) {
            return try storage(
                verb, line: line, rest: rest, newline: newline, input: bytes, limits: limits, consumed: &consumed,
                nextState: &nextState, body)
        }
        consumed = newline + 1
        return try body(command(line, first, rest, limits: limits))
    }

    private static func storeVerb(_ line: UnsafeRawBufferPointer, _ token: Range<Int>) -> StoreVerb? {
        switch token.count {
        case 3:
            if equals(line, token, "set") { return .set }
            if equals(line, token, "add") { return .add }
            if equals(line, token, "cas") { return .cas }
        case 6:
            if equals(line, token, "append") { return .append }
        case 7:
            if equals(line, token, "replace") { return .replace }
            if equals(line, token, "prepend") { return .prepend }
        default: break
        }
        return nil
    }

    private static func storage<R>(
        _ verb: StoreVerb, line: UnsafeRawBufferPointer, rest: UnsafeRawBufferPointer, newline: Int,
        input: UnsafeRawBufferPointer, limits: ProtocolLimits, consumed: inout Int, nextState: inout State,
        _ body: (RequestView) throws -> R
    ) rethrows -> R? {
        var args = Tokens(rest)
        let isCAS = verb == .cas
        let required = isCAS ? 5 : 4
        var fields = (
            Range<Int>?.none, Range<Int>?.none, Range<Int>?.none, Range<Int>?.none, Range<Int>?.none, Range<Int>?.none
        )
        var count = 0
        while let token = args.next() {
            switch count {
            case 0: fields.0 = token
            case 1: fields.1 = token
            case 2: fields.2 = token
            case 3: fields.3 = token
            case 4: fields.4 = token
            case 5: fields.5 = token
            default: break
            }
            count += 1
        }
        // Framing first: the length decides where the next command starts, so it is found and read before
        // anything else is checked. A token too many that is not `noreply` may be a key with a space in
        // it, which shifts every field: where the length cannot be trusted, answer and close rather than
        // read a data block as commands (memcached reads it as commands).
        let lastRange = count == required + 1 ? (isCAS ? fields.5 : fields.4) : nil
        let noreply = lastRange.map { equals(rest, $0, "noreply") } ?? false
        guard count == required || noreply,
            let keyRange = fields.0, let flagsRange = fields.1, let exptimeRange = fields.2, let lengthRange = fields.3
        else {
            consumed = newline + 1
            return try body(failure(anyTokenIsNumber(rest) ? .errorFraming : .error))
        }
        guard let declared = parseSigned(rest, lengthRange), declared >= 0, declared <= Int64(Int32.max) - 2 else {
            consumed = newline + 1
            return try body(failure(.badCommandLineFraming, noreply: noreply))
        }
        let length = Int(declared)
        let key = UnsafeRawBufferPointer(rebasing: rest[keyRange])
        let flags = parseUnsigned(rest, flagsRange).flatMap { UInt32(exactly: $0) }
        let exptime = parseSigned(rest, exptimeRange)
        let casUnique: UInt64? = isCAS ? fields.4.flatMap { parseUnsigned(rest, $0) } : 0
        guard KeyRules.isValid(key, maxLength: limits.maxKeyLength, allowControlBytes: limits.allowControlBytesInKeys),
            let flags, let exptime, let casUnique
        else {
            consumed = newline + 1
            // Unlike memcached, discard the data block too: it must never be read as commands.
            nextState = .swallow(length + 2)
            return try body(failure(.badCommandLine, noreply: noreply))
        }
        let options = StoreOptions(verb: verb, flags: flags, ttl: exptime, compareCAS: isCAS ? casUnique : nil)
        let reply = ReplyForm<UnsafeRawBufferPointer>.text(noreply: noreply, withCAS: false)
        if length > limits.maxItemSize {
            consumed = newline + 1
            nextState = .swallow(length + 2)
            return try body(Request(Verb(verb), .storeTooLarge(key: key, options), reply: reply))
        }
        let dataStart = newline + 1
        guard input.count >= dataStart + length + 2 else { return nil }
        consumed = dataStart + length + 2
        guard input[dataStart + length] == 0x0D, input[dataStart + length + 1] == 0x0A else {
            return try body(failure(.badDataChunk, noreply: noreply))  // closes: framing is lost
        }
        let value = UnsafeRawBufferPointer(rebasing: input[dataStart..<(dataStart + length)])
        return try body(Request(Verb(verb), .store(key: key, value: value, options), reply: reply))
    }

    /// An error to answer (`noreply`: memcached stays silent for the errors of such a command too).
    static func failure(_ error: ErrorReply, noreply: Bool = false) -> RequestView {
        Request(.none, .error(error), reply: .text(noreply: noreply, withCAS: false))
    }

    /// A classic command without data (`noreply`: the command's own flag).
    private static func classic(
        _ verb: Verb, _ operation: Operation<UnsafeRawBufferPointer>, noreply: Bool = false
    ) -> RequestView {
        Request(verb, operation, reply: .text(noreply: noreply, withCAS: false))
    }

    /// True when some token is a number (an optional minus and digits, of any length): a storage line
    /// with the wrong token count may then have declared a data block (any of them could be its length,
    /// a key with spaces shifts them all), which must not run as commands.
    private static func anyTokenIsNumber(_ rest: UnsafeRawBufferPointer) -> Bool {
        var scan = Tokens(rest)
        while let token = scan.next() {
            var digits = token
            if rest[token.lowerBound] == UInt8(ascii: "-") { digits = (token.lowerBound + 1)..<token.upperBound }
            if !digits.isEmpty, digits.allSatisfy({ rest[$0] >= 0x30 && rest[$0] <= 0x39 }) { return true }
        }
        return false
    }

    private static func command(
        _ line: UnsafeRawBufferPointer, _ first: Range<Int>, _ rest: UnsafeRawBufferPointer, limits: ProtocolLimits
    ) -> RequestView {
        var args = Tokens(rest)
        // At most four argument tokens matter to any non-retrieval command; count the rest.
        let a0 = args.next()
        let a1 = args.next()
        let a2 = args.next()
        var argc = (a0 == nil ? 0 : 1) + (a1 == nil ? 0 : 1) + (a2 == nil ? 0 : 1)
        while args.next() != nil { argc += 1 }
        func token(_ r: Range<Int>?) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: rest[r!]) }
        let lastIsNoreply: Bool = {
            guard argc > 0 else { return false }
            var scan = Tokens(rest)
            var last: Range<Int>?
            while let t = scan.next() { last = t }
            return last.map { equals(rest, $0, "noreply") } ?? false
        }()
        func validKey(_ r: Range<Int>?) -> UnsafeRawBufferPointer? {
            let key = token(r)
            return KeyRules.isValid(
                key, maxLength: limits.maxKeyLength, allowControlBytes: limits.allowControlBytesInKeys) ? key : nil
        }

        switch first.count {
        case 3 where equals(line, first, "get"):
            return retrieval(.get, rest, touchTTL: nil, limits: limits)
        case 4 where equals(line, first, "gets"):
            return retrieval(.gets, rest, touchTTL: nil, limits: limits)
        case 3 where equals(line, first, "gat"), 4 where equals(line, first, "gats"):
            guard argc >= 2, let exptimeRange = a0 else { return failure(.error) }
            guard let exptime = parseSigned(rest, exptimeRange) else { return failure(.invalidExptime) }
            let keys = UnsafeRawBufferPointer(rebasing: rest[exptimeRange.upperBound...])
            return retrieval(first.count == 4 ? .gats : .gat, keys, touchTTL: exptime, limits: limits)
        case 6 where equals(line, first, "delete"):
            guard argc >= 1, argc <= 3 else { return failure(.error) }
            if argc > 1 {
                let holdIsZero = equals(rest, a1!, "0")
                let valid = (argc == 2 && (holdIsZero || lastIsNoreply)) || (argc == 3 && holdIsZero && lastIsNoreply)
                // As memcached: a trailing noreply silences even this error (else every later reply shifts).
                guard valid else { return failure(.badDeleteUsage, noreply: lastIsNoreply) }
            }
            guard let key = validKey(a0) else { return failure(.badCommandLine, noreply: lastIsNoreply) }
            return classic(.delete, .delete(key: key, DeleteOptions()), noreply: lastIsNoreply)
        case 4 where equals(line, first, "incr"), 4 where equals(line, first, "decr"):
            guard argc == 2 || argc == 3 else { return failure(.error) }
            guard let key = validKey(a0) else { return failure(.badCommandLine, noreply: lastIsNoreply) }
            guard let delta = parseUnsigned(rest, a1!) else { return failure(.invalidDelta, noreply: lastIsNoreply) }
            let increment = line[first.lowerBound] == UInt8(ascii: "i")
            return classic(
                increment ? .incr : .decr, .arithmetic(key: key, ArithmeticOptions(increment: increment, delta: delta)),
                noreply: lastIsNoreply)
        case 5 where equals(line, first, "touch"):
            guard argc == 2 || argc == 3 else { return failure(.error) }
            guard let key = validKey(a0) else { return failure(.badCommandLine, noreply: lastIsNoreply) }
            guard let exptime = parseSigned(rest, a1!) else { return failure(.invalidExptime, noreply: lastIsNoreply) }
            return classic(.touch, .touch(key: key, ttl: exptime), noreply: lastIsNoreply)
        case 9 where equals(line, first, "flush_all"):
            guard argc <= 2 else { return failure(.error) }
            let delayTokens = argc - (lastIsNoreply ? 1 : 0)
            if delayTokens == 1 {
                guard let delay = parseSigned(rest, a0!) else {
                    return failure(.invalidExptime, noreply: lastIsNoreply)
                }
                return classic(.flushAll, .flushAll(delay: delay), noreply: lastIsNoreply)
            }
            guard delayTokens == 0 else { return failure(.error) }
            return classic(.flushAll, .flushAll(delay: 0), noreply: lastIsNoreply)
        case 7 where equals(line, first, "version"):
            return classic(.version, .version)
        case 9 where equals(line, first, "verbosity"):
            guard argc == 1 || argc == 2 else { return failure(.error) }
            let level = parseUnsigned(rest, a0!).map { UInt32(clamping: $0) } ?? 0
            return classic(.verbosity, .verbosity(level: level), noreply: lastIsNoreply)
        case 4 where equals(line, first, "quit"):
            return classic(.quit, .quit)
        case 8 where equals(line, first, "shutdown"):
            return classic(.shutdown, .shutdown)
        case 5 where equals(line, first, "stats"):
            return classic(.stats, .stats(arguments: trimmed(rest)))
        case 11 where equals(line, first, "lru_crawler"):
            return classic(.lruCrawler, .lruCrawler(arguments: trimmed(rest)))
        case 13 where equals(line, first, "refresh_certs"):
            return classic(.refreshCerts, .refreshCerts)
        case 5 where equals(line, first, "watch"):
            return classic(.watch, .watch)
        case 14 where equals(line, first, "cache_memlimit"):
            guard argc == 1 || argc == 2 else { return failure(.error) }
            guard let megabytes = parseUnsigned(rest, a0!) else {
                return failure(.badCommandLine, noreply: lastIsNoreply)
            }
            return classic(.cacheMemlimit, .cacheMemlimit(megabytes: megabytes), noreply: lastIsNoreply)
        default:
            // A forged HTTP request ("GET / HTTP/1.1") must not drive the cache: close, as memcached does.
            // Only for unknown commands (as memcached), so that `get HTTP/1.1` stays a lookup of that key.
            if argc >= 1 {
                var scan = Tokens(rest)
                var last: Range<Int>?
                while let t = scan.next() { last = t }
                if let last, hasPrefix(rest, last, "HTTP/") { return failure(.forgedHTTP) }
            }
            return failure(.error)
        }
    }

    /// Every key is checked before any is looked up, so a bad key answers one error and nothing else.
    private static func retrieval(
        _ verb: Verb, _ keys: UnsafeRawBufferPointer, touchTTL: Int64?, limits: ProtocolLimits
    ) -> RequestView {
        var any = false
        for key in TokenList(keys) {
            any = true
            guard
                KeyRules.isValid(key, maxLength: limits.maxKeyLength, allowControlBytes: limits.allowControlBytesInKeys)
            else {
                return failure(.badCommandLine)
            }
        }
        guard any else { return failure(.error) }
        return retrieval(verb, keys: trimmed(keys), touchTTL: touchTTL)
    }

    /// A multi-get over keys already checked.
    private static func retrieval(_ verb: Verb, keys: UnsafeRawBufferPointer, touchTTL: Int64?) -> RequestView {
        Request(
            verb, .getMany(keys: keys, GetOptions(touchTTL: touchTTL)),
            reply: .text(noreply: false, withCAS: verb == .gets || verb == .gats))
    }

    // MARK: lexical helpers

    /// Space-separated token ranges, scanned lazily (no array).
    struct Tokens {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next() -> Range<Int>? {
            while position < bytes.count, bytes[position] == 0x20 { position += 1 }
            guard position < bytes.count else { return nil }
            let start = position
            while position < bytes.count, bytes[position] != 0x20 { position += 1 }
            return start..<position
        }
    }

    /// An argument list without the spaces before its first token.
    static func trimmed(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        while start < bytes.count, bytes[start] == 0x20 { start += 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[start...])
    }

    static func startsRetrieval(_ bytes: UnsafeRawBufferPointer) -> Bool {
        func has(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            return bytes.count >= n && equals(bytes, 0..<n, word)
        }
        return has("get ") || has("gets ") || has("gat ") || has("gats ")
    }

    @inline(__always)
    static func equals(_ line: UnsafeRawBufferPointer, _ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count == word.utf8CodeUnitCount, let base = line.baseAddress else { return false }
        return memcmp(base + range.lowerBound, word.utf8Start, range.count) == 0
    }

    static func hasPrefix(_ line: UnsafeRawBufferPointer, _ range: Range<Int>, _ word: StaticString) -> Bool {
        guard range.count >= word.utf8CodeUnitCount else { return false }
        return equals(line, range.lowerBound..<(range.lowerBound + word.utf8CodeUnitCount), word)
    }

    /// Strict decimal: digits only, at most 20 of them, no overflow.
    static func parseUnsigned(_ line: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        guard !range.isEmpty, range.count <= 20 else { return nil }
        var value: UInt64 = 0
        for index in range {
            let byte = line[index]
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }

    /// Decimal with an optional leading minus, within ±2^62 (far beyond any meaningful time).
    static func parseSigned(_ line: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        guard !range.isEmpty else { return nil }
        let negative = line[range.lowerBound] == UInt8(ascii: "-")
        let digits = negative ? (range.lowerBound + 1)..<range.upperBound : range
        guard let magnitude = parseUnsigned(line, digits), magnitude <= 1 << 62 else { return nil }
        return negative ? -Int64(magnitude) : Int64(magnitude)
    }
}
