extension Report {
    /// True for what a terminal may act on rather than show: C0 controls (ESC starts a sequence that can
    /// retitle the window, clear the screen, or, on some terminals, answer with typed input), DEL, C1
    /// controls (U+009B is a one-character CSI), line and paragraph separators, and the bidirectional
    /// overrides and isolates that can make a line read differently from what it says.
    static func isControl(_ value: UInt32) -> Bool {
        value < 0x20 || (0x7f...0x9f).contains(value) || value == 0x2028 || value == 0x2029
            || (0x202a...0x202e).contains(value) || (0x2066...0x2069).contains(value)
    }

    /// Text for the table, with every control escaped as `\x1b` (or `\u{202e}` above U+00FF). Everything
    /// from a server (its version, mechanisms) and from the command line or a file goes through here.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { isControl($0.value) }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if !isControl(value) {
                out.unicodeScalars.append(scalar)
            } else if value <= 0xff {
                out += "\\x" + (value < 0x10 ? "0" : "") + String(value, radix: 16)
            } else {
                out += "\\u{" + String(value, radix: 16) + "}"
            }
        }
        return out
    }

    /// Encoded JSON with the controls JSONEncoder leaves raw (DEL, C1, the separators and bidi
    /// controls; it already escapes C0) written as `\u00XX` escapes: the same string to a JSON reader,
    /// nothing a terminal acts on when the report is printed. They can only occur inside strings; a C0
    /// control outside one is the encoder's own line break, kept.
    static func jsonPrintable(_ json: String) -> String {
        func raw(_ value: UInt32) -> Bool { value >= 0x20 && isControl(value) }
        guard json.unicodeScalars.contains(where: { raw($0.value) }) else { return json }
        var out = ""
        for scalar in json.unicodeScalars {
            if raw(scalar.value) {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
