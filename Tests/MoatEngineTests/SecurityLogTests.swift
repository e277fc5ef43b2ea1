import MoatEngine
import MoatStorage
import Synchronization
import Testing

final class EventSink: Sendable {
    let events = Mutex<[SecurityLog.Event]>([])
    var all: [SecurityLog.Event] { events.withLock { $0 } }
}

@Suite struct SecurityLogTests {
    @Test func jsonLinesAreEscapedAndBounded() {
        let line = SecurityLog.jsonLine(
            .canaryRead(peer: "10.0.0.1", key: "a\"b\\c\u{1}\n"), timestamp: "2026-01-01T00:00:00.000Z")
        #expect(
            line
                == #"{"ts":"2026-01-01T00:00:00.000Z","event":"canary_read","severity":"critical","peer":"10.0.0.1","key":"a\"b\\c\u0001\n"}"#
        )
        let long = SecurityLog.jsonLine(
            .connectionRefused(peer: String(repeating: "x", count: 5000), reason: .allowlist), timestamp: "t")
        #expect(long.utf8.count < 700)
        let auth = SecurityLog.jsonLine(
            .authentication(.failed(user: nil, peer: "::1", mechanism: "PLAIN")), timestamp: "t")
        #expect(
            auth
                == #"{"ts":"t","event":"auth_failure","severity":"warning","peer":"::1","user":null,"mechanism":"PLAIN"}"#
        )
        let command = SecurityLog.jsonLine(
            .dangerousCommand(peer: "p", command: "flush_all", allowed: true), timestamp: "t")
        #expect(command.hasSuffix(#""command":"flush_all","allowed":true}"#))
        #expect(JSONLine.timestamp().count == 24)
    }

    func session(_ settings: EngineSettings, _ sink: EventSink) -> Session {
        let cache = Cache(
            configuration: CacheConfiguration(memoryLimit: 8 << 20, maxItemSize: 1 << 20, evictionsEnabled: true))
        let log = SecurityLog { event in sink.events.withLock { $0.append(event) } }
        return Engine(cache: cache, settings: settings, securityLog: log).makeSession(peer: "192.0.2.1")
    }

    @Test func canaryReadsAndDangerousCommandsAreRecorded() {
        var settings = EngineSettings()
        settings.canaryKeys = [Array("trap".utf8)]
        settings.verbosityEnabled = false
        let sink = EventSink()
        var s = session(settings, sink)
        let replies = String(
            decoding: drive(
                &s,
                Array(
                    """
                    set trap 0 0 1\r\nx\r\nget tra trap traps\r\nverbosity 1\r\nwatch\r\nstats detail on\r\nstats \
                    detail dump\r\n
                    """
                    .utf8)
            ).replies, as: UTF8.self)
        #expect(
            replies
                == """
                STORED\r\nVALUE trap 0 1\r\nx\r\nEND\r\nCLIENT_ERROR verbosity not allowed\r\nCLIENT_ERROR watch \
                not allowed\r\nOK\r\nCLIENT_ERROR stats detail not allowed\r\n
                """
        )
        #expect(
            sink.all == [
                .canaryRead(peer: "192.0.2.1", key: "trap"),
                .dangerousCommand(peer: "192.0.2.1", command: "verbosity", allowed: false),
                .keyDumpAttempt(peer: "192.0.2.1", command: "watch"),
                // Accepted, changes nothing.
                .dangerousCommand(peer: "192.0.2.1", command: "stats detail on", allowed: true),
                .dangerousCommand(peer: "192.0.2.1", command: "stats detail", allowed: false),
            ])
    }

    @Test func noCanariesNoEvents() {
        let sink = EventSink()
        var s = session(EngineSettings(), sink)
        _ = drive(&s, Array("get a b c\r\nmg a v\r\n".utf8))
        #expect(sink.all.isEmpty)
    }
}

/// The one writer of Moat's JSON log lines.
@Suite struct JSONLineTests {
    @Test func fieldsInOrderWithTypedValues() {
        var line = JSONLine()
        line.append("a", .string("x"))
        line.append("n", .number(3))
        line.append("f", .number(0.5))
        line.append("b", .bool(false))
        line.append("z", .null)
        #expect(line.line == #"{"a":"x","n":3,"f":0.5,"b":false,"z":null}"#)
        #expect(JSONLine().line == "{}")
    }

    @Test func stringsAreEscapedForJSONAndForTerminals() {
        #expect(JSONLine.quote("a\"b\\c\n\u{1b}[2J") == #""a\"b\\c\n\u001b[2J""#)
        // C1 (a one-character CSI), DEL, a line separator and a bidi override: escaped, not passed on.
        #expect(JSONLine.quote("\u{9b}\u{7f}\u{2028}\u{202e}é") == #""\u009b\u007f\u2028\u202eé""#)
        #expect(JSONLine.quote(String(repeating: "x", count: 600)).utf8.count == 512 + 2 + 3)
        #expect(JSONLine.quote(String(repeating: "x", count: 600), limit: 16_384).utf8.count == 602)
    }

    @Test func timestampIsRFC3339UTCWithMilliseconds() {
        let ts = JSONLine.timestamp()
        #expect(ts.count == 24 && ts.hasSuffix("Z"))
        let bytes = Array(ts.utf8)
        for (index, separator) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, ".")] {
            #expect(bytes[index] == UInt8(ascii: Unicode.Scalar(separator)!))
        }
    }
}
