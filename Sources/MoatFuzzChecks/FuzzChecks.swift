import MoatAccess
import MoatConfig
import MoatEngine
import MoatProtocol
import MoatSnapshot
import MoatStorage
import NIOCore

/// The invariants the fuzzers check (Fuzz/, libFuzzer) and `swift test` replays on the seed corpora and
/// on every input that once broke one (Tests/MoatFuzzChecksTests). Each check takes any bytes and
/// returns the invariants they violated (none: fine); the fuzzers turn a violation into a crash.
public enum FuzzChecks {
    public static let targets: [String: @Sendable ([UInt8]) -> [String]] = [
        "text": text, "meta": meta, "binary": binary, "sasl": sasl, "config": config, "engine": engine,
        "snapshot": snapshot,
    ]

    // MARK: text and meta

    /// Decodes `data` whole and again split at a point chosen by the data: both give the same requests;
    /// every key is 1-250 bytes without spaces or control bytes; a stored value has exactly the length its
    /// command line declared; a request encoded again decodes to itself.
    public static func text(_ data: [UInt8]) -> [String] {
        var problems: [String] = []
        let whole = decodeText(chunks: [data], problems: &problems, checkRegions: true)
        let split = data.isEmpty ? 0 : Int(data[0]) * 7919 % data.count
        let pieces = decodeText(
            chunks: [Array(data[..<split]), Array(data[split...])], problems: &problems, checkRegions: false)
        if whole != pieces {
            problems.append("whole and split input decode differently: \(whole.count) vs \(pieces.count) requests")
        }
        for request in whole {
            for key in keys(of: request) where !validKey(key) {
                problems.append("decoded key of \(key.count) bytes breaks the key rules: \(key.prefix(40))")
            }
            guard let wire = encode(request) else { continue }
            var ignored: [String] = []
            let again = decodeText(chunks: [wire], problems: &ignored, checkRegions: false)
            if again != [request] {
                problems.append("re-encoded \(String(decoding: wire.prefix(80), as: UTF8.self)) decodes to \(again)")
            }
        }
        return problems
    }

    /// The text checks on input that starts as a meta command (the first byte picks the verb), so the
    /// fuzzer spends its time in the meta decoder.
    public static func meta(_ data: [UInt8]) -> [String] {
        guard let first = data.first else { return [] }
        let verbs = ["mg ", "ms ", "md ", "ma ", "mn", "me ", "mg b ", "ms b "]
        let prefix = Array(verbs[Int(first) % verbs.count].utf8)
        return text(prefix + data.dropFirst())
    }

    static func decodeText(chunks: [[UInt8]], problems: inout [String], checkRegions: Bool) -> [OwnedRequest] {
        var decoder = TextDecoder()
        var buffer = ByteBuffer()
        var requests: [OwnedRequest] = []
        var stream: [UInt8] = []
        var position = 0
        // Where the data block declared by the last storage line ends: no request may start before it.
        var blockEnd = 0
        var mustClose = false
        for chunk in chunks {
            buffer.writeBytes(chunk)
            stream += chunk
            while true {
                let start = buffer.readerIndex
                let all = buffer.getBytes(at: start, length: buffer.readableBytes) ?? []
                guard let request = decoder.next(&buffer) else { break }
                let end = position + buffer.readerIndex - start
                if checkRegions {
                    checkDeclaredLength(request, region: Array(all.prefix(buffer.readerIndex - start)), &problems)
                    checkFraming(
                        request, stream: stream, regionStart: position, regionEnd: end, blockEnd: &blockEnd,
                        mustClose: &mustClose,
                        &problems)
                }
                position = end
                requests.append(request)
                // The connection closes here: whatever follows is never read (and may decode differently).
                if closes(request) { return requests }
                if requests.count > 100_000 { return requests }
            }
        }
        return requests
    }

