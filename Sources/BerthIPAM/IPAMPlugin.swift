import BerthCNI
import BerthCNIPlugin
import BerthSystem
import BerthJSON

/// The `berth-ipam` executable: a CNI IPAM plugin over `AddressAllocator`.
public enum IPAMPlugin {
    public static func main() -> Never {
        runPluginProcess { environment, readInput, deliver in
            PluginDriver.run(environment: environment, readInput: readInput, deliver: deliver, handle: handle)
        }
    }

    public static func run(environment: [String: String], readInput: () throws -> [UInt8]) -> PluginReply {
        PluginDriver.run(environment: environment, readInput: readInput, handle: handle)
    }

    /// The command, with the store's errors turned into CNI errors here, once.
    static func handle(_ invocation: PluginInvocation) throws(CNIError) -> JSON? {
        do {
            let ipam = AddressAllocator(config: try IPAMConfig(network: invocation.network, reader: invocation.reader,
                                                               cniArgs: invocation.env.args))
            let key = AddressAllocator.key(invocation.env)
            switch invocation.env.command {
            case .add:
                // Addresses whose result never reached the caller are released again.
                let allocation = try ipam.allocate(key)
                do {
                    try invocation.deliver(allocation.result.json(version: invocation.network.cniVersion))
                } catch {
                    if allocation.isNew { try? ipam.del(key) }
                    throw error
                }
            case .del: try ipam.del(key)
            case .check: try ipam.check(key)
            case .gc: try ipam.gc(keeping: try AddressAllocator.validKeys(invocation.reader))
            case .status: try ipam.status()
            case .version: break
            }
            return nil
        } catch {
            throw CNIError(ipamError: error).forStatus(invocation.env.command)
        }
    }
}

extension CNIError {
    /// A CNI error as it was raised; a failed system call (the store's files)
    /// an I/O failure naming the file.
    public init(ipamError error: any Error) {
        switch error {
        case let e as CNIError: self = e
        case let e as StoreError:
            if case .badNetworkName = e { self.init(.invalidNetworkConfig, e.description) } else { self.init(.ioFailure, e.description) }
        case let e as SystemError: self.init(.ioFailure, "IPAM store: \(e)" + (e.isPermissionDenied ? " (run it as root)" : ""))
        default: self.init(.ioFailure, "\(error)")
        }
    }
}
