import MoatProtocol
import MoatStorage
import NIOCore

/// memcached's binary protocol: the same cache calls and counters as the text protocol, with binary
/// framing, CAS checks from the request header and memcached's quiet-command rules (a quiet get says
/// nothing on a miss; a quiet mutation says nothing on success but does report errors).
extension Session {
    mutating func processBinary(_ input: inout ByteBuffer, into output: inout ByteBuffer) -> SessionAction {
        var decoder = self.binaryDecoder
        defer { self.binaryDecoder = decoder }
        while output.readableBytes < outputHighWater {
            let outcome: SessionAction?? = decoder.decode(&input) { command in executeBinary(command, into: &output) }
            if let full = limitsToLift() {
                decoder.limits = full
                self.decoder.limits = full
            }
            guard let outcome else { return .needInput }
            if let action = outcome { return action }
        }
        return .outputFull
    }

    private mutating func executeBinary(_ command: BinaryCommand, into out: inout ByteBuffer) -> SessionAction? {
        let cache = bucket.cache
        let header = command.header
        let opcode = header.opcode
        let opaque = header.opaque
        func fail(_ status: BinaryStatus, _ out: inout ByteBuffer) {
            BinaryEncoder.writeError(opcode: opcode, status: status, opaque: opaque, into: &out)
        }
        func succeed(quiet: Bool, cas: UInt64 = 0, _ out: inout ByteBuffer) {
            if !quiet { BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, cas: cas, into: &out) }
        }

        guard isAuthenticated || Self.allowedBeforeAuthentication(command.operation) else {
            // memcached's answer to any other command before authentication; quiet ones included.
            fail(.authenticationError, &out)
            // A body over the pre-authentication bound is refused from its header: close rather than
            // read it (it would only be swallowed).
            if case .storeTooLarge = command.operation { return .close }
            return nil
        }
        if restricted, let (name, category) = binaryRefusal(command.operation) {
            deny(name, category)
            fail(.accessDenied, &out)  // quiet commands too: a refusal is an error
            return nil
        }
        if !engine.settings.canaryKeys.isEmpty {
            // Any command naming a canary key learns of it, not only reads.
            switch command.operation {
            case .get(let key, _, _), .getAndTouch(let key, _, _, _), .touch(let key, _), .delete(let key, _),
                .arithmetic(let key, _, _, _, _, _):
                checkCanary(key)
            case .store(let verb, let key, _, _, _, _) where verb != .set:
                checkCanary(key)  // a plain set reveals nothing and plants canaries
            default: break
            }
        }
        switch command.operation {
        case .get(let key, let quiet, let includeKey):
            counters.cmdGet &+= 1
            let hit =
                cache.read(key) { item in
                    BinaryEncoder.writeItem(
                        opcode: opcode, opaque: opaque, cas: item.cas, flags: item.flags,
                        key: includeKey ? item.key : nil,
                        value: item.value, into: &out)
                } != nil
            if hit { counters.getHits &+= 1 } else { counters.getMisses &+= 1 }
            if !hit, !quiet { missReply(key: key, includeKey: includeKey, opcode: opcode, opaque: opaque, into: &out) }

        case .getAndTouch(let key, let exptime, let quiet, let includeKey):
            counters.cmdGet &+= 1
            counters.cmdTouch &+= 1
            let hit =
                cache.read(key, touchExptime: Int64(exptime)) { item in
                    BinaryEncoder.writeItem(
                        opcode: opcode, opaque: opaque, cas: item.cas, flags: item.flags,
                        key: includeKey ? item.key : nil,
                        value: item.value, into: &out)
                } != nil
            if hit {
                counters.getHits &+= 1
                counters.touchHits &+= 1
            } else {
                counters.getMisses &+= 1
                counters.touchMisses &+= 1
                if !quiet { missReply(key: key, includeKey: includeKey, opcode: opcode, opaque: opaque, into: &out) }
            }

        case .touch(let key, let exptime):
            counters.cmdTouch &+= 1
            // As memcached: the reply carries the item's flags and CAS, not its value.
            let hit =
                cache.read(key, touchExptime: Int64(exptime)) { item in
                    BinaryEncoder.writeItem(
                        opcode: opcode, opaque: opaque, cas: item.cas, flags: item.flags, key: nil, value: nil,
                        into: &out)
                } != nil
            if hit {
                counters.touchHits &+= 1
            } else {
                counters.touchMisses &+= 1
                fail(.keyNotFound, &out)
            }

        case .store(let verb, let key, let value, let flags, let exptime, let quiet):
            let expected = header.cas
            // A CAS makes set/add/replace a compare-and-swap (memcached: NREAD_CAS); append/prepend check it.
            let isCAS = expected != 0 && (verb == .set || verb == .add || verb == .replace)
            let mode = isCAS ? StoreMode.cas(expected) : StoreMode(verb, cas: expected)
            var cas: UInt64 = 0
            let outcome = cache.store(
                mode, key: key, value: value, flags: flags, exptime: Int64(exptime), expectedCAS: isCAS ? 0 : expected,
                cas: &cas)
            account(outcome, key: key, unlinksStale: verb == .set)
            if isCAS { counters.countCAS(outcome) }
            switch outcome {
            case .stored: succeed(quiet: quiet, cas: cas, &out)
            case .exists: fail(.keyExists, &out)
            case .notFound: fail(.keyNotFound, &out)
            case .notStored:
                // memcached's statuses: add on an existing key "exists", replace on a missing one "not found".
                switch verb {
                case .add: fail(.keyExists, &out)
                case .replace: fail(.keyNotFound, &out)
                default: fail(.notStored, &out)
                }
            case .tooLarge: fail(.valueTooLarge, &out)
            case .noMemory: fail(.outOfMemory, &out)
            }

        case .storeTooLarge(let verb, let key, _):
            refuseStore(key: key, tooLarge: true, unlinksStale: verb == .set)
            fail(.valueTooLarge, &out)

        case .delete(let key, let quiet):
            switch cache.delete(key, expectedCAS: header.cas) {
            case .deleted:
                counters.deleteHits &+= 1
                succeed(quiet: quiet, &out)
            case .notFound:
                counters.deleteMisses &+= 1
                fail(.keyNotFound, &out)
            case .exists:
                fail(.keyExists, &out)
            }

        case .arithmetic(let key, let increment, let delta, let initial, let exptime, let quiet):
            var cas: UInt64 = 0
            let outcome = cache.arithmetic(key, delta: delta, increment: increment, expectedCAS: header.cas, cas: &cas)
            func reply(_ value: UInt64, cas: UInt64, _ out: inout ByteBuffer) {
                guard !quiet else { return }
                BinaryEncoder.writeHeader(
                    opcode: opcode, status: .ok, bodyLength: 8, opaque: opaque, cas: cas, into: &out)
                out.writeInteger(value)
            }
            switch outcome {
            case .value(let value):
                if increment { counters.incrHits &+= 1 } else { counters.decrHits &+= 1 }
                reply(value, cas: cas, &out)
            case .notFound:
                if increment { counters.incrMisses &+= 1 } else { counters.decrMisses &+= 1 }
                guard exptime != 0xffff_ffff else {
                    fail(.keyNotFound, &out)
                    break
                }
                // Create the counter with its initial value, as memcached (an add, so a racing store wins).
                var digits = Array(String(initial).utf8)
                var created: UInt64 = 0
                let stored = digits.withUnsafeMutableBytes { d in
                    cache.store(
                        .add, key: key, value: UnsafeRawBufferPointer(d), flags: 0, exptime: Int64(exptime),
                        expectedCAS: 0, cas: &created)
                }
                switch stored {
                case .stored: reply(initial, cas: created, &out)
                case .noMemory:
                    counters.storeNoMemory &+= 1
                    fail(.outOfMemory, &out)
                default: fail(.notStored, &out)
                }
                digits.removeAll()
            case .nonNumeric:
                fail(.nonNumeric, &out)
            case .exists:
                fail(.keyExists, &out)
            case .noMemory:
                counters.storeNoMemory &+= 1
                fail(.outOfMemory, &out)
            }

        case .quit(let quiet):
            succeed(quiet: quiet, &out)
            return .close

        case .flush(let exptime, let quiet):
            guard allows(.flushAll) else {
                BinaryEncoder.writeError(
                    opcode: opcode, status: .authenticationError, opaque: opaque, message: "flush_all not allowed",
                    into: &out)
                return nil
            }
            counters.cmdFlush &+= 1
            cache.flushAll(delay: Int64(exptime))
            succeed(quiet: quiet, &out)

        case .noop:
            succeed(quiet: false, &out)

        case .version:
            let version = Array((isAuthenticated ? engine.settings.version : Self.anonymousVersion).utf8)
            version.withUnsafeBytes {
                BinaryEncoder.writeResponse(opcode: opcode, opaque: opaque, value: $0, into: &out)
            }

        case .stat(let key):
            let group = String(decoding: key, as: UTF8.self)
            switch answerStats(group.split(separator: " ").map(String.init)) {
            case .lines(let lines):
                for stat in lines {
                    BinaryEncoder.writeStat(
                        opcode: opcode, opaque: opaque, name: stat.name, value: stat.value.text, into: &out)
                }
                BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, into: &out)
            case .reset, .accepted:
                // Only the terminating STAT packet, as the text protocol's RESET and OK.
                BinaryEncoder.writeHeader(opcode: opcode, status: .ok, opaque: opaque, into: &out)
            case .refused:
                BinaryEncoder.writeError(
                    opcode: opcode, status: .invalidArguments, opaque: opaque, message: "stats \(group) not allowed",
                    into: &out)
            case .unknown:
                fail(.keyNotFound, &out)
            }

