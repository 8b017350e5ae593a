#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthSystem

/// What one invocation of a plugin prints and how it exits.
public struct PluginReply: Equatable, Sendable {
    public var status: Int32
    /// The JSON text for stdout (a result, an error, or nothing).
    public var stdout: String
}

/// The `berth` executable's entry point.
public enum BerthPlugin {
    /// Reads the real environment and stdin, prints the reply and exits.
    public static func main() -> Never {
        let environment = processEnvironment()
        let reply = run(environment: environment) { () throws(SystemError) -> [UInt8] in
            // A person typing `CNI_COMMAND=VERSION berth` has nothing to pipe in.
            if environment["CNI_COMMAND"] == "VERSION" && isatty(0) == 1 { return [] }
            return try readAllBytes(from: 0)
        }
        writeStandardOutput(reply.stdout)
        exit(reply.status)
    }

    /// Runs one invocation: reads stdin (so that every error is printed in the
    /// config's version), checks the environment (error 4), decodes the config
    /// (6, then 1 for the version, then 7), then does the command.
    public static func run(environment: [String: String],
                           readInput: () throws(SystemError) -> [UInt8]) -> PluginReply {
        var input: [UInt8] = []
        do throws(CNIError) {
            do {
                input = try readInput()
            } catch {
                throw CNIError(.ioFailure, "reading the network config from stdin: \(error)")
            }
            let env = try CNIEnvironment(environment)
            if env.command == .version {
                let version = input.isEmpty ? CNIVersion.latest : NetworkConfig.replyVersion(for: input)
                return PluginReply(status: 0, stdout: CNIVersion.versionInfo(answering: version).serialized(pretty: true) + "\n")
            }
            let config = try BridgeConfig(input)
            let operation = BridgeOperation(config: config, env: env, processEnvironment: environment, stdin: input)
            let version = config.network.cniVersion
            switch env.command {
            case .add:
                let result = try operation.add()
                return PluginReply(status: 0, stdout: result.json(version: version).serialized(pretty: true) + "\n")
            case .del:
                try operation.del()
                return PluginReply(status: 0, stdout: "")
            case .check:
                guard version.supportsCheck else {
                    throw CNIError(.incompatibleVersion, "CHECK is not part of cniVersion \(version) (it came with 0.4.0)")
                }
                try operation.check()
                return PluginReply(status: 0, stdout: "")
            case .status, .gc:
                throw CNIError(.invalidEnvironment, "CNI_COMMAND \(env.command.rawValue) is not supported by this berth")
            case .version:
                fatalError("handled above")
            }
        } catch {
            let version = NetworkConfig.replyVersion(for: input)
            return PluginReply(status: 1, stdout: error.json(cniVersion: version.description).serialized(pretty: true) + "\n")
        }
    }
}
