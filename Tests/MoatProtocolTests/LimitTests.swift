import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

@Suite struct KeyLimitTests {
    let key250 = String(repeating: "k", count: 250)
    let key251 = String(repeating: "k", count: 251)

    @Test func keyRules() {
        #expect(KeyRules.isValid(b("a")))
        #expect(KeyRules.isValid(b(key250)))
        #expect(!KeyRules.isValid(b(key251)))
        #expect(!KeyRules.isValid([UInt8]()))
        #expect(!KeyRules.isValid(b("a b")))
        #expect(!KeyRules.isValid([0x61, 0x01]))
        #expect(!KeyRules.isValid([0x61, 0x7F]))
        #expect(!KeyRules.isValid([0x61, 0x09]))
        #expect(KeyRules.isValid([0xC3, 0xA9, 0x80]))
        #expect(KeyRules.isValid(b("abc"), maxLength: 3))
        // memcached's leniency, on request (-o lenient_keys): control bytes pass, space and length still fail.
        #expect(KeyRules.isValid([0x10, 0x18, 0x61, 0x7F], allowControlBytes: true))
        #expect(!KeyRules.isValid(b("a b"), allowControlBytes: true))
        #expect(!KeyRules.isValid(b(key251), allowControlBytes: true))
        #expect(!KeyRules.isValid(b("abcd"), maxLength: 3))
    }

    @Test func retrievalKeyLength() {
        #expect(decode("get \(key250)\r\n") == [get(key250)])
        #expect(decode("get \(key251)\r\n") == [failure(.badCommandLine)])
        #expect(decode("get a \(key251) b\r\n") == [failure(.badCommandLine)])
        #expect(decode("gets \(key251)\r\n") == [failure(.badCommandLine)])
        #expect(decode("gat 1 \(key251)\r\n") == [failure(.badCommandLine)])
    }

    @Test func otherCommandsKeyLength() {
        #expect(decode("delete \(key250)\r\n") == [delete(key250)])
        #expect(decode("delete \(key251)\r\n") == [failure(.badCommandLine)])
        #expect(decode("delete \(key251) noreply\r\n") == [failure(.badCommandLine, noreply: true)])
        #expect(decode("incr \(key251) 1\r\n") == [failure(.badCommandLine)])
        #expect(decode("touch \(key251) 1\r\n") == [failure(.badCommandLine)])
    }

    @Test func storageKeyLengthSwallowsTheDataBlock() {
        #expect(decode("set \(key250) 0 0 1\r\nx\r\n") == [store(.set, key250, "x")])
        // The refused block must not be read as commands: "get x" inside it is swallowed.
        #expect(
            decode("set \(key251) 0 0 7\r\nget x\r\n\r\nversion\r\n") == [failure(.badCommandLine), versionCommand])
        #expect(
            dripFeed(b("set \(key251) 0 0 7\r\nget x\r\n\r\nversion\r\n")) == [
                failure(.badCommandLine), versionCommand,
            ])
        #expect(
            decode("set \(key251) 0 0 1 noreply\r\nx\r\nversion\r\n") == [
                failure(.badCommandLine, noreply: true), versionCommand,
            ])
    }

    @Test func controlBytesRejected() {
        #expect(decode(b("get a") + [0x01] + b("b\r\n")) == [failure(.badCommandLine)])
        #expect(decode(b("get a") + [0x7F] + b("\r\n")) == [failure(.badCommandLine)])
        #expect(decode(b("get a\tb\r\n")) == [failure(.badCommandLine)])
        #expect(decode(b("get a\rb\r\n")) == [failure(.badCommandLine)])
        #expect(decode(b("delete a") + [0x00] + b("\r\n")) == [failure(.badCommandLine)])
        #expect(
            decode(b("set a") + [0x02] + b(" 0 0 1\r\nx\r\nversion\r\n")) == [failure(.badCommandLine), versionCommand])
    }
}

@Suite struct LineLengthTests {
    let limits = ProtocolLimits()

    @Test func defaults() {
        #expect(limits.maxKeyLength == 250)
        #expect(limits.maxLineLength == 2048)
        #expect(limits.maxRetrievalLineLength == 64 * 1024)
        #expect(limits.maxItemSize == 1024 * 1024)
        let big = ProtocolLimits(maxItemSize: 8 * 1024 * 1024)
        #expect(big.maxItemSize == 8 * 1024 * 1024)
        #expect(big.maxRetrievalLineLength == 8 * 1024 * 1024)
        #expect(ProtocolLimits(maxItemSize: 1000).maxRetrievalLineLength == 64 * 1024)
        #expect(ProtocolLimits(maxItemSize: 1 << 30).maxRetrievalLineLength == 16 * 1024 * 1024)
    }

