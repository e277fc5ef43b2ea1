import MoatProtocol
import MoatStorage
import NIOCore

/// memcached's meta commands, with 1.6.18's replies and quiet-mode rules: `q` hides `EN` for mg
/// and the nominal `HD` for ms, md and ma; every other code and every error is still sent.
extension Session {
    mutating func executeMeta(_ command: MetaCommand, into out: inout ByteBuffer) -> SessionAction? {
        if restricted, command.verb != .noop {
            var allowed = true
            withKey(command) { key in allowed = permitsMeta(command, key, into: &out) }
            guard allowed else { return nil }
        }
        if !engine.settings.canaryKeys.isEmpty, Self.learnsOfKey(command) { withKey(command) { checkCanary($0) } }
        switch command.verb {
        case .noop: out.writeStaticString("MN\r\n")
        case .debug: withKey(command) { metaDebug(command, $0, into: &out) }
        case .get: withKey(command) { metaGet(command, $0, into: &out) }
        case .set: withKey(command) { metaSet(command, $0, into: &out) }
        case .delete: withKey(command) { metaDelete(command, $0, into: &out) }
        case .arithmetic: withKey(command) { metaArithmetic(command, $0, into: &out) }
        }
        return nil
    }

    /// Whether the command learns whether its key exists (a canary read): all but mn, and ms in set mode,
    /// which reveals nothing and is how canaries are planted.
    private static func learnsOfKey(_ command: MetaCommand) -> Bool {
        switch command.verb {
        case .noop: return false
        case .set: return command.flags.mode != 0 && command.flags.mode != UInt8(ascii: "S")
        default: return true
        }
    }

    /// The key as stored: base64-decoded on the stack for `b`.
    private func withKey(_ command: MetaCommand, _ body: (UnsafeRawBufferPointer) -> Void) {
        if command.binaryKey { Base64.withDecoded(command.key, body) } else { body(command.key) }
    }

    /// The flags every reply echoes: `O` (opaque) and `k` (key).
    private static func writeEcho(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        for token in TokenList(command.tokens) {
            switch token[0] {
            case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
            case UInt8(ascii: "k"): MetaEncoder.writeKey(key, binary: command.binaryKey, into: &out)
            default: break
            }
        }
    }

    // MARK: mg

    private mutating func metaGet(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let flags = command.flags
        var options = LookupOptions()
        options.bump = !flags.has("u")
        if flags.has("T") { options.touchExptime = flags.ttl }
        if flags.has("N") { options.vivifyExptime = flags.vivifyTTL }
        if flags.has("R") { options.recacheExptime = flags.recacheTTL }
        options.newCAS = flags.newCAS
        let withValue = flags.has("v")
        let hit =
            bucket.cache.lookup(key, options) { (item: ItemDetails) -> Void in
                if withValue {
                    out.writeStaticString("VA ")
                    MetaEncoder.writeNumber(UInt64(item.value.count), into: &out)
                } else {
                    out.writeStaticString("HD")
                }
                for token in TokenList(command.tokens) {
                    switch token[0] {
                    case UInt8(ascii: "s"):
                        MetaEncoder.writeFlag(UInt8(ascii: "s"), UInt64(item.value.count), into: &out)
                    case UInt8(ascii: "t"): MetaEncoder.writeFlag(UInt8(ascii: "t"), signed: item.ttl, into: &out)
                    case UInt8(ascii: "c"): MetaEncoder.writeFlag(UInt8(ascii: "c"), item.cas, into: &out)
                    case UInt8(ascii: "f"): MetaEncoder.writeFlag(UInt8(ascii: "f"), UInt64(item.flags), into: &out)
                    case UInt8(ascii: "l"): MetaEncoder.writeFlag(UInt8(ascii: "l"), UInt64(item.idle), into: &out)
                    case UInt8(ascii: "h"):
                        MetaEncoder.writeFlag(UInt8(ascii: "h"), item.fetchedBefore ? 1 : 0, into: &out)
                    case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
                    case UInt8(ascii: "k"): MetaEncoder.writeKey(item.key, binary: command.binaryKey, into: &out)
                    default: break
                    }
                }
                // As memcached: Z (someone else holds the token) before X (stale) before W (you won).
                if item.tokenSentBefore { out.writeStaticString(" Z") }
                if item.stale { out.writeStaticString(" X") }
                if item.won { out.writeStaticString(" W") }
                out.writeStaticString("\r\n")
                if withValue {
                    out.writeBytes(item.value)
                    out.writeStaticString("\r\n")
                }
            } != nil
        // memcached counts an mg with T as a touch, otherwise as a get.
        if flags.has("T") {
            counters.cmdTouch &+= 1
            if hit { counters.touchHits &+= 1 } else { counters.touchMisses &+= 1 }
        } else {
            counters.cmdGet &+= 1
            if hit { counters.getHits &+= 1 } else { counters.getMisses &+= 1 }
        }
        guard !hit, !command.quiet else { return }
        out.writeStaticString("EN")
        Self.writeEcho(command, key, into: &out)
        out.writeStaticString("\r\n")
    }

    // MARK: ms

