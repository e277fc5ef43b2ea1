import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

@Suite struct EncoderTests {
    @Test func valueWithoutCAS() {
        #expect(
            encoded { TextEncoder.writeValue(key: b("k"), flags: 5, data: b("abc"), cas: nil, into: &$0) }
                == "VALUE k 5 3\r\nabc\r\n")
        #expect(
            encoded { TextEncoder.writeValue(key: b("empty"), flags: 0, data: [], cas: nil, into: &$0) }
                == "VALUE empty 0 0\r\n\r\n")
    }

    @Test func valueWithCAS() {
        #expect(
            encoded { TextEncoder.writeValue(key: b("k"), flags: 0, data: b("hello"), cas: 42, into: &$0) }
                == "VALUE k 0 5 42\r\nhello\r\n")
        #expect(
            encoded { TextEncoder.writeValue(key: b("k"), flags: UInt32.max, data: b("x"), cas: UInt64.max, into: &$0) }
                == "VALUE k 4294967295 1 18446744073709551615\r\nx\r\n")
        #expect(
            encoded { TextEncoder.writeValue(key: b("k"), flags: 0, data: b("x"), cas: 0, into: &$0) }
                == "VALUE k 0 1 0\r\nx\r\n")
    }

    @Test func binaryDataIsCopiedVerbatim() {
        let data: [UInt8] = [0, 13, 10, 255, 0x20]
        var buffer = ByteBuffer()
        TextEncoder.writeValue(key: b("k"), flags: 1, data: data, cas: nil, into: &buffer)
        #expect(Array(buffer.readableBytesView) == b("VALUE k 1 5\r\n") + data + b("\r\n"))
    }

    @Test(arguments: [
        (UInt64(0), "0"), (7, "7"), (9, "9"), (10, "10"), (99, "99"), (100, "100"), (1_234_567_890, "1234567890"),
        (UInt64.max, "18446744073709551615"), (UInt64(1) << 63, "9223372036854775808"),
    ])
    func number(_ value: UInt64, _ expected: String) {
        #expect(encoded { TextEncoder.writeNumber(value, into: &$0) } == expected + "\r\n")
    }

    @Test func fixedReplies() {
        let table: [(TextReply, String)] = [
            (.stored, "STORED"), (.notStored, "NOT_STORED"), (.exists, "EXISTS"), (.notFound, "NOT_FOUND"),
            (.deleted, "DELETED"), (.touched, "TOUCHED"), (.ok, "OK"), (.end, "END"), (.reset, "RESET"),
            (.outOfMemory, "SERVER_ERROR out of memory storing object"),
        ]
        for (reply, line) in table {
            #expect(encoded { TextEncoder.write(reply, into: &$0) } == line + "\r\n")
        }
    }

    @Test func errorsLinesAndStats() {
        #expect(encoded { TextEncoder.writeError(.error, into: &$0) } == "ERROR\r\n")
        #expect(
            encoded { TextEncoder.writeError(.badCommandLine, into: &$0) } == "CLIENT_ERROR bad command line format\r\n"
        )
        #expect(encoded { TextEncoder.writeError(.badDataChunk, into: &$0) } == "CLIENT_ERROR bad data chunk\r\n")
        #expect(
            encoded { TextEncoder.writeError(.tooLarge, into: &$0) } == "SERVER_ERROR object too large for cache\r\n")
        #expect(encoded { TextEncoder.writeError(.lineTooLong, into: &$0) } == "CLIENT_ERROR line too long\r\n")
        #expect(
            encoded { TextEncoder.writeError(.badDeleteUsage, into: &$0) }
                == "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
        #expect(encoded { TextEncoder.writeError(.forgedHTTP, into: &$0) } == "")
        #expect(encoded { TextEncoder.writeLine("VERSION 1.6.0", into: &$0) } == "VERSION 1.6.0\r\n")
        #expect(encoded { TextEncoder.writeStat("curr_items", "12", into: &$0) } == "STAT curr_items 12\r\n")
    }

    @Test func repliesAppendToExistingBytes() {
        var buffer = ByteBuffer()
        TextEncoder.writeValue(key: b("a"), flags: 0, data: b("1"), cas: nil, into: &buffer)
        TextEncoder.writeValue(key: b("b"), flags: 2, data: b("22"), cas: 9, into: &buffer)
        TextEncoder.write(.end, into: &buffer)
        #expect(text(buffer) == "VALUE a 0 1\r\n1\r\nVALUE b 2 2 9\r\n22\r\nEND\r\n")
    }
}
