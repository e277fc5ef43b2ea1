/// Decoding of the meta commands (`mg ms md ma mn me`), reached from `decodeOne` when a command
/// token is two bytes starting with `m`. Flags are parsed here, once, into `MetaFlags`; errors use
/// memcached 1.6.18's messages.
extension TextDecoder {
    static func meta<R>(
        _ letter: UInt8, rest: UnsafeRawBufferPointer, newline: Int, input: UnsafeRawBufferPointer,
        limits: ProtocolLimits,
        consumed: inout Int, nextState: inout State, _ body: (RequestView) throws -> R
    ) rethrows -> R? {
        consumed = newline + 1
        let verb: Verb
        switch letter {
        case UInt8(ascii: "g"): verb = .mg
        case UInt8(ascii: "s"): verb = .ms
        case UInt8(ascii: "d"): verb = .md
        case UInt8(ascii: "a"): verb = .ma
        case UInt8(ascii: "n"): verb = .mn
        case UInt8(ascii: "e"): verb = .me
        default: return try body(failure(.error))
        }
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        if verb == .mn {
            return try body(Request(.mn, .noop, reply: .meta(MetaReturn(tokens: empty, letters: MetaLetters()))))
        }
        var scan = Tokens(rest)
        guard let keyRange = scan.next() else {
            return try body(failure(verb == .me ? .badCommandLine : .error))
        }
        let key = UnsafeRawBufferPointer(rebasing: rest[keyRange])

        // ms: the data length is read before any other check, so that every refusal can swallow the
        // block; without a readable length the block cannot be found and the connection is closed.
        var length = 0
        if verb == .ms {
            guard let lengthRange = scan.next() else { return try body(failure(.badCommandLine)) }
            guard let declared = parseSigned(rest, lengthRange), declared >= 0, declared <= Int64(Int32.max) - 2 else {
                return try body(failure(.badCommandLineFraming))
            }
            length = Int(declared)
        }
        // As memcached, the bound applies to the key as sent (base64 included).
        guard key.count <= limits.maxKeyLength else {
            if verb == .ms { nextState = .swallow(length + 2) }
            return try body(failure(.badCommandLine))
        }
        let tokens = UnsafeRawBufferPointer(rebasing: rest[scan.position...])

        var flags = MetaFlags()
        let error =
            verb == .me
            ? debugKey(key, tokens, &flags, limits: limits) : parseFlags(verb, key, tokens, &flags, limits: limits)
        if let error {
            // Unlike memcached for some errors, the data block of a refused ms is always swallowed:
            // it must never be read as commands.
            if verb == .ms { nextState = .swallow(length + 2) }
            return try body(failure(error))
        }
        let reply = ReplyForm.meta(MetaReturn(tokens: tokens, letters: flags.letters))
        var value = empty
        var valueTooLarge = false
        if verb == .ms {
            if length > limits.maxItemSize {
                nextState = .swallow(length + 2)
                valueTooLarge = true
            } else {
                let dataStart = newline + 1
                guard input.count >= dataStart + length + 2 else {
                    consumed = 0
                    return nil
                }
                consumed = dataStart + length + 2
                guard input[dataStart + length] == 0x0D, input[dataStart + length + 1] == 0x0A else {
                    return try body(failure(.badDataChunk))
                }
                value = UnsafeRawBufferPointer(rebasing: input[dataStart..<(dataStart + length)])
            }
        }
        // The operation names the key as stored: a base64 key (`b`) is decoded here, on the stack.
        func deliver(_ key: UnsafeRawBufferPointer) throws -> R {
            let operation: Operation<UnsafeRawBufferPointer>
            switch verb {
            case .mg: operation = .get(key: key, getOptions(flags))
            case .ms:
                let options = storeOptions(flags)
                operation = valueTooLarge ? .storeTooLarge(key: key, options) : .store(key: key, value: value, options)
            case .md:
                let invalidate = flags.has("I")
                operation = .delete(
                    key: key,
                    DeleteOptions(
                        compareCAS: flags.given("C", flags.compareCAS), invalidate: invalidate,
                        removeValue: flags.has("x"), ttl: invalidate ? flags.given("T", flags.ttl) : nil,
                        newCAS: flags.newCAS))
            case .ma:
                operation = .arithmetic(
                    key: key,
                    ArithmeticOptions(
                        increment: flags.mode != UInt8(ascii: "D") && flags.mode != UInt8(ascii: "-"),
                        delta: flags.delta, initial: flags.initial, vivifyTTL: flags.given("N", flags.vivifyTTL),
                        compareCAS: flags.given("C", flags.compareCAS), newCAS: flags.newCAS,
                        touchTTL: flags.given("T", flags.ttl)))
            default: operation = .inspect(key: key)
            }
            return try body(Request(verb, operation, reply: reply))
        }
        if flags.has("b") { return try Base64.withDecoded(key) { try deliver($0) } }
        return try deliver(key)
    }