        case .verbosity(let level):
            guard allows(.verbosity) else {
                BinaryEncoder.writeError(
                    opcode: opcode, status: .authenticationError, opaque: opaque, message: "verbosity not allowed",
                    into: &out)
                return nil
            }
            engine.verbosity.store(level, ordering: .relaxed)
            succeed(quiet: false, &out)

        case .saslListMechanisms, .saslAuthenticate:
            return executeSASL(command.operation, opcode: opcode, opaque: opaque, into: &out)

        case .unknownCommand:
            counters.protocolErrors &+= 1
            fail(.unknownCommand, &out)

        case .invalidArguments:
            counters.protocolErrors &+= 1
            fail(.invalidArguments, &out)
            return .close

        case .mechanismTooLong:
            // Without -S the SASL opcodes are unknown, as memcached's.
            fail(engine.authenticator == nil ? .unknownCommand : .invalidArguments, &out)

        case .badMagic:
            counters.protocolErrors &+= 1
            return .close
        }
        return nil
    }

    private func missReply(
        key: UnsafeRawBufferPointer, includeKey: Bool, opcode: UInt8, opaque: UInt32, into out: inout ByteBuffer
    ) {
        if includeKey {
            BinaryEncoder.writeKeyNotFound(opcode: opcode, opaque: opaque, key: key, into: &out)
        } else {
            BinaryEncoder.writeError(opcode: opcode, status: .keyNotFound, opaque: opaque, into: &out)
        }
    }
}