    @Test func longLineWithoutNewlineClosesTheConnection() {
        var decoder = TextDecoder()
        var buffer = ByteBuffer(bytes: b("set ") + Array(repeating: UInt8(ascii: "a"), count: limits.maxLineLength - 4))
        #expect(buffer.readableBytes == limits.maxLineLength)
        #expect(decoder.next(&buffer) == nil)  // exactly the limit: still waiting
        buffer.writeBytes(b("a"))
        let request = decoder.next(&buffer)
        #expect(request == failure(.lineTooLong))
        if case .error(let reply)? = request?.operation {
            #expect(reply.disposition == .replyAndClose)
            #expect(reply.message == "CLIENT_ERROR line too long")
        }
        #expect(buffer.readableBytes == 0)
    }

    @Test func longLineDripFedIsRefusedAtTheLimit() {
        let input = Array(repeating: UInt8(ascii: "x"), count: 3000)
        var decoder = TextDecoder()
        var buffer = ByteBuffer()
        var refusedAt: Int?
        for (index, byte) in input.enumerated() {
            buffer.writeInteger(byte)
            if let request = decoder.next(&buffer) {
                #expect(request == failure(.lineTooLong))
                refusedAt = index + 1
                break
            }
        }
        #expect(refusedAt == limits.maxLineLength + 1)
    }

    @Test func longCompleteLineIsRefused() {
        let line = "set " + String(repeating: "a", count: 3000) + " 0 0 1\r\n"
        #expect(decode(line) == [failure(.lineTooLong)])
    }

    @Test func longRetrievalLineIsWaitedFor() {
        let keys = (0..<1000).map { "key\($0)" }
        let line = b("get " + keys.joined(separator: " "))
        #expect(line.count > limits.maxLineLength)
        #expect(line.count < limits.maxRetrievalLineLength)
        var decoder = TextDecoder()
        var buffer = ByteBuffer(bytes: line)
        #expect(decoder.next(&buffer) == nil)
        #expect(buffer.readableBytes == line.count)
        buffer.writeBytes(b("\r\n"))
        #expect(
            decoder.next(&buffer)
                == Request(
                    .get, .getMany(keys: b(keys.joined(separator: " ")), GetOptions()),
                    reply: .text(noreply: false, withCAS: false)))
        // The same, drip-fed, and for gets/gat.
        #expect(
            dripFeed(line + b("\r\n")) == [
                Request(
                    .get, .getMany(keys: b(keys.joined(separator: " ")), GetOptions()),
                    reply: .text(noreply: false, withCAS: false))
            ])
        let gats = b("gats 5 " + keys.joined(separator: " ") + "\r\n")
        #expect(
            decode(gats) == [
                Request(
                    .gats, .getMany(keys: b(keys.joined(separator: " ")), GetOptions(touchTTL: 5)),
                    reply: .text(noreply: false, withCAS: true))
            ])
    }

    @Test func retrievalLineBeyondItsLimitIsRefused() {
        let small = ProtocolLimits()
        var line = b("get")
        while line.count <= small.maxRetrievalLineLength { line += b(" abcdefgh") }
        var decoder = TextDecoder(limits: small)
        var buffer = ByteBuffer(bytes: line)
        #expect(decoder.next(&buffer) == failure(.lineTooLong))
        // Arriving whole, newline included, it is refused just the same.
        #expect(decode(line + b("\r\n")) == [failure(.lineTooLong)])
    }

    @Test func retrievalLineWithNewlineUpToItsLimit() {
        var keys: [String] = []
        var length = 3
        while length + 10 < 60_000 {
            keys.append("k\(keys.count)")
            length += 1 + keys.last!.utf8.count
        }
        let line = "get " + keys.joined(separator: " ") + "\r\n"
        #expect(
            decode(line) == [
                Request(
                    .get, .getMany(keys: b(keys.joined(separator: " ")), GetOptions()),
                    reply: .text(noreply: false, withCAS: false))
            ])
    }
}

@Suite struct DataBlockTests {
    let limits = ProtocolLimits(maxItemSize: 100)

    @Test func valueAtTheLimitIsAccepted() {
        let value = String(repeating: "v", count: 100)
        #expect(decode("set k 0 0 100\r\n\(value)\r\n", limits: limits) == [store(.set, "k", value)])
    }

