import NIOCore

/// Decodes memcached's binary protocol: bytes in, one request at a time out.
///
/// Pure and incremental, as `TextDecoder`: `decode` hands each complete request to a callback as a
/// `RequestView` whose key and value point into the input buffer, and consumes its bytes
/// afterwards; nil means more bytes are needed. Every buffer the caller may have to hold is bounded
/// before anything is buffered: the header's lengths are checked against each other and against the
/// opcode first (memcached's rules), so a request other than a storage one is at most 24 + 250 + 20
/// bytes (a SASL one 24 + 32 + 4096); a storage request is buffered only when its value fits `maxItemSize` (the whole request is
/// then at most 24 + `maxItemSize` + 250 + 8 bytes). A larger value is refused once its extras and key
/// have arrived and is then swallowed as it arrives, as is the body of an unknown opcode.
public struct BinaryDecoder: Sendable {
    enum State: Sendable, Equatable {
        case header
        /// Bytes of a refused body still to discard.
        case swallow(Int)
    }

    private(set) var state: State = .header
    /// Settable: a session tightens them before authentication and restores them after.
    public var limits: ProtocolLimits

    public init(limits: ProtocolLimits = ProtocolLimits()) {
        self.limits = limits
    }

    /// The largest body a request may declare and still be buffered.
    public var maxBufferedBodyLength: Int { limits.maxItemSize + limits.maxKeyLength + 20 }

    /// True while a refused body is being swallowed.
    public var isMidRequest: Bool { state != .header }