    /// mg's flags as a lookup's options; only mg hands out recache tokens (only its replies can say so).
    private static func getOptions(_ flags: MetaFlags) -> GetOptions {
        GetOptions(
            touchTTL: flags.given("T", flags.ttl), vivifyTTL: flags.given("N", flags.vivifyTTL),
            recacheTTL: flags.given("R", flags.recacheTTL), newCAS: flags.newCAS, bump: !flags.has("u"),
            grantsTokens: true)
    }

    /// ms's flags as a store's options. As memcached: a CAS makes set and replace a compare-and-swap,
    /// append and prepend check it, and add ignores it.
    private static func storeOptions(_ flags: MetaFlags) -> StoreOptions {
        var verb: StoreVerb
        switch flags.mode {
        case UInt8(ascii: "E"): verb = .add
        case UInt8(ascii: "A"): verb = .append
        case UInt8(ascii: "P"): verb = .prepend
        case UInt8(ascii: "R"): verb = .replace
        default: verb = .set
        }
        var compareCAS = flags.given("C", flags.compareCAS)
        switch verb {
        case .set, .replace: if compareCAS != nil { verb = .cas }
        case .add: compareCAS = nil
        case .append, .prepend, .cas: break
        }
        return StoreOptions(
            verb: verb, flags: flags.clientFlags, ttl: flags.given("T", flags.ttl) ?? 0, compareCAS: compareCAS,
            newCAS: flags.newCAS, invalidate: flags.has("I"))
    }

    /// `me <key> [b]`: only the base64 flag means anything.
    private static func debugKey(
        _ key: UnsafeRawBufferPointer, _ tokens: UnsafeRawBufferPointer, _ flags: inout MetaFlags,
        limits: ProtocolLimits
    ) -> ErrorReply? {
        var scan = Tokens(tokens)
        if let first = scan.next(), equals(tokens, first, "b") {
            guard Base64.decodedLength(key) != nil else { return .badCommandLine }
            flags.letters.insert(UInt8(ascii: "b"))
            return nil
        }
        return validKey(key, limits) ? nil : .badCommandLine
    }

    private static func validKey(_ key: UnsafeRawBufferPointer, _ limits: ProtocolLimits) -> Bool {
        KeyRules.isValid(key, maxLength: limits.maxKeyLength, allowControlBytes: limits.allowControlBytesInKeys)
    }

