#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthSystem

/// The `berth` executable's entry point.
public enum BerthPlugin {
    /// Reads the real environment and stdin, prints the reply and exits.
    public static func main() -> Never {
        let environment = processEnvironment()
        let reply = run(environment: environment) {
            try readStandardInput(skipIfTerminal: environment["CNI_COMMAND"] == "VERSION")
        }
        writeStandardOutput(reply.stdout)
        exit(reply.status)
    }

    /// Runs one invocation of the bridge plugin.
    public static func run(environment: [String: String],
                           readInput: () throws -> [UInt8]) -> PluginReply {
        PluginDriver.run(environment: environment, readInput: readInput) { (invocation) throws(CNIError) -> JSON? in
            let config = try BridgeConfig(network: invocation.network, reader: invocation.reader,
                                          cniArgs: invocation.env.args)
            let operation = try BridgeOperation(config: config, invocation: invocation)
            switch invocation.env.command {
            case .add: return try operation.add().json(version: invocation.network.cniVersion)
            case .del: try operation.del()
            case .check: try operation.check()
            case .gc: try operation.gc(valid: try NetworkConfig.validAttachments(invocation.reader))
            case .status: try operation.status()
            case .version: break
            }
            return nil
        }
    }
}

