import Logging
import MoatEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--log-format`: people read a terminal, machines (journald, a log shipper) read everything else.
enum LogFormat: String, CaseIterable {
    case auto, human, json

    /// `auto`: human lines when standard error is a terminal, JSON lines otherwise.
    var resolved: LogFormat {
        guard self == .auto else { return self }
        return isatty(2) == 1 ? .human : .json
    }

    static func bootstrap(_ format: LogFormat, level: Logger.Level) {
        let chosen = format.resolved
        LoggingSystem.bootstrap { label in
            switch chosen {
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            default:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// One JSON object per line on standard error: `ts`, `level`, `label`, `message`, then the metadata.
/// The security log's events share the stream and the `ts` field, so one parser reads both.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .notice
    var metadata: Logger.Metadata = [:]

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        // A log message may be long (a configuration error), so strings are cut generously.
        var line = JSONLine(stringLimit: 16_384)
        line.append("ts", .string(JSONLine.timestamp()))
        line.append("level", .string(event.level.rawValue))
        line.append("label", .string(label))
        line.append("source", .string(event.source))
        line.append("message", .string(event.message.description))
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key })
        where !["ts", "level", "label", "source", "message"].contains(key) {
            line.append(key, .string(value.description))
        }
        var bytes = Array((line.line + "\n").utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