    /// The next complete request, copied out; nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> OwnedRequest? {
        decode(&buffer) { $0.owned() }
    }

    /// Passes the next complete request to `body` and consumes its bytes; nil (body not called) when
    /// more bytes are needed. The command's pointers are valid only inside `body`.
    @inline(__always)
    public mutating func decode<R>(_ buffer: inout ByteBuffer, _ body: (RequestView) throws -> R) rethrows -> R? {
        if case .swallow(let remaining) = state {
            let count = min(remaining, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: count)
            state = count < remaining ? .swallow(remaining - count) : .header
            if state != .header { return nil }
        }
        var consumed = 0
        var nextState = State.header
        let limits = self.limits
        let result: R? = try buffer.withUnsafeReadableBytes { bytes in
            try Self.decodeOne(bytes, limits: limits, consumed: &consumed, nextState: &nextState, body)
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        state = nextState
        return result
    }

    private static func decodeOne<R>(
        _ bytes: UnsafeRawBufferPointer, limits: ProtocolLimits, consumed: inout Int, nextState: inout State,
        _ body: (RequestView) throws -> R
    ) rethrows -> R? {
        guard bytes.count > 0 else { return nil }
        // A wrong magic byte is known from the first byte: no need to wait for a whole header.
        if bytes[0] != BinaryMagic.request {
            consumed = bytes.count
            let opcode = bytes.count > 1 ? bytes[1] : 0
            let header = BinaryHeader(magic: bytes[0], opcode: opcode)
            return try body(Request(.none, .error(.badMagic), reply: .binary(BinaryReturn(header: header))))
        }
        guard bytes.count >= BinaryMagic.headerSize else { return nil }
        let header = BinaryHeader(parsing: bytes)
        let keyLength = Int(header.keyLength)
        let extrasLength = Int(header.extrasLength)
        let bodyLength = Int(header.bodyLength)
        let refusal = ReplyForm<UnsafeRawBufferPointer>.binary(BinaryReturn(header: header))

        if keyLength + extrasLength > bodyLength || keyLength > limits.maxKeyLength {
            // Invalid arguments close the connection: what follows cannot be trusted to be framed.
            consumed = bytes.count
            return try body(Request(.none, .error(.invalidArguments), reply: refusal))
        }
        guard let opcode = header.knownOpcode else {
            consumed = BinaryMagic.headerSize
            nextState = bodyLength > 0 ? .swallow(bodyLength) : .header
            return try body(Request(.none, .error(.unknownOpcode), reply: refusal))
        }
        let reply = ReplyForm<UnsafeRawBufferPointer>.binary(
            BinaryReturn(header: header, quiet: isQuiet(opcode), includeKey: includesKey(opcode)))
        if opcode == .saslAuth || opcode == .saslStep, extrasLength == 0,
            keyLength > BinaryMagic.maxSASLMechanismLength,
            bodyLength - keyLength <= BinaryMagic.maxSASLDataLength
        {
            // Framed, and bounded by the data limit: refused without closing, the body skipped unbuffered.
            consumed = BinaryMagic.headerSize
            nextState = .swallow(bodyLength)
            return try body(Request(verb(opcode), .saslMechanismTooLong, reply: reply))
        }
        guard shapeIsValid(opcode, keyLength: keyLength, extrasLength: extrasLength, bodyLength: bodyLength) else {
            consumed = bytes.count
            return try body(Request(.none, .error(.invalidArguments), reply: refusal))
        }

        let valueLength = bodyLength - keyLength - extrasLength
        if let storeVerb = storeVerb(opcode), valueLength > limits.maxItemSize {
            // Refuse as soon as extras and key are here (at most 24 + 8 + 250 bytes); swallow the value.
            let prefix = BinaryMagic.headerSize + extrasLength + keyLength
            guard bytes.count >= prefix else { return nil }
            consumed = prefix
            nextState = .swallow(valueLength)
            let key = UnsafeRawBufferPointer(rebasing: bytes[(prefix - keyLength)..<prefix])
            let options = StoreOptions(verb: casVerb(storeVerb, header.cas), compareCAS: compareCAS(header.cas))
            return try body(Request(verb(opcode), .storeTooLarge(key: key, options), reply: reply))
        }
        // Every other request is bounded by the shape rules (body at most 250 + 20 bytes) or by -I.
        let total = BinaryMagic.headerSize + bodyLength
        guard bytes.count >= total else { return nil }
        consumed = total
        let extrasStart = BinaryMagic.headerSize
        let keyStart = extrasStart + extrasLength
        let valueStart = keyStart + keyLength
        let extras = UnsafeRawBufferPointer(rebasing: bytes[extrasStart..<keyStart])
        let key = UnsafeRawBufferPointer(rebasing: bytes[keyStart..<valueStart])
        let value = UnsafeRawBufferPointer(rebasing: bytes[valueStart..<total])
        func u32(_ offset: Int) -> UInt32 {
            UInt32(bigEndian: extras.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(bigEndian: extras.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }

        let operation: Operation<UnsafeRawBufferPointer>
        switch opcode {
        case .get, .getQ, .getK, .getKQ:
            operation = .get(key: key, GetOptions())
        case .gat, .gatQ, .gatK, .gatKQ:
            operation = .get(key: key, GetOptions(touchTTL: Int64(u32(0))))
        case .touch:
            operation = .touch(key: key, ttl: Int64(u32(0)))
        case .set, .setQ, .add, .addQ, .replace, .replaceQ:
            operation = .store(
                key: key, value: value,
                StoreOptions(
                    verb: casVerb(storeVerb(opcode)!, header.cas), flags: u32(0), ttl: Int64(u32(4)),
                    compareCAS: compareCAS(header.cas)))
        case .append, .appendQ, .prepend, .prependQ:
            operation = .store(
                key: key, value: value, StoreOptions(verb: storeVerb(opcode)!, compareCAS: compareCAS(header.cas)))
        case .delete, .deleteQ:
            operation = .delete(key: key, DeleteOptions(compareCAS: compareCAS(header.cas)))
        case .increment, .incrementQ, .decrement, .decrementQ:
            // An expiry of 0xffffffff means: do not create a missing counter.
            let exptime = u32(16)
            operation = .arithmetic(
                key: key,
                ArithmeticOptions(
                    increment: opcode == .increment || opcode == .incrementQ, delta: u64(0), initial: u64(8),
                    vivifyTTL: exptime == 0xffff_ffff ? nil : Int64(exptime), compareCAS: compareCAS(header.cas)))
        case .quit, .quitQ:
            operation = .quit
        case .flush, .flushQ:
            operation = .flushAll(delay: extrasLength == 4 ? Int64(u32(0)) : 0)
        case .noop:
            operation = .noop
        case .version:
            operation = .version
        case .stat:
            operation = .stats(arguments: key)
        case .verbosity:
            operation = .verbosity(level: u32(0))
        case .saslListMechs:
            operation = .saslListMechanisms
        case .saslAuth:
            operation = .saslStart(mechanism: key, data: value)
        case .saslStep:
            operation = .saslStep(data: value)
        }
        return try body(Request(verb(opcode), operation, reply: reply))
    }

    /// The header's CAS (0: none).
    @inline(__always)
    static func compareCAS(_ cas: UInt64) -> UInt64? { cas == 0 ? nil : cas }

    /// As memcached (NREAD_CAS): a CAS in the header makes set, add and replace a compare-and-swap;
    /// append and prepend only check it.
    @inline(__always)
    static func casVerb(_ verb: StoreVerb, _ cas: UInt64) -> StoreVerb {
        guard cas != 0 else { return verb }
        switch verb {
        case .set, .add, .replace: return .cas
        case .append, .prepend, .cas: return verb
        }
    }

    static func includesKey(_ opcode: BinaryOpcode) -> Bool {
        opcode == .getK || opcode == .getKQ || opcode == .gatK || opcode == .gatKQ
    }

    /// The command an opcode is, by the name the text protocol gives it.
    static func verb(_ opcode: BinaryOpcode) -> Verb {
        switch opcode {
        case .get, .getQ, .getK, .getKQ: return .get
        case .gat, .gatQ, .gatK, .gatKQ: return .gat
        case .touch: return .touch
        case .set, .setQ: return .set
        case .add, .addQ: return .add
        case .replace, .replaceQ: return .replace
        case .append, .appendQ: return .append
        case .prepend, .prependQ: return .prepend
        case .delete, .deleteQ: return .delete
        case .increment, .incrementQ: return .incr
        case .decrement, .decrementQ: return .decr
        case .quit, .quitQ: return .quit
        case .flush, .flushQ: return .flushAll
        case .noop: return .noop
        case .version: return .version
        case .stat: return .stats
        case .verbosity: return .verbosity
        case .saslListMechs: return .saslListMechanisms
        case .saslAuth: return .saslAuth
        case .saslStep: return .saslStep
        }
    }

    static func isQuiet(_ opcode: BinaryOpcode) -> Bool {
        switch opcode {
        case .getQ, .getKQ, .gatQ, .gatKQ, .setQ, .addQ, .replaceQ, .deleteQ, .incrementQ, .decrementQ, .quitQ, .flushQ,
            .appendQ, .prependQ:
            return true
        default:
            return false
        }
    }

    static func storeVerb(_ opcode: BinaryOpcode) -> StoreVerb? {
        switch opcode {
        case .set, .setQ: return .set
        case .add, .addQ: return .add
        case .replace, .replaceQ: return .replace
        case .append, .appendQ: return .append
        case .prepend, .prependQ: return .prepend
        default: return nil
        }
    }

    /// memcached's per-opcode checks of the header's lengths (proto_bin.c, dispatch_bin_command).
    static func shapeIsValid(_ opcode: BinaryOpcode, keyLength: Int, extrasLength: Int, bodyLength: Int) -> Bool {
        switch opcode {
        case .version, .noop, .quit, .quitQ:
            return keyLength == 0 && extrasLength == 0 && bodyLength == 0
        case .flush, .flushQ:
            return keyLength == 0 && bodyLength == extrasLength && (extrasLength == 0 || extrasLength == 4)
        case .set, .setQ, .add, .addQ, .replace, .replaceQ:
            return extrasLength == 8 && keyLength > 0 && bodyLength >= keyLength + 8
        case .append, .appendQ, .prepend, .prependQ:
            return extrasLength == 0 && keyLength > 0
        case .get, .getQ, .getK, .getKQ, .delete, .deleteQ:
            return extrasLength == 0 && keyLength > 0 && bodyLength == keyLength
        case .increment, .incrementQ, .decrement, .decrementQ:
            return extrasLength == 20 && keyLength > 0 && bodyLength == keyLength + 20
        case .touch, .gat, .gatQ, .gatK, .gatKQ:
            return extrasLength == 4 && keyLength > 0 && bodyLength == keyLength + 4
        case .stat:
            return extrasLength == 0 && bodyLength == keyLength
        case .verbosity:
            return extrasLength == 4 && keyLength == 0 && bodyLength == 4
        case .saslListMechs:
            return extrasLength == 0 && bodyLength == keyLength
        case .saslAuth, .saslStep:
            // Bounded here, before anything is buffered: a huge length field is refused, not awaited.
            return extrasLength == 0 && keyLength > 0 && keyLength <= BinaryMagic.maxSASLMechanismLength
                && bodyLength - keyLength <= BinaryMagic.maxSASLDataLength
        }
    }
}
