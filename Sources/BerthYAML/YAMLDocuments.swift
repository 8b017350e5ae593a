import BerthJSON
import Yams

/// A document of a YAML or JSON file as JSON values, with the line of each
/// key path ("hosts[0].name") for messages that point at the line.
public struct LocatedDocument: Sendable {
    public let value: JSON
    /// Key path -> line (from 1); "file" for the document's own start. Empty for JSON.
    public let lines: [String: Int]

    /// `location` with its line appended when known: "hosts[0].name (line 7)".
    public func located(_ location: String) -> String {
        lines[location].map { "\(location) (line \($0))" } ?? location
    }
}

/// Why a file could not be read as documents: where (a line and column for
/// JSON) and what is wrong.
public struct DocumentError: Error, Equatable, Sendable, CustomStringConvertible {
    public let location: String
    public let message: String
    public var description: String { "\(location): \(message)" }
}

public enum YAMLDocuments {
    /// The documents of `text`: one JSON value when it starts with `{` or
    /// `[`, else every YAML document (`---` between them).
    public static func read(_ text: String) throws(DocumentError) -> [LocatedDocument] {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") {
            do {
                return [LocatedDocument(value: try JSON.parse(text), lines: [:])]
            } catch {
                let (line, column) = lineAndColumn(Array(text.utf8), offset: error.offset)
                throw DocumentError(location: "file (line \(line), column \(column))", message: "not valid JSON: \(error.reason)")
            }
        }
        var out: [LocatedDocument] = []
        do {
            for node in try Yams.compose_all(yaml: text) {
                var lines: [String: Int] = [:]
                let value = convert(node, path: "", lines: &lines)
                out.append(LocatedDocument(value: value, lines: lines))
            }
        } catch {
            throw DocumentError(location: "file", message: "not valid YAML: \(error)")
        }
        return out
    }

    /// The line and column (both from 1, columns in characters) of byte `offset` of `bytes`.
    public static func lineAndColumn(_ bytes: [UInt8], offset: Int) -> (line: Int, column: Int) {
        var line = 1, start = 0
        let end = min(offset, bytes.count)
        for i in 0..<end where bytes[i] == UInt8(ascii: "\n") {
            line += 1
            start = i + 1
        }
        return (line, String(decoding: bytes[start..<end], as: UTF8.self).count + 1)
    }

    /// YAML to JSON values, remembering each key path's line. Plain
    /// scalars that read as booleans, integers or null become those.
    static func convert(_ node: Node, path: String, lines: inout [String: Int]) -> JSON {
        if let line = node.mark?.line { lines[path.isEmpty ? "file" : path] = line }
        switch node {
        case .mapping(let mapping):
            var o = JSONObject()
            for (k, v) in mapping {
                let key = k.string ?? ""
                let at = path.isEmpty ? key : "\(path).\(key)"
                o[key] = convert(v, path: at, lines: &lines)
                // A key's own line (its value may start on the next one).
                if let line = k.mark?.line { lines[at] = line }
            }
            return .object(o)
        case .sequence(let sequence):
            return .array(sequence.enumerated().map { i, v in convert(v, path: "\(path)[\(i)]", lines: &lines) })
        case .scalar(let scalar):
            if scalar.style == .plain {
                if let b = Bool.construct(from: scalar) { return .bool(b) }
                if let i = Int.construct(from: scalar) { return .int(i) }
                if scalar.string == "null" || scalar.string == "~" { return .null }
            }
            return .string(scalar.string)
        }
    }
}
