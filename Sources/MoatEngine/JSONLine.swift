#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One JSON object on one line, the shape of every log line Moat writes (the security log, its sink's
/// notices and the JSON log handler): fields in the order given, strings escaped and cut so that a
/// line stays bounded, whole numbers written as integers. One writer and one timestamp for all of
/// them, so one parser reads the whole stream.
public struct JSONLine: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
    }

    private var text = "{"
    private let stringLimit: Int

    /// `stringLimit`: bytes of a string value kept before it is cut with "...".
    public init(stringLimit: Int = 512) {
        self.stringLimit = stringLimit
    }

    public mutating func append(_ key: String, _ value: Value) {
        if text.utf8.count > 1 { text += "," }
        text += Self.quote(key, limit: stringLimit) + ":"
        switch value {
        case .string(let string): text += Self.quote(string, limit: stringLimit)
        case .number(let number):
            text += number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case .bool(let flag): text += flag ? "true" : "false"
        case .null: text += "null"
        }
    }

    /// The object, without a newline.
    public var line: String { text + "}" }

    /// A JSON string literal (RFC 8259), cut at `limit` bytes of `text`. Besides quotes, backslashes and
    /// C0 controls, DEL, C1 controls, the line separators and the bidirectional overrides are written
    /// as `\u` escapes: the same string to a JSON reader, nothing a terminal acts on when a log is read
    /// there (a client-chosen user name reaches these lines).
    public static func quote(_ text: String, limit: Int = 512) -> String {
        var out = "\""
        var bytes = 0
        for scalar in text.unicodeScalars {
            bytes += String(scalar).utf8.count
            if bytes > limit {
                out += "..."
                break
            }
            let value = scalar.value
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _
            where value < 0x20 || (0x7f...0x9f).contains(value) || value == 0x2028 || value == 0x2029
                || (0x202a...0x202e).contains(value) || (0x2066...0x2069).contains(value):
                let hex = String(value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Now as RFC 3339 UTC with milliseconds (`2026-01-01T00:00:00.000Z`), from the wall clock.
    public static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = time_t(spec.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let date = "\(parts.tm_year + 1900)-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
        let time = "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
        return date + "T" + time + "." + pad(Int(spec.tv_nsec) / 1_000_000, 3) + "Z"
    }
}
