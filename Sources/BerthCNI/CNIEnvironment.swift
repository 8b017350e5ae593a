/// The operations a runtime can ask of a plugin.
public enum CNICommand: String, Sendable, CaseIterable {
    case add = "ADD"
    case del = "DEL"
    case check = "CHECK"
    case status = "STATUS"
    case gc = "GC"
    case version = "VERSION"
}

/// The `CNI_*` variables of one invocation, validated.
public struct CNIEnvironment: Equatable, Sendable {
    public var command: CNICommand
    public var containerID: String
    /// The netns path; empty only for DEL, GC, STATUS and VERSION.
    public var netns: String
    public var ifname: String
    /// `CNI_ARGS` pairs in order.
    public var args: [(key: String, value: String)]
    /// `CNI_PATH` split on ':' with empty parts dropped.
    public var path: [String]

    public static func == (a: CNIEnvironment, b: CNIEnvironment) -> Bool {
        a.command == b.command && a.containerID == b.containerID && a.netns == b.netns
            && a.ifname == b.ifname && a.path == b.path
            && a.args.map(\.key) == b.args.map(\.key) && a.args.map(\.value) == b.args.map(\.value)
    }

    /// The value of `CNI_ARGS` key `key`, if given.
    public func arg(_ key: String) -> String? {
        args.last { $0.key == key }?.value
    }

    /// Reads and checks the variables `command` needs. Every problem is an
    /// error 4 naming the variable.
    public init(_ env: [String: String]) throws(CNIError) {
        guard let commandText = env["CNI_COMMAND"], !commandText.isEmpty else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND is not set")
        }
        guard let command = CNICommand(rawValue: commandText) else {
            throw CNIError(.invalidEnvironment, "CNI_COMMAND \"\(commandText)\" is not one of ADD, DEL, CHECK, STATUS, GC, VERSION")
        }
        self.command = command
        self.containerID = env["CNI_CONTAINERID"] ?? ""
        self.netns = env["CNI_NETNS"] ?? ""
        self.ifname = env["CNI_IFNAME"] ?? ""
        self.args = []
        self.path = CNIEnvironment.splitPath(env["CNI_PATH"])

        let perContainer = command == .add || command == .del || command == .check
        if perContainer {
            if containerID.isEmpty { throw CNIError(.invalidEnvironment, "CNI_CONTAINERID is not set") }
            if let problem = CNIEnvironment.containerIDProblem(containerID) {
                throw CNIError(.invalidEnvironment, "CNI_CONTAINERID \"\(containerID)\" is invalid: \(problem)")
            }
            if ifname.isEmpty { throw CNIError(.invalidEnvironment, "CNI_IFNAME is not set") }
            if let problem = CNIEnvironment.interfaceNameProblem(ifname) {
                throw CNIError(.invalidEnvironment, "CNI_IFNAME \"\(ifname)\" is invalid: \(problem)")
            }
            if command != .del && netns.isEmpty {
                throw CNIError(.invalidEnvironment, "CNI_NETNS is not set")
            }
            if !netns.isEmpty && !netns.hasPrefix("/") {
                throw CNIError(.invalidEnvironment, "CNI_NETNS \"\(netns)\" is not an absolute path")
            }
        }
        if command != .version && command != .status && path.isEmpty {
            throw CNIError(.invalidEnvironment, "CNI_PATH is not set")
        }
        if let argsText = env["CNI_ARGS"], !argsText.isEmpty {
            args = try CNIEnvironment.parseArgs(argsText)
        }
    }

    /// A `CNI_PATH` value's directories, in order, without empty parts.
    public static func splitPath(_ value: String?) -> [String] {
        (value ?? "").split(separator: ":").map(String.init)
    }

    /// Splits `CNI_ARGS` ("K=V;K=V"). A pair without '=' or with an empty key is an error 4.
    public static func parseArgs(_ text: String) throws(CNIError) -> [(key: String, value: String)] {
        var pairs: [(key: String, value: String)] = []
        for part in text.split(separator: ";", omittingEmptySubsequences: true) {
            guard let eq = part.firstIndex(of: "="), eq != part.startIndex else {
                throw CNIError(.invalidEnvironment, "CNI_ARGS: \"\(part)\" is not a KEY=VALUE pair")
            }
            pairs.append((String(part[..<eq]), String(part[part.index(after: eq)...])))
        }
        return pairs
    }

    /// Why `id` is not a valid container ID, or nil when it is.
    /// The spec allows an alphanumeric first character, then `[A-Za-z0-9_.-]`.
    public static func containerIDProblem(_ id: String) -> String? {
        let bytes = Array(id.utf8)
        guard let first = bytes.first else { return "it is empty" }
        if !isAlphanumeric(first) { return "it must start with a letter or digit" }
        for b in bytes where !(isAlphanumeric(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")) {
            return "it may contain only letters, digits, '_', '.' and '-'"
        }
        return nil
    }

    /// Why `name` is not a valid Linux interface name, or nil when it is:
    /// 1 to 15 bytes, not "." or "..", without '/', ':', '%' or white space.
    public static func interfaceNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "it is empty" }
        if bytes.count > 15 { return "it is longer than 15 characters" }
        if name == "." || name == ".." { return "it may not be \".\" or \"..\"" }
        for b in bytes {
            if b == UInt8(ascii: "/") { return "it may not contain '/'" }
            if b == UInt8(ascii: ":") { return "it may not contain ':'" }
            if b == UInt8(ascii: "%") { return "it may not contain '%' (the kernel reads a name with '%' as a template such as eth%d)" }
            if b <= 0x20 || b == 0x7F { return "it may not contain white space or control characters" }
        }
        return nil
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }
}
