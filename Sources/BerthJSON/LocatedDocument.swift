/// Documents of a file (YAML or JSON) as JSON values: what the YAML reader
/// gives and what the readers of labs and policies check.

/// A document of a YAML or JSON file as JSON values, with the line of each
/// key path ("hosts[0].name") for messages that point at the line.
public struct LocatedDocument: Sendable {
    public let value: JSON
    /// Key path -> line (from 1); "file" for the document's own start. Empty for JSON.
    public let lines: [String: Int]

    public init(value: JSON, lines: [String: Int] = [:]) {
        self.value = value
        self.lines = lines
    }

    /// `text` as one JSON document when it starts with `{` or `[` (nil
    /// otherwise), with a bad one located by line and column.
    public static func readJSON(_ text: String) throws(DocumentError) -> LocatedDocument? {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard trimmed.hasPrefix("{") || trimmed.hasPrefix("[") else { return nil }
        do {
            return LocatedDocument(value: try JSON.parse(text))
        } catch {
            let (line, column) = lineAndColumn(Array(text.utf8), offset: error.offset)
            throw DocumentError(location: "file (line \(line), column \(column))", message: "not valid JSON: \(error.reason)")
        }
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

    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
}

