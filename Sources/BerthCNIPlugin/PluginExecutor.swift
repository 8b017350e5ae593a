import BerthCNI
import BerthJSON
import BerthSystem

/// Running another CNI plugin as the spec says: found on CNI_PATH by its
/// type, given its config on stdin and CNI_COMMAND in its environment, its
/// stdout read as a result (or nothing), or, when it fails, as a CNI
/// error. The one executor of both callers: `berth` delegating to an IPAM
/// plugin, and the CNI client running a network's plugin chain.
public struct PluginExecutor: Sendable {
    public let type: String
    /// The executable, found once, before anything is run.
    public let executable: String

    /// Finds `type` on `searchPath`.
    public init(type: String, searchPath: [String]) throws(PluginRunError) {
        guard let executable = findExecutable(type, in: searchPath) else {
            throw .notFound(type: type, searched: searchPath)
        }
        self.type = type
        self.executable = executable
    }

    /// Runs `command` with `stdin` and `environment` (CNI_COMMAND set here);
    /// returns its parsed stdout, nil when it printed nothing. `inherit` and
    /// `outliveCaller` as for `runExecutable`.
    public func run(_ command: CNICommand, stdin: [UInt8], environment: [String: String],
                    inherit: OwnedDescriptor? = nil, outliveCaller: Bool = false) throws(PluginRunError) -> JSON? {
        var env = environment
        env["CNI_COMMAND"] = command.rawValue
        let output: ChildOutput
        do {
            output = try runExecutable(executable, environment: env, input: stdin, inherit: inherit, outliveCaller: outliveCaller)
        } catch {
            throw .cannotRun(executable: executable, reason: "\(error)")
        }
        let trimmed = String(decoding: output.stdout, as: UTF8.self).trimmingWhiteSpace
        let json: JSON? = trimmed.isEmpty ? nil : try? JSON.parse(trimmed)
        if output.status != 0 {
            if let json, let error = CNIError(json: json) { throw .failed(type: type, command: command, error: error) }
            throw .exitStatus(type: type, command: command, status: output.status, output: trimmed)
        }
        if !trimmed.isEmpty && json == nil { throw .notJSON(type: type, command: command, output: trimmed) }
        return json
    }
}

/// Why running a plugin failed.
public enum PluginRunError: Error, Equatable, CustomStringConvertible {
    /// No executable `type` on the search path.
    case notFound(type: String, searched: [String])
    /// The executable could not be started.
    case cannotRun(executable: String, reason: String)
    /// It failed and said why, as a CNI error.
    case failed(type: String, command: CNICommand, error: CNIError)
    /// It failed without a CNI error.
    case exitStatus(type: String, command: CNICommand, status: Int32, output: String)
    /// It succeeded but printed something that is not JSON.
    case notJSON(type: String, command: CNICommand, output: String)

    public var description: String {
        switch self {
        case .notFound(let type, let searched): "plugin \(type) was not found on CNI_PATH \(searched.joined(separator: ":"))"
        case .cannotRun(let executable, let reason): "cannot run \(executable): \(reason)"
        case .failed(let type, let command, let error): "\(type) \(command.rawValue) failed with CNI error \(error.code): \(error.msg)"
        case .exitStatus(let type, let command, let status, _): "\(type) \(command.rawValue) failed with exit status \(status)"
        case .notJSON(let type, let command, _): "\(type) \(command.rawValue) printed something that is not JSON"
        }
    }

    /// As a plugin passes it on to its runtime: the delegate's own CNI error
    /// (its code kept, its message prefixed with who said it), else an error
    /// with the code the spec gives the failure and what the plugin printed
    /// as details.
    public var cniError: CNIError {
        switch self {
        case .notFound(let type, let searched):
            CNIError(.invalidNetworkConfig, "plugin \"\(type)\" was not found on CNI_PATH", details: "searched: " + searched.joined(separator: ":"))
        case .cannotRun: CNIError(.ioFailure, description)
        case .failed(let type, let command, let error): error.context("\(type) \(command.rawValue)")
        case .exitStatus(_, _, _, let output): CNIError(.ioFailure, description, details: output)
        case .notJSON(_, _, let output): CNIError(.decodeFailure, description, details: output)
        }
    }
}

extension String {
    var trimmingWhiteSpace: String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[start...end])
    }
}