    private mutating func metaSet(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let flags = command.flags
        let cache = bucket.cache
        if command.valueTooLarge {
            refuseStore(key: key, tooLarge: true, unlinksStale: true)
            TextEncoder.writeError(.tooLarge, into: &out)
            return
        }
        let mode = StoreMode(metaMode: flags.mode)
        let compareCAS = flags.has("C") ? flags.compareCAS : nil
        let (outcome, cas) = cache.store(
            mode, key: key, value: command.value, flags: flags.clientFlags, exptime: flags.has("T") ? flags.ttl : 0,
            compareCAS: compareCAS, newCAS: flags.newCAS, invalidate: flags.has("I"))
        account(outcome, key: key, unlinksStale: true)
        if compareCAS != nil, mode == .set || mode == .replace { counters.countCAS(outcome) }
        switch outcome {
        case .stored:
            if command.quiet { return }
            out.writeStaticString("HD")
        case .notStored: out.writeStaticString("NS")
        case .exists: out.writeStaticString("EX")
        case .notFound: out.writeStaticString("NF")
        case .tooLarge:
            TextEncoder.writeError(.tooLarge, into: &out)
            return
        case .noMemory:
            TextEncoder.write(.outOfMemory, into: &out)
            return
        }
        for token in TokenList(command.tokens) {
            switch token[0] {
            case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
            case UInt8(ascii: "k"): MetaEncoder.writeKey(key, binary: command.binaryKey, into: &out)
            // 0 unless stored, as memcached.
            case UInt8(ascii: "c"): MetaEncoder.writeFlag(UInt8(ascii: "c"), cas, into: &out)
            default: break
            }
        }
        out.writeStaticString("\r\n")
    }

    // MARK: md

    private mutating func metaDelete(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer)
    {
        let flags = command.flags
        let invalidate = flags.has("I")
        let outcome = bucket.cache.delete(
            key, compareCAS: flags.has("C") ? flags.compareCAS : nil, invalidate: invalidate,
            removeValue: flags.has("x"),
            newExptime: invalidate && flags.has("T") ? flags.ttl : nil, newCAS: flags.newCAS)
        switch outcome {
        case .deleted:
            if !invalidate { counters.deleteHits &+= 1 }
            if command.quiet { return }
            out.writeStaticString("HD")
        case .notFound:
            counters.deleteMisses &+= 1
            out.writeStaticString("NF")
        case .exists:
            counters.deleteMisses &+= 1
            out.writeStaticString("EX")
        }
        Self.writeEcho(command, key, into: &out)
        out.writeStaticString("\r\n")
    }

    // MARK: ma

    private mutating func metaArithmetic(
        _ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer
    ) {
        let flags = command.flags
        let increment = flags.mode != UInt8(ascii: "D") && flags.mode != UInt8(ascii: "-")
        let result = bucket.cache.arithmetic(
            key, delta: flags.delta, increment: increment, compareCAS: flags.has("C") ? flags.compareCAS : nil,
            newCAS: flags.newCAS, vivifyExptime: flags.has("N") ? flags.vivifyTTL : nil, initial: flags.initial,
            touchExptime: flags.has("T") ? flags.ttl : nil)
        let number: UInt64
        switch result.outcome {
        case .value(let value):
            if increment { counters.incrHits &+= 1 } else { counters.decrHits &+= 1 }
            // memcached hides a quiet success, but not the reply that reports a creation.
            if command.quiet { return }
            number = value
        case .created(let value):
            number = value
        case .notFound, .notStored, .exists:
            if result.outcome == .notFound {
                if increment { counters.incrMisses &+= 1 } else { counters.decrMisses &+= 1 }
            }
            out.writeStaticString(result.outcome == .notFound ? "NF" : result.outcome == .exists ? "EX" : "NS")
            Self.writeEcho(command, key, into: &out)
            out.writeStaticString("\r\n")
            return
        case .nonNumeric:
            TextEncoder.writeLine("CLIENT_ERROR cannot increment or decrement non-numeric value", into: &out)
            return
        case .noMemory:
            counters.storeNoMemory &+= 1
            TextEncoder.writeLine("SERVER_ERROR out of memory", into: &out)
            return
        }
        let withValue = flags.has("v")
        var digits = 1
        var probe = number
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        if withValue {
            out.writeStaticString("VA ")
            MetaEncoder.writeNumber(UInt64(digits), into: &out)
        } else {
            out.writeStaticString("HD")
        }
        for token in TokenList(command.tokens) {
            switch token[0] {
            case UInt8(ascii: "c"): MetaEncoder.writeFlag(UInt8(ascii: "c"), result.cas, into: &out)
            case UInt8(ascii: "t"): MetaEncoder.writeFlag(UInt8(ascii: "t"), signed: result.ttl, into: &out)
            case UInt8(ascii: "O"): MetaEncoder.writeToken(token, into: &out)
            case UInt8(ascii: "k"): MetaEncoder.writeKey(key, binary: command.binaryKey, into: &out)
            default: break
            }
        }
        out.writeStaticString("\r\n")
        if withValue {
            MetaEncoder.writeNumber(number, into: &out)
            out.writeStaticString("\r\n")
        }
    }

    // MARK: me

    /// One named item's metadata: not a key dump (which Moat refuses), as the client must know the key.
    /// `exp` is the TTL left (memcached 1.6.18 printed its negation; later versions fixed that).
    private func metaDebug(_ command: MetaCommand, _ key: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        guard let info = bucket.cache.inspect(key) else {
            out.writeStaticString("EN\r\n")
            return
        }
        out.writeStaticString("ME ")
        if command.binaryKey { Base64.encode(key, into: &out) } else { out.writeBytes(key) }
        out.writeStaticString(" exp=")
        if info.ttl < 0 { out.writeStaticString("-1") } else { MetaEncoder.writeNumber(UInt64(info.ttl), into: &out) }
        out.writeStaticString(" la=")
        MetaEncoder.writeNumber(UInt64(info.idle), into: &out)
        out.writeStaticString(" cas=")
        MetaEncoder.writeNumber(info.cas, into: &out)
        out.writeStaticString(info.fetched ? " fetch=yes cls=" : " fetch=no cls=")
        MetaEncoder.writeNumber(UInt64(info.sizeClass), into: &out)
        out.writeStaticString(" size=")
        MetaEncoder.writeNumber(UInt64(info.size), into: &out)
        out.writeStaticString("\r\n")
    }
}