    @Test func oversizeDataIsRefusedAndExactlySwallowed() {
        let payload = b(String(repeating: "get x\r\n", count: 21) + "abc")  // 150 bytes that look like commands
        #expect(payload.count == 150)
        var decoder = TextDecoder(limits: limits)
        var buffer = ByteBuffer(bytes: b("set big 0 0 150\r\n"))
        #expect(decoder.next(&buffer) == tooLarge(.set, "big"))
        #expect(decoder.isMidRequest)
        // Drip-feed the block and its CRLF: nothing decodes, and the decoder is mid-request until the last byte.
        let block = payload + b("\r\n")
        for (index, byte) in block.enumerated() {
            #expect(decoder.isMidRequest)
            buffer.writeInteger(byte)
            #expect(decoder.next(&buffer) == nil, "byte \(index)")
        }
        #expect(!decoder.isMidRequest)
        #expect(buffer.readableBytes == 0)
        buffer.writeBytes(b("get k\r\n"))
        #expect(decoder.next(&buffer) == get("k"))
    }

    @Test func oversizeSwallowsExactlyNPlus2WhenWhole() {
        let input = b("set big 0 0 101\r\n") + Array(repeating: 0x7A, count: 101) + b("\r\nversion\r\n")
        let expected: [OwnedRequest] = [tooLarge(.set, "big"), versionCommand]
        #expect(decode(input, limits: limits) == expected)
        #expect(dripFeed(input, limits: limits) == expected)
        // A block missing its "\n": framing is lost, the swallow reports a bad data chunk (which closes).
        let short = b("set big 0 0 101\r\n") + Array(repeating: 0x7A, count: 101) + b("\rversion\r\n")
        #expect(
            decode(short, limits: limits).prefix(2) == [
                tooLarge(.set, "big"), failure(.badDataChunk),
            ])
    }

    @Test func oversizeForEveryVerb() {
        let block = String(repeating: "z", count: 200) + "\r\n"
        #expect(
            decode("add k 0 0 200 noreply\r\n\(block)", limits: limits) == [
                tooLarge(.add, "k", noreply: true)
            ])
        #expect(
            decode("append k 0 0 200\r\n\(block)", limits: limits) == [
                tooLarge(.append, "k")
            ])
        #expect(
            decode("cas k 0 0 200 5\r\n\(block)", limits: limits) == [
                tooLarge(.cas, "k", cas: 5)
            ])
    }

    @Test func hugeDeclaredLengthIsSwallowedNotBuffered() {
        var decoder = TextDecoder()
        var buffer = ByteBuffer(bytes: b("set k 0 0 2000000000\r\n"))
        #expect(decoder.next(&buffer) == tooLarge(.set, "k"))
        for _ in 0..<16 {
            buffer.writeBytes(Array(repeating: 0x41, count: 64 * 1024))
            #expect(decoder.next(&buffer) == nil)
            #expect(buffer.readableBytes == 0)
        }
        #expect(decoder.isMidRequest)
    }

    @Test func badDataChunk() {
        #expect(decode("set k 0 0 3\r\nabcXYversion\r\n") == [failure(.badDataChunk), versionCommand])
        #expect(dripFeed(b("set k 0 0 3\r\nabcXYversion\r\n")) == [failure(.badDataChunk), versionCommand])
        #expect(
            decode("set k 0 0 3 noreply\r\nabc\n\nversion\r\n") == [
                failure(.badDataChunk, noreply: true), versionCommand,
            ])
        #expect(decode("set k 0 0 3\r\nabc\nversion\r\n") == [failure(.badDataChunk), failure(.error)])
    }

    @Test func negativeLength() {
        #expect(decode("set k 0 0 -1\r\nversion\r\n") == [failure(.badCommandLineFraming), versionCommand])
        #expect(decode("set k 0 0 -1 noreply\r\n") == [failure(.badCommandLineFraming, noreply: true)])
        #expect(decode("set k 0 0 abc\r\nversion\r\n") == [failure(.badCommandLineFraming), versionCommand])
        #expect(decode("set k 0 0 2147483645\r\n") == [tooLarge(.set, "k")])
        #expect(decode("set k 0 0 2147483646\r\nversion\r\n") == [failure(.badCommandLineFraming), versionCommand])
        #expect(
            decode("set k 0 0 99999999999999999999999\r\nversion\r\n") == [
                failure(.badCommandLineFraming), versionCommand,
            ])
    }

    @Test func forgedHTTPCloses() {
        let requests = decode("GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        #expect(requests.first == failure(.forgedHTTP))
        if case .error(let reply)? = requests.first?.operation {
            #expect(reply.disposition == .close)
            #expect(reply.message.isEmpty)
        }
    }
}
