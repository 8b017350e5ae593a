import BerthJSON
import BerthNet
/// Reads typed fields out of a JSON object, naming the field in every error.
///
/// A `null` value counts as absent, as Go's decoder treats it. A value of the
/// wrong type is an error with `code` (7 for network configs) that names the
/// field's full path, for example `ipam.ranges[0][1].subnet`.
public struct FieldReader: Sendable {
    public let object: JSONObject
    /// The path of this object in the document ("" for the top).
    public let path: String
    public let code: CNIError.Code

    public init(_ object: JSONObject, path: String = "", code: CNIError.Code = .invalidNetworkConfig) {
        self.object = object
        self.path = path
        self.code = code
    }

    /// The full name of field `key` for messages.
    public func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ message: String) -> CNIError {
        CNIError(code, "field \"\(name(key))\": \(message)")
    }

    /// The field an error of `error(_:_:)` names ("ipam.ranges[0][1].subnet"),
    /// or nil for an error that names none: for callers that locate problems
    /// themselves (lab files add the line).
    public static func field(of error: CNIError) -> String? {
        let start = "field \""
        guard error.msg.hasPrefix(start) else { return nil }
        let rest = Array(error.msg.utf8.dropFirst(start.utf8.count))
        // Byte-wise (the plugin's modules do not link _StringProcessing).
        for i in rest.indices where i + 2 < rest.count && rest[i] == UInt8(ascii: "\"")
            && rest[i + 1] == UInt8(ascii: ":") && rest[i + 2] == UInt8(ascii: " ") {
            return String(decoding: rest[..<i], as: UTF8.self)
        }
        return nil
    }

    private func value(_ key: String) -> JSON? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    private func mismatch(_ key: String, _ expected: String, _ got: JSON) -> CNIError {
        error(key, "expected \(expected), got \(got.typeName)")
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    public func string(_ key: String) throws(CNIError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw mismatch(key, "a string", v) }
        return s
    }

    public func requiredString(_ key: String) throws(CNIError) -> String {
        guard let s = try string(key), !s.isEmpty else { throw error(key, "is required") }
        return s
    }

    public func bool(_ key: String) throws(CNIError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw mismatch(key, "true or false", v) }
        return b
    }

    public func int(_ key: String) throws(CNIError) -> Int? {
        guard let v = value(key) else { return nil }
        guard case .number = v else { throw mismatch(key, "an integer", v) }
        guard let n = v.intValue else { throw error(key, "expected an integer, got a fraction or an out-of-range number") }
        return n
    }

    public func object(_ key: String) throws(CNIError) -> FieldReader? {
        guard let v = value(key) else { return nil }
        guard let o = v.objectValue else { throw mismatch(key, "an object", v) }
        return FieldReader(o, path: name(key), code: code)
    }

    public func array(_ key: String) throws(CNIError) -> [JSON]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue else { throw mismatch(key, "an array", v) }
        return a
    }

    /// The elements of array `key` that are objects, each with its own path.
    public func objects(_ key: String) throws(CNIError) -> [FieldReader]? {
        guard let items = try array(key) else { return nil }
        var readers: [FieldReader] = []
        for (i, item) in items.enumerated() {
            guard let o = item.objectValue else {
                throw error("\(key)[\(i)]", "expected an object, got \(item.typeName)")
            }
            readers.append(FieldReader(o, path: "\(name(key))[\(i)]", code: code))
        }
        return readers
    }

    public func strings(_ key: String) throws(CNIError) -> [String]? {
        guard let items = try array(key) else { return nil }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else {
                throw error("\(key)[\(i)]", "expected a string, got \(item.typeName)")
            }
            out.append(s)
        }
        return out
    }

    public func address(_ key: String) throws(CNIError) -> IPAddress? {
        guard let text = try string(key), !text.isEmpty else { return nil }
        guard let ip = IPAddress(text) else { throw error(key, "\"\(text)\" is not an IP address") }
        return ip
    }

    public func prefix(_ key: String) throws(CNIError) -> IPPrefix? {
        guard let text = try string(key), !text.isEmpty else { return nil }
        guard let p = IPPrefix(text) else { throw error(key, "\"\(text)\" is not an address with a prefix length (like 10.1.0.0/24)") }
        return p
    }
}
