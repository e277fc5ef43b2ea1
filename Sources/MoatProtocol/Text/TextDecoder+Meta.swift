/// Decoding of the meta commands (`mg ms md ma mn me`), reached from `decodeOne` when a command
/// token is two bytes starting with `m`. Flags are parsed here, once, into `MetaFlags`; errors use
/// memcached 1.6.18's messages.
extension TextDecoder {
    static func meta<R>(
        _ letter: UInt8, rest: UnsafeRawBufferPointer, newline: Int, input: UnsafeRawBufferPointer,
        limits: ProtocolLimits,
        consumed: inout Int, nextState: inout State, _ body: (TextCommand) throws -> R
    ) rethrows -> R? {
        consumed = newline + 1
        let verb: MetaVerb
        switch letter {
        case UInt8(ascii: "g"): verb = .get
        case UInt8(ascii: "s"): verb = .set
        case UInt8(ascii: "d"): verb = .delete
        case UInt8(ascii: "a"): verb = .arithmetic
        case UInt8(ascii: "n"): verb = .noop
        case UInt8(ascii: "e"): verb = .debug
        default: return try body(.error(.error, noreply: false))
        }
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        if verb == .noop {
            return try body(
                .meta(
                    MetaCommand(
                        verb: .noop, key: empty, flags: MetaFlags(), tokens: empty, value: empty, valueTooLarge: false))
            )
        }
        var scan = Tokens(rest)
        guard let keyRange = scan.next() else {
            return try body(.error(verb == .debug ? .badCommandLine : .error, noreply: false))
        }
        let key = UnsafeRawBufferPointer(rebasing: rest[keyRange])

        // ms: the data length is read before any other check, so that every refusal can swallow the
        // block; without a readable length the block cannot be found and the connection is closed.
        var length = 0
        if verb == .set {
            guard let lengthRange = scan.next() else { return try body(.error(.badCommandLine, noreply: false)) }
            guard let declared = parseSigned(rest, lengthRange), declared >= 0, declared <= Int64(Int32.max) - 2 else {
                return try body(.error(.badCommandLineFraming, noreply: false))
            }
            length = Int(declared)
        }
        // As memcached, the bound applies to the key as sent (base64 included).
        guard key.count <= limits.maxKeyLength else {
            if verb == .set { nextState = .swallow(length + 2) }
            return try body(.error(.badCommandLine, noreply: false))
        }
        let tokens = UnsafeRawBufferPointer(rebasing: rest[scan.position...])

        var flags = MetaFlags()
        let error =
            verb == .debug
            ? debugKey(key, tokens, &flags, limits: limits) : parseFlags(verb, key, tokens, &flags, limits: limits)
        if let error {
            // Unlike memcached for some errors, the data block of a refused ms is always swallowed:
            // it must never be read as commands.
            if verb == .set { nextState = .swallow(length + 2) }
            return try body(.error(error, noreply: false))
        }
        guard verb == .set else {
            return try body(
                .meta(
                    MetaCommand(verb: verb, key: key, flags: flags, tokens: tokens, value: empty, valueTooLarge: false))
            )
        }
        if length > limits.maxItemSize {
            nextState = .swallow(length + 2)
            return try body(
                .meta(
                    MetaCommand(verb: .set, key: key, flags: flags, tokens: tokens, value: empty, valueTooLarge: true)))
        }
        let dataStart = newline + 1
        guard input.count >= dataStart + length + 2 else {
            consumed = 0
            return nil
        }
        consumed = dataStart + length + 2
        guard input[dataStart + length] == 0x0D, input[dataStart + length + 1] == 0x0A else {
            return try body(.error(.badDataChunk, noreply: false))
        }
        let value = UnsafeRawBufferPointer(rebasing: input[dataStart..<(dataStart + length)])
        return try body(
            .meta(MetaCommand(verb: .set, key: key, flags: flags, tokens: tokens, value: value, valueTooLarge: false)))
    }

    /// `me <key> [b]`: only the base64 flag means anything.
    private static func debugKey(
        _ key: UnsafeRawBufferPointer, _ tokens: UnsafeRawBufferPointer, _ flags: inout MetaFlags,
        limits: ProtocolLimits
    ) -> ErrorReply? {
        var scan = Tokens(tokens)
        if let first = scan.next(), equals(tokens, first, "b") {
            guard Base64.decodedLength(key) != nil else { return .badCommandLine }
            flags.insert(UInt8(ascii: "b"))
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
        _ verb: MetaVerb, _ key: UnsafeRawBufferPointer, _ tokens: UnsafeRawBufferPointer, _ flags: inout MetaFlags,
        limits: ProtocolLimits
    ) -> ErrorReply? {
        // md and ma answer every flag error with one message.
        let generic = verb == .delete || verb == .arithmetic
        var count = 0
        var scan = Tokens(tokens)
        while scan.next() != nil { count += 1 }
        if count > MetaLimits.maxFlags - (verb == .set ? 1 : 0) {
            return verb == .get ? .metaGetTooManyFlags : .metaTooManyFlags
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
            guard flags.present & MetaFlags.bit(letter) == 0 else {
                return generic ? .metaInvalidOrDuplicate : .metaDuplicateFlag
            }
            flags.insert(letter)
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
            case UInt8(ascii: "x") where verb == .delete:
                break
            default:
                return generic ? .metaInvalidOrDuplicate : .metaInvalidFlag
            }
        }
        if let error { return generic ? .metaInvalidOrDuplicate : error }
        if opaqueTooLong { return .metaOpaqueTooLong }
        switch verb {
        case .set:
            switch flags.mode {
            case 0, UInt8(ascii: "E"), UInt8(ascii: "A"), UInt8(ascii: "P"), UInt8(ascii: "R"), UInt8(ascii: "S"): break
            default: return .metaBadSetMode
            }
        case .arithmetic:
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