    /// A stored value's length is the number on its command line, and the bytes the decode consumed end
    /// with that line, the value and its CRLF (a refused value swallowed just before may precede them).
    static func checkDeclaredLength(_ request: OwnedRequest, region: [UInt8], _ problems: inout [String]) {
        guard case .store(let key, let value, _) = request.operation else { return }
        let command = Array("\(request.verb.name) ".utf8) + sentKey(key, request)
        let lengthToken = request.verb == .ms ? 2 : 4
        guard region.count >= value.count + 3, Array(region.suffix(value.count + 2)) == value + [13, 10],
            region[region.count - value.count - 3] == UInt8(ascii: "\n")
        else {
            problems.append("a \(value.count)-byte value was not the end of the bytes its store consumed")
            return
        }
        let beforeValue = Array(region[..<(region.count - value.count - 3)])
        // The command starts at its verb and key; bytes of a value swallowed just before may precede it
        // on the same line, even inside a token (a refused store swallows exactly its declared length
        // plus two), so the last place the verb and key appear is the command's start.
        let lineStart = (beforeValue.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        // Not found: the key arrived split by a swallow (or in another base64 spelling of the same bytes);
        // the re-encoding check still covers the value's length.
        guard let commandStart = lastOccurrence(of: command + [0x20], in: beforeValue, from: lineStart) else { return }
        let line = beforeValue[commandStart...].split(separator: UInt8(ascii: " "))
        guard line.count > lengthToken,
            let declared = Int(String(decoding: line[line.startIndex + lengthToken].filter { $0 != 13 }, as: UTF8.self))
        else {
            problems.append(
                """
                a store was decoded from a line without a length: \
                \(String(decoding: beforeValue[lineStart...].prefix(60), as: UTF8.self))
                """
            )
            return
        }
        if declared != value.count { problems.append("declared \(declared) bytes, decoded \(value.count)") }
    }

    /// No request is ever decoded from inside a declared data block. The oracle reads each request's
    /// line on its own (not through the decoder): a storage line declares the block its length token
    /// gives, and the next request must start after that block and its CRLF; a storage line whose block
    /// cannot be located (length unreadable, or a wrong token count with a number among the tokens, as a
    /// key with a space makes) must close the connection.
    /// A block that does not end with CRLF where its length says loses the framing too: the connection
    /// must close (`mustClose`: at the latest with the next request, when the block was being swallowed).
    static func checkFraming(
        _ request: OwnedRequest, stream: [UInt8], regionStart: Int, regionEnd: Int, blockEnd: inout Int,
        mustClose: inout Bool,
        _ problems: inout [String]
    ) {
        let closes = closes(request)
        if mustClose, !closes { problems.append("a data block without its CRLF did not close the connection") }
        mustClose = false
        // The request's line ends at the last newline of its region (before its value, for a store).
        var valueCount = 0
        if case .store(_, let value, _) = request.operation { valueCount = value.count + 2 }
        let newline = regionEnd - valueCount - 1
        // A line too long: it closes.
        guard newline >= regionStart, newline < stream.count, stream[newline] == 10 else { return }
        var lineStart = newline
        while lineStart > regionStart, stream[lineStart - 1] != 10 { lineStart -= 1 }
        // An error that closes the connection (a swallowed block without its CRLF, say) runs nothing.
        if lineStart < blockEnd, !closes {
            problems.append(
                """
                a request was decoded from inside a declared data block (at \(lineStart), the block ends at \
                \(blockEnd))
                """
            )
        }
        var lineEnd = newline
        if lineEnd > lineStart, stream[lineEnd - 1] == 13 { lineEnd -= 1 }
        let tokens = stream[lineStart..<lineEnd].split(separator: 0x20).map { String(decoding: $0, as: UTF8.self) }
        // A number is an optional minus and ASCII digits, however many (a length the decoder cannot read is
        // lost framing). Bytes, not Characters: "2" and a combining mark make one Character that sorts as a digit.
        func isNumber(_ token: String) -> Bool {
            let digits = token.utf8.first == UInt8(ascii: "-") ? token.utf8.dropFirst() : Substring(token).utf8
            return !digits.isEmpty && digits.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        }
        func length(_ token: String) -> Int? {
            guard isNumber(token), let value = Int(token), value >= 0, value <= Int(Int32.max) - 2 else { return nil }
            return value
        }
        var declared: Int?
        var lost = false
        switch tokens.first {
        case "ms":
            if tokens.count >= 3 {
                declared = length(tokens[2])
                lost = declared == nil
            }
        case "set", "add", "replace", "append", "prepend", "cas":
            let required = tokens[0] == "cas" ? 6 : 5
            if tokens.count == required || (tokens.count == required + 1 && tokens.last == "noreply") {
                declared = length(tokens[4])
                lost = declared == nil
            } else {
                lost = tokens.dropFirst().contains(where: isNumber)
            }
        default: break
        }
        if lost {
            if !closes {
                problems.append("a storage line whose data block cannot be located did not close: \(tokens.prefix(8))")
            }
            return
        }
        guard let declared else { return }
        blockEnd = newline + 1 + declared + 2
        if blockEnd <= stream.count, stream[blockEnd - 2] != 13 || stream[blockEnd - 1] != 10, !closes {
            mustClose = true
        }
    }

    /// Where `needle` last occurs in `haystack` at or after `from`.
    static func lastOccurrence(of needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard haystack.count - from >= needle.count else { return nil }
        var index = haystack.count - needle.count
        while index >= from {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index -= 1
        }
        return nil
    }

    /// Whether the connection closes after this request (an error whose disposition says so).
    static func closes(_ request: OwnedRequest) -> Bool {
        if case .error(let reply) = request.operation { return reply.disposition != .reply }
        return false
    }

    /// The key as the client sent it: meta's `b` keys base64-encoded again.
    static func sentKey(_ key: [UInt8], _ request: OwnedRequest) -> [UInt8] {
        guard case .meta(let form) = request.reply, form.base64Key else { return key }
        var out = ByteBuffer()
        key.withUnsafeBytes { Base64.encode($0, into: &out) }
        return Array(out.readableBytesView)
    }

    static func keys(of request: OwnedRequest) -> [[UInt8]] {
        // Binary keys (meta `b`) may hold any byte.
        if case .meta(let form) = request.reply, form.base64Key { return [] }
        switch request.operation {
        case .getMany(let keys, _): return keys.split(separator: 0x20).map(Array.init)
        case .get(let key, _), .store(let key, _, _), .storeTooLarge(let key, _), .delete(let key, _),
            .arithmetic(let key, _), .touch(let key, _), .inspect(let key):
            return [key]
        default: return []
        }
    }

    /// The key rule the text check applies to every decoded key (public for its own test).
    public static func keyRuleHolds(_ key: [UInt8]) -> Bool { validKey(key) }

    static func validKey(_ key: [UInt8]) -> Bool {
        (1...250).contains(key.count) && !key.contains { $0 <= 0x20 || $0 == 0x7F }
    }

    /// The request as a client would send it; nil for the kinds not re-encoded.
    static func encode(_ request: OwnedRequest) -> [UInt8]? {
        func line(_ parts: [[UInt8]]) -> [UInt8] { Array(parts.joined(separator: [0x20])) + [13, 10] }
        func t(_ s: String) -> [UInt8] { Array(s.utf8) }
        let verb = t(request.verb.name)
        switch request.reply {
        case .meta(let form):
            let flags = form.tokens.split(separator: 0x20).map(Array.init)
            switch request.operation {
            case .noop: return line([t("mn")])
            case .store(let key, let value, _):
                return line([verb, sentKey(key, request), t("\(value.count)")] + flags) + value + [13, 10]
            case .get(let key, _), .delete(let key, _), .arithmetic(let key, _), .inspect(let key):
                return line([verb, sentKey(key, request)] + flags)
            default: return nil
            }
        case .text(let noreply, _):
            let nr = noreply ? [t("noreply")] : []
            switch request.operation {
            case .getMany(let keys, let options):
                return line([verb] + (options.touchTTL.map { [t("\($0)")] } ?? []) + [keys])
            case .store(let key, let value, let o):
                let cas = o.verb == .cas ? [t("\(o.compareCAS ?? 0)")] : []
                return line([verb, key, t("\(o.flags)"), t("\(o.ttl)"), t("\(value.count)")] + cas + nr) + value + [
                    13, 10,
                ]
            case .delete(let key, _): return line([verb, key] + nr)
            case .arithmetic(let key, let o): return line([verb, key, t("\(o.delta)")] + nr)
            case .touch(let key, let ttl): return line([verb, key, t("\(ttl)")] + nr)
            case .version, .quit: return line([verb])
            default: return nil
            }
        case .binary: return nil
        }
    }

    // MARK: binary

    /// Decodes `data` whole and split: the same requests; keys at most 250 bytes; a value has the length
    /// the header gives it (body less key and extras).
    public static func binary(_ data: [UInt8]) -> [String] {
        var problems: [String] = []
        func decodeAll(_ chunks: [[UInt8]]) -> [OwnedRequest] {
            var decoder = BinaryDecoder()
            var buffer = ByteBuffer()
            var out: [OwnedRequest] = []
            for chunk in chunks {
                buffer.writeBytes(chunk)
                while let request = decoder.next(&buffer) {
                    out.append(request)
                    if closes(request) { return out }
                    if out.count > 100_000 { return out }
                }
            }
            return out
        }
        /// A bad magic byte is reported from whatever of the header had arrived: compare the verdict only.
        func comparable(_ requests: [OwnedRequest]) -> [OwnedRequest] {
            requests.map { request in
                guard case .error(.badMagic) = request.operation, case .binary(let form) = request.reply else {
                    return request
                }
                var verdict = request
                verdict.reply = .binary(BinaryReturn(header: BinaryHeader(magic: form.header.magic, opcode: 0)))
                return verdict
            }
        }
        let whole = decodeAll([data])
        let split = data.isEmpty ? 0 : Int(data[0]) * 7919 % data.count
        if comparable(whole) != comparable(decodeAll([Array(data[..<split]), Array(data[split...])])) {
            problems.append("whole and split binary input decode differently")
        }
        for request in whole {
            guard case .binary(let form) = request.reply else {
                problems.append("a binary request with a \(request.reply) reply")
                continue
            }
            let h = form.header
            switch request.operation {
            case .get(let key, _), .touch(let key, _), .delete(let key, _), .arithmetic(let key, _),
                .storeTooLarge(let key, _):
                if key.count > 250 || key.count != Int(h.keyLength) {
                    problems.append("binary key of \(key.count) bytes, header says \(h.keyLength)")
                }
            case .store(let key, let value, _):
                if key.count > 250 || key.count != Int(h.keyLength) {
                    problems.append("binary key of \(key.count) bytes, header says \(h.keyLength)")
                }
                let expected = Int(h.bodyLength) - Int(h.keyLength) - Int(h.extrasLength)
                if value.count != expected {
                    problems.append("binary value of \(value.count) bytes, header implies \(expected)")
                }
            default: break
            }
        }
        return problems
    }

    // MARK: SASL

    static let saslStore: CredentialStore = {
        var store = CredentialStore()
        try? store.add(user: "fuzz", password: Array("pencil".utf8), iterations: 4096)
        return store
    }()

    /// A SASL exchange driven by arbitrary messages (the first byte picks the mechanism; 0xFF separates
    /// messages): it never succeeds for anyone but the store's user, PLAIN only with the right password,
    /// SCRAM never (random bytes cannot produce the proof), and challenges stay under the message limit.
    public static func sasl(_ data: [UInt8]) -> [String] {
        guard let first = data.first else { return [] }
        let mechanisms: [SASLMechanism] = [.plain, .scramSHA256, .scramSHA1]
        let mechanism = mechanisms[Int(first) % mechanisms.count]
        var exchange = SASLExchange(
            mechanism: mechanism, store: saslStore, serverSecret: Array(repeating: 7, count: 32))
        let messages = data.dropFirst().split(separator: 0xFF, omittingEmptySubsequences: false).prefix(4).map(
            Array.init)
        var problems: [String] = []
        for (index, message) in messages.enumerated() {
            let step = index == 0 ? exchange.start(message) : exchange.step(message)
            switch step {
            case .challenge(let challenge):
                if challenge.count > SASLExchange.maximumMessageBytes {
                    problems.append("a challenge of \(challenge.count) bytes")
                }
            case .success(let user, _):
                let plainOK =
                    mechanism == .plain && user == "fuzz" && message.count >= 6
                    && Array(message.suffix(6)) == Array("pencil".utf8)
                if !plainOK { problems.append("\(mechanism) succeeded as \(user) on fuzzed input") }
                return problems
            case .failure:
                return problems
            }
        }
        return problems
    }

    // MARK: configuration file

    /// Any text either parses or is refused with a message that names the file; a file that parses has
    /// only users in declared buckets, quotas of at least 1 MiB, and server settings the flag parser takes.
    public static func config(_ data: [UInt8]) -> [String] {
        let text = String(decoding: data, as: UTF8.self)
        do {
            let file = try ConfigFile.parse(text, path: "fuzz.yaml")
            var problems: [String] = []
            let declared = Set(file.tenants.buckets.map(\.name)).union(["default"])
            for user in file.tenants.users ?? [] where !declared.contains(user.bucket) {
                problems.append("user \(user.name) in undeclared bucket \(user.bucket)")
            }
            for bucket in file.tenants.buckets where bucket.memoryLimit < 1_048_576 {
                problems.append("bucket \(bucket.name) below 1 MiB")
            }
            // The server section fills the flags' own model, which resolves or refuses, never anything else.
            if var options = try? ServeOptions.parse([]) {
                options.fill(from: file.server)
                _ = try? options.resolve()
            }
            return problems
        } catch {
            return error.description.hasPrefix("fuzz.yaml")
                ? [] : ["error without the file name: \(error.description.prefix(80))"]
        }
    }

    // MARK: snapshots

    /// A snapshot file as anyone who can write the state directory could make it. The first byte picks
    /// how the rest is read: even, as the records of an unencrypted snapshot whose checksums are right
    /// (cut into up to three chunks where the data says), so the record parser sees anything; odd, as the
    /// whole file. Either the restore succeeds and the caches hold exactly what it says it restored, within
    /// their memory limits, or it throws and they hold nothing.
    public static func snapshot(_ data: [UInt8]) -> [String] {
        guard let first = data.first else { return [] }
        let now: Int64 = 1_700_000_000
        struct Fixed: CacheClock {
            let time: Int64
            func now() -> Int64 { time }
        }
        let limit = 1 << 20
        let caches = ["default", "b"].map { name in
            (
                name,
                Cache(
                    configuration: CacheConfiguration(
                        memoryLimit: limit, maxItemSize: 256 * 1024, shardCount: 1, segmentSize: 16 * 1024),
                    clock: Fixed(time: now))
            )
        }
        let body = Array(data.dropFirst())
        let file: [UInt8]
        if first & 1 == 0 {
            let cuts = [Int(first >> 1) * 131 % (body.count + 1), Int(first >> 4) * 977 % (body.count + 1)].sorted()
            let chunks = [Array(body[..<cuts[0]]), Array(body[cuts[0]..<cuts[1]]), Array(body[cuts[1]...])]
            file = SnapshotWriter.plainSnapshot(chunks: chunks, created: now - 1)
        } else {
            file = body
        }
        var problems: [String] = []
        let held = { caches.map { $0.1.counters().currentItems }.reduce(0, +) }
        do {
            let summary = try SnapshotReader.restore(bytes: file, key: nil, maxAge: 300, now: now) { name in
                caches.first { $0.0 == name }?.1
            }
            if held() != summary.restored {
                problems.append("restored \(summary.restored) items, the caches hold \(held())")
            }
        } catch {
            if held() != 0 { problems.append("a refused snapshot (\(error)) left \(held()) items") }
        }
        for (name, cache) in caches where cache.counters().mallocedBytes > limit {
            problems.append("bucket \(name): item memory \(cache.counters().mallocedBytes) above \(limit)")
        }
        return problems
    }

    // MARK: the whole engine

    /// Runs a program decoded from the bytes (set, get, delete, append, incr, touch, flush on 16 keys with
    /// values up to 64 KiB) against one session on a 1 MiB cache, after each step checking that item
    /// memory stays within the limit and that every hit returns the last value stored for its key.
    public static func engine(_ data: [UInt8]) -> [String] {
        let limit = 1 << 20
        let cache = Cache(
            configuration: CacheConfiguration(
                memoryLimit: limit, maxItemSize: 256 * 1024, shardCount: 1, segmentSize: 16 * 1024))
        let engine = Engine(cache: cache, settings: EngineSettings())
        var session = engine.makeSession()
        /// What a get of each key may return: exactly one value, nothing, or (after a refused store
        /// or an eviction the model cannot see) either.
        enum Expect {
            case exactly([UInt8])
            case absent
            case unknown
        }
        var model = [Expect](repeating: .absent, count: 16)
        var problems: [String] = []
        var index = 0
        func byte() -> Int {
            defer { index += 1 }
            return index < data.count ? Int(data[index]) : 0
        }
        func run(_ command: [UInt8]) -> [UInt8] {
            var input = ByteBuffer(bytes: command)
            var output = ByteBuffer()
            while input.readableBytes > 0 {
                let action = session.process(&input, into: &output)
                if action != .outputFull { break }
            }
            return Array(output.readableBytesView)
        }
        let stored = Array("STORED\r\n".utf8)
        var steps = 0
        while index < data.count, steps < 2000 {
            steps += 1
            let op = byte() % 8
            let key = byte() % 16
            let name = "key\(key)"
            switch op {
            case 0, 1:  // set, size from two bytes, content from the key and step
                let size = (byte() << 8 | byte()) % (64 * 1024)
                let value = [UInt8](repeating: UInt8(65 + (key + steps) % 26), count: size)
                let reply = run(Array("set \(name) 0 0 \(size)\r\n".utf8) + value + [13, 10])
                model[key] = reply == stored ? .exactly(value) : .unknown
            case 2:  // get: a miss is always possible (eviction); a hit must be the model's value
                let reply = run(Array("get \(name)\r\n".utf8))
                guard reply != Array("END\r\n".utf8) else {
                    model[key] = .absent
                    break
                }
                switch model[key] {
                case .absent: problems.append("hit on \(name), which holds nothing")
                case .exactly(let expected):
                    let header = Array("VALUE \(name) 0 \(expected.count)\r\n".utf8)
                    if reply != header + expected + Array("\r\nEND\r\n".utf8) {
                        problems.append("\(name) returned another value")
                    }
                case .unknown:
                    let header = Array("VALUE \(name) 0 ".utf8)
                    if !reply.starts(with: header) { problems.append("\(name) returned another key") }
                }
            case 3:
                _ = run(Array("delete \(name)\r\n".utf8))
                model[key] = .absent
            case 4:  // append a few bytes
                let extra = [UInt8](repeating: UInt8(97 + byte() % 26), count: byte() % 64)
                let reply = run(Array("append \(name) 0 0 \(extra.count)\r\n".utf8) + extra + [13, 10])
                if reply == stored, case .exactly(let old) = model[key] {
                    model[key] = .exactly(old + extra)
                } else if reply == Array("NOT_STORED\r\n".utf8) {
                    model[key] = .absent
                } else {
                    model[key] = .unknown
                }
            case 5:  // incr: a number now, or unchanged (not numeric), or absent
                let reply = run(Array("incr \(name) \(byte())\r\n".utf8))
                let text = String(decoding: reply, as: UTF8.self)
                if let number = UInt64(text.dropLast(2)) {
                    model[key] = .exactly(Array(String(number).utf8))
                } else if text == "NOT_FOUND\r\n" {
                    model[key] = .absent
                }
            case 6:
                _ = run(Array("touch \(name) 0\r\n".utf8))
            default:
                if byte() % 8 == 0 {
                    _ = run(Array("flush_all\r\n".utf8))
                    model = [Expect](repeating: .absent, count: 16)
                }
            }
            let used = cache.counters().mallocedBytes
            if used > limit { problems.append("item memory \(used) above the limit \(limit)") }
            if !problems.isEmpty { return problems }
        }
        return problems
    }
}
