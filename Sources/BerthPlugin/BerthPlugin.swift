import BerthCNI
import BerthCNIPlugin
import BerthFirewall
import BerthNetlink
import BerthSystem
import BerthJSON

/// The `berth` executable's entry point.
public enum BerthPlugin {
    /// Reads the real environment and stdin, prints the reply and exits.
    public static func main() -> Never {
        runPluginProcess { environment, readInput, deliver in
            PluginDriver.run(environment: environment, readInput: readInput, deliver: deliver, handle: handle)
        }
    }

    /// Runs one invocation of the bridge plugin in this process; returns what it printed.
    public static func run(environment: [String: String],
                           readInput: () throws -> [UInt8]) -> PluginReply {
        PluginDriver.run(environment: environment, readInput: readInput, handle: handle)
    }

    /// The command, with every layer's error turned into a CNI error here, once.
    static func handle(_ invocation: PluginInvocation) throws(CNIError) -> JSON? {
        do {
            let config = try BridgeConfig(network: invocation.network, reader: invocation.reader, cniArgs: invocation.env.args)
            let operation = try BridgeOperation(config: config, invocation: invocation)
            defer { operation.finish() }
            switch invocation.env.command {
            case .add:
                // Delivered under the attachment's lock: an ADD whose result cannot
                // reach the runtime is undone before another operation can start.
                let result = try operation.add()
                do {
                    try invocation.deliver(result.json(version: invocation.network.cniVersion))
                } catch {
                    try? operation.del()
                    throw error
                }
            case .del: try operation.del()
            case .check: try operation.check()
            case .gc: try operation.gc(valid: try NetworkConfig.validAttachments(invocation.reader))
            case .status: try operation.status()
            case .version: break
            }
            return nil
        } catch {
            throw CNIError(pluginError: error).forStatus(invocation.env.command)
        }
    }
}

extension CNIError {
    static let privilegeHint = " (berth must run as root: it needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"

    /// What the runtime is told when a layer of the plugin fails: a CNI error
    /// as it was raised, anything else an I/O failure (5) with the layer's own
    /// message, which names the interface, file or rule, and with the missing
    /// privilege named when that is the cause.
    init(pluginError error: any Error) {
        switch error {
        case let e as CNIError:
            self = e
        case let e as NetlinkError:
            self.init(.ioFailure, "\(e)" + (e.isPermissionDenied ? CNIError.privilegeHint : ""))
        case let e as NetworkNamespace.SwitchError:
            self.init(.ioFailure, "\(e)" + (e.isPermissionDenied ? CNIError.privilegeHint : ""))
        case let e as SystemError:
            self.init(.ioFailure, "\(e)" + (e.isPermissionDenied ? CNIError.privilegeHint : ""))
        case let e as LockFile.TimedOut:
            self.init(.tryAgainLater, "\(e)")
        default:
            self.init(.ioFailure, "\(error)")
        }
    }
}
