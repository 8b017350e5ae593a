import BerthCNI
import BerthSystem
import BerthJSON

/// Another CNI plugin run on Berth's behalf (an IPAM plugin), executed as the
/// spec says: found on CNI_PATH, given the same stdin and environment with
/// CNI_COMMAND set, its stdout read as a result or an error.
struct DelegatedPlugin {
    let type: String
    /// The executable, found on CNI_PATH once, before anything is touched.
    let executable: String
    let environment: [String: String]
    let stdin: [UInt8]

    /// Finds `type` on `searchPath`; a missing plugin is an error 7 naming the path searched.
    init(type: String, searchPath: [String], environment: [String: String], stdin: [UInt8]) throws {
        guard let executable = findExecutable(type, in: searchPath) else {
            throw CNIError(.invalidNetworkConfig, "plugin \"\(type)\" was not found on CNI_PATH",
                           details: "searched: " + searchPath.joined(separator: ":"))
        }
        self.type = type
        self.executable = executable
        self.environment = environment
        self.stdin = stdin
    }

    /// Runs `command`; returns the parsed stdout (nil when it printed nothing).
    /// `inherit` and `outliveCaller` as for `runExecutable`.
    func run(_ command: CNICommand, inherit: OwnedDescriptor? = nil, outliveCaller: Bool = false) throws -> JSON? {
        var env = environment
        env["CNI_COMMAND"] = command.rawValue
        let output: ChildOutput
        do {
            output = try runExecutable(executable, environment: env, input: stdin, inherit: inherit,
                                       outliveCaller: outliveCaller)
        } catch {
            throw CNIError(.ioFailure, "could not run \(executable): \(error)")
        }
        let text = String(decoding: output.stdout, as: UTF8.self)
        let trimmed = text.trimmingWhiteSpace
        let json: JSON? = trimmed.isEmpty ? nil : try? JSON.parse(trimmed)
        if output.status != 0 {
            if let json, let error = CNIError(json: json) {
                throw error.context("\(type) \(command.rawValue)")
            }
            throw CNIError(.ioFailure, "\(type) \(command.rawValue) failed with exit status \(output.status)",
                           details: trimmed)
        }
        if !trimmed.isEmpty && json == nil {
            throw CNIError(.decodeFailure, "\(type) \(command.rawValue) printed something that is not JSON",
                           details: trimmed)
        }
        return json
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
