import BerthCNI
import BerthSystem

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

    static func handle(_ invocation: PluginInvocation) throws(CNIError) -> JSON? {
        let config = try IPAMConfig(network: invocation.network, reader: invocation.reader, cniArgs: invocation.env.args)
        let allocator = AddressAllocator(config: config)
        switch invocation.env.command {
        case .add:
            // Addresses whose result never reached the caller are released again.
            let key = AddressAllocator.key(invocation.env)
            let allocation = try allocator.allocate(key)
            do {
                try invocation.deliver(allocation.result.json(version: invocation.network.cniVersion))
            } catch {
                if allocation.isNew { try? allocator.del(key) }
                throw error
            }
        case .del: try del(allocator, invocation.env)
        case .check: try check(allocator, invocation.env)
        case .gc: try gc(allocator, invocation.reader)
        case .status: try allocator.status()
        case .version: break
        }
        return nil
    }

    public static func add(_ allocator: AddressAllocator, _ env: CNIEnvironment) throws(CNIError) -> CNIResult {
        try allocator.add(AddressAllocator.key(env))
    }

    public static func del(_ allocator: AddressAllocator, _ env: CNIEnvironment) throws(CNIError) {
        try allocator.del(AddressAllocator.key(env))
    }

    public static func check(_ allocator: AddressAllocator, _ env: CNIEnvironment) throws(CNIError) {
        try allocator.check(AddressAllocator.key(env))
    }

    public static func gc(_ allocator: AddressAllocator, _ reader: FieldReader) throws(CNIError) {
        let valid = try NetworkConfig.validAttachments(reader)
        try allocator.gc(keeping: Set(valid.map { AttachmentKey(containerID: $0.containerID, ifname: $0.ifname) }))
    }
}
