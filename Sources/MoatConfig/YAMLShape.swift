// libyaml as Yams builds it (Yams keeps its event API internal): the same parser, so this pass sees
// exactly the events Yams.compose will turn into nodes.
import CYaml

/// A YAML text's nesting and size, measured from libyaml's events without building anything, so a
/// document is refused before Yams composes it. Composing recurses once per level (and hashes every
/// mapping key, recursively, to find duplicates), and the tree is freed recursively too: a file that
/// nests deep, directly or through an alias chain (`a2: &a2 [*a1]`, each line one level deeper than
/// the last and within libyaml's own limit of 1,000 per level), overflowed the stack of `moat check`,
/// `moat serve --config` and a SIGHUP reload; aliases of aliases can also describe an exponentially
/// large tree in a few lines, which hashing one key would walk whole.
enum YAMLShape {
    struct Problem: Error, Equatable {
        var line: Int
        var message: String
    }

    /// Nil when every node is at most `maximumDepth` collections deep and the tree, aliases expanded,
    /// holds at most `maximumNodes` nodes. A syntax error stops the pass quietly: Yams reports it.
    static func check(_ text: String, maximumDepth: Int, maximumNodes: Int) -> Problem? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        var text = text
        return text.withUTF8 { buffer -> Problem? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            // One frame per open collection: its anchor, the height below it so far, its node count.
            var open: [(anchor: String?, height: Int, nodes: Int)] = []
            var anchors: [String: (height: Int, nodes: Int)] = [:]
            var total = 0
            func close(_ anchor: String?, height: Int, nodes: Int) {
                if let anchor { anchors[anchor] = (height, nodes) }
                guard !open.isEmpty else { return }
                open[open.count - 1].height = max(open[open.count - 1].height, height)
                open[open.count - 1].nodes += nodes
            }
            func name(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
                pointer.map { String(cString: UnsafePointer($0)) }
            }
            let tooDeep = "nested deeper than \(maximumDepth) levels of lists and mappings"
            let tooLarge =
                "the file is too large (more than \(maximumNodes) values, aliases counted as what they repeat)"
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    guard open.count < maximumDepth else { return Problem(line: line, message: tooDeep) }
                    let anchor =
                        event.type == YAML_SEQUENCE_START_EVENT
                        ? name(event.data.sequence_start.anchor) : name(event.data.mapping_start.anchor)
                    open.append((anchor, 0, 1))
                    total += 1
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let frame = open.popLast() else { continue }
                    close(frame.anchor, height: frame.height + 1, nodes: frame.nodes)
                case YAML_SCALAR_EVENT:
                    total += 1
                    close(name(event.data.scalar.anchor), height: 0, nodes: 1)
                case YAML_ALIAS_EVENT:
                    // An alias not yet defined is Yams's error to report.
                    guard let alias = name(event.data.alias.anchor), let target = anchors[alias] else { continue }
                    guard open.count + target.height <= maximumDepth else {
                        return Problem(line: line, message: tooDeep + " (through the alias *\(alias))")
                    }
                    total += target.nodes
                    close(nil, height: target.height, nodes: target.nodes)
                default:
                    continue
                }
                if total > maximumNodes { return Problem(line: line, message: tooLarge) }
            }
        }
    }
}
