/// A value a runtime passes to a plugin for one attachment, and where it
/// came from (named in every error about it).
public struct RuntimeValue: Equatable, Sendable {
    public let text: String
    /// "runtimeConfig.mac", "args.cni.ips", "CNI_ARGS IP".
    public let source: String
    /// The code an invalid value is refused with: a value from `CNI_ARGS` is
    /// a bad environment (4), one from the config a bad config (7).
    public let code: CNIError.Code

    public init(text: String, source: String, code: CNIError.Code) {
        self.text = text
        self.source = source
        self.code = code
    }

    /// "SOURCE: "TEXT" PROBLEM", as the error about this value says it.
    public func error(_ problem: String) -> CNIError {
        CNIError(code, "\(source): \"\(text)\" \(problem)")
    }
}

/// The three ways a runtime passes per-attachment values (a MAC, addresses,
/// labels), strongest first: `runtimeConfig.NAME` (a capability libcni
/// fills from the runtime's request), `args.cni.NAME` (the config's `args`,
/// which libcni passes through), and `KEY=` in `CNI_ARGS` (the environment).
/// Every plugin reads them in this one order.
public enum RuntimeInput {
    /// The values of `name`, strongest source first. With `list`, `name` is
    /// an array in the config and `KEY=` holds a comma-separated list, and
    /// every value of every source is returned; otherwise each source gives at
    /// most one (the last `KEY=` of `CNI_ARGS`), and an empty one counts as none.
    public static func values(_ name: String, cniArgsKey: String, in top: FieldReader,
                              cniArgs: [(key: String, value: String)], list: Bool) throws(CNIError) -> [RuntimeValue] {
        var out: [RuntimeValue] = []
        func add(_ texts: [String], _ source: String, _ code: CNIError.Code) {
            out += texts.filter { list || !$0.isEmpty }.map { RuntimeValue(text: $0, source: source, code: code) }
        }
        for (reader, source) in [(try top.object("runtimeConfig"), "runtimeConfig.\(name)"),
                                 (try top.object("args")?.object("cni"), "args.cni.\(name)")] {
            guard let reader else { continue }
            if list {
                add(try reader.strings(name) ?? [], source, .invalidNetworkConfig)
            } else if let text = try reader.string(name) {
                add([text], source, .invalidNetworkConfig)
            }
        }
        let given = cniArgs.filter { $0.key == cniArgsKey }.map(\.value)
        if list {
            add(given.flatMap { $0.split(separator: ",").map(String.init) }, "CNI_ARGS \(cniArgsKey)", .invalidEnvironment)
        } else if let last = given.last {
            add([last], "CNI_ARGS \(cniArgsKey)", .invalidEnvironment)
        }
        return out
    }
}
