import BerthCNI
import BerthSystem

/// The `berth` executable's entry point.
public enum BerthPlugin {
    /// Reads the real environment and stdin, prints the reply and exits.
    public static func main() -> Never {
        runPluginProcess { environment, readInput in
            let reply = run(environment: environment, readInput: readInput)
            return (reply.status, reply.stdout)
        }
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

