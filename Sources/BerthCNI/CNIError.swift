import BerthJSON
/// A CNI error, as the spec prints it on stdout: `{"cniVersion", "code", "msg", "details"}`.
public struct CNIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The well-known codes of the CNI specification.
    public enum Code: Int, Sendable {
        case incompatibleVersion = 1
        case unsupportedField = 2
        case unknownContainer = 3
        case invalidEnvironment = 4
        case ioFailure = 5
        case decodeFailure = 6
        case invalidNetworkConfig = 7
        case tryAgainLater = 11
        case notAvailable = 50
        case limitedConnectivity = 51
        /// Berth's own (100 and up): CHECK found the container's network
        /// differs from `prevResult`.
        case checkFailed = 100
    }

    public var code: Int
    public var msg: String
    public var details: String

    public init(_ code: Code, _ msg: String, details: String = "") {
        self.code = code.rawValue
        self.msg = msg
        self.details = details
    }

    /// An error with any code, as received from another plugin.
    public init(code: Int, msg: String, details: String = "") {
        self.code = code
        self.msg = msg
        self.details = details
    }

    public var description: String {
        details.isEmpty ? msg : "\(msg): \(details)"
    }

    /// The error's JSON, in the version the caller asked for.
    public func json(cniVersion: String) -> JSON {
        var object: JSONObject = [
            "cniVersion": .string(cniVersion),
            "code": .int(code),
            "msg": .string(msg),
        ]
        if !details.isEmpty { object["details"] = .string(details) }
        return .object(object)
    }

    /// Reads an error printed by another plugin; nil when `json` is not one.
    public init?(json: JSON) {
        guard let code = json["code"]?.intValue else { return nil }
        self.code = code
        self.msg = json["msg"]?.stringValue ?? ""
        self.details = json["details"]?.stringValue ?? ""
    }

    /// For STATUS, "try again later" (11: an ADD now would have to wait, such
    /// as for a node's address block) is the spec's "not available" (50).
    public func forStatus(_ command: CNICommand) -> CNIError {
        guard command == .status, code == Code.tryAgainLater.rawValue else { return self }
        return CNIError(code: Code.notAvailable.rawValue, msg: msg, details: details)
    }

    /// Prefixes the message with what was being done, keeping the code.
    public func context(_ prefix: String) -> CNIError {
        var copy = self
        copy.msg = "\(prefix): \(msg)"
        return copy
    }
}
