import BerthJSON
import Yams

public enum YAMLDocuments {
    /// The documents of `text`: one JSON value when it starts with `{` or
    /// `[`, else every YAML document (`---` between them).
    public static func read(_ text: String) throws(DocumentError) -> [LocatedDocument] {
        if let json = try LocatedDocument.readJSON(text) { return [json] }
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