    /// memcached's flag rules: one letter per token, each at most once, some with a number after it.
    /// A token error is remembered and parsing goes on (the last message wins, as in memcached);
    /// an unknown or repeated letter stops at once.
    private static func parseFlags(
        _ verb: Verb, _ key: UnsafeRawBufferPointer, _ tokens: UnsafeRawBufferPointer, _ flags: inout MetaFlags,
        limits: ProtocolLimits
    ) -> ErrorReply? {
        // md and ma answer every flag error with one message.
        let generic = verb == .md || verb == .ma
        var count = 0
        var scan = Tokens(tokens)
        while scan.next() != nil { count += 1 }
        if count > MetaLimits.maxFlags - (verb == .ms ? 1 : 0) {
            return verb == .mg ? .metaGetTooManyFlags : .metaTooManyFlags
        }
        var error: ErrorReply?
        var opaqueTooLong = false
        scan = Tokens(tokens)
        while let range = scan.next() {
            let letter = tokens[range.lowerBound]
            let isLetter = (letter >= 0x41 && letter <= 0x5A) || (letter >= 0x61 && letter <= 0x7A)
            guard isLetter else {
                return generic ? .metaInvalidOrDuplicate : (letter >= 127 ? .metaDuplicateFlag : .metaInvalidFlag)
            }
            guard !flags.letters.contains(letter) else {
                return generic ? .metaInvalidOrDuplicate : .metaDuplicateFlag
            }
            flags.letters.insert(letter)
            let argument = (range.lowerBound + 1)..<range.upperBound
            switch letter {
            case UInt8(ascii: "b"):
                if Base64.decodedLength(key) == nil { error = .metaBadKeyEncoding }
            case UInt8(ascii: "N"), UInt8(ascii: "T"), UInt8(ascii: "R"):
                guard let value = parseInt32(tokens, argument) else {
                    error = .metaBadToken
                    continue
                }
                if letter == UInt8(ascii: "N") {
                    flags.vivifyTTL = value
                } else if letter == UInt8(ascii: "T") {
                    flags.ttl = value
                } else {
                    flags.recacheTTL = value
                }
            case UInt8(ascii: "C"), UInt8(ascii: "E"):
                guard let value = parseUnsigned(tokens, argument) else {
                    error = .metaBadToken
                    continue
                }
                if letter == UInt8(ascii: "C") { flags.compareCAS = value } else { flags.newCAS = value }
            case UInt8(ascii: "F"):
                // memcached keeps whatever message it had for a bad F.
                guard let value = parseUnsigned(tokens, argument).flatMap({ UInt32(exactly: $0) }) else {
                    error = error ?? .badCommandLine
                    continue
                }
                flags.clientFlags = value
            case UInt8(ascii: "M"):
                guard range.count == 2 else {
                    error = .metaBadModeLength
                    continue
                }
                flags.mode = tokens[range.lowerBound + 1]
            case UInt8(ascii: "J"):
                guard let value = parseUnsigned(tokens, argument) else {
                    error = .metaBadInitial
                    continue
                }
                flags.initial = value
            case UInt8(ascii: "D"):
                guard let value = parseUnsigned(tokens, argument) else {
                    error = .metaBadDelta
                    continue
                }
                flags.delta = value
            case UInt8(ascii: "O"):
                if range.count > MetaLimits.maxOpaqueLength { opaqueTooLong = true }
            case UInt8(ascii: "P"), UInt8(ascii: "L"),  // proxy hints, ignored
                UInt8(ascii: "k"), UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "c"), UInt8(ascii: "f"),
                UInt8(ascii: "v"), UInt8(ascii: "h"), UInt8(ascii: "u"), UInt8(ascii: "q"), UInt8(ascii: "l"),
                UInt8(ascii: "I"):
                break
            case UInt8(ascii: "x") where verb == .md:
                break
            default:
                return generic ? .metaInvalidOrDuplicate : .metaInvalidFlag
            }
        }
        if let error { return generic ? .metaInvalidOrDuplicate : error }
        if opaqueTooLong { return .metaOpaqueTooLong }
        switch verb {
        case .ms:
            switch flags.mode {
            case 0, UInt8(ascii: "E"), UInt8(ascii: "A"), UInt8(ascii: "P"), UInt8(ascii: "R"), UInt8(ascii: "S"): break
            default: return .metaBadSetMode
            }
        case .ma:
            switch flags.mode {
            case 0, UInt8(ascii: "I"), UInt8(ascii: "+"), UInt8(ascii: "D"), UInt8(ascii: "-"): break
            default: return .metaBadArithmeticMode
            }
        default: break
        }
        // Moat refuses control bytes in text keys (see KeyRules); binary keys may hold any byte.
        if !flags.has("b"), !validKey(key, limits) { return .badCommandLine }
        return nil
    }

    /// memcached's `safe_strtol`: an optional sign and digits within 32 bits.
    static func parseInt32(_ line: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        guard !range.isEmpty else { return nil }
        var digits = range
        if line[range.lowerBound] == UInt8(ascii: "+") { digits = (range.lowerBound + 1)..<range.upperBound }
        guard !digits.isEmpty, line[digits.lowerBound] != UInt8(ascii: "+"), let value = parseSigned(line, digits),
            value >= Int64(Int32.min), value <= Int64(Int32.max)
        else { return nil }
        return value
    }
}
