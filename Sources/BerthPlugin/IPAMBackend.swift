import BerthCNI
import BerthCNIPlugin
import BerthIPAM
import BerthSystem
import BerthJSON
import BerthNet

/// Where the bridge plugin gets its addresses: Berth's own IPAM in this
/// process, or another IPAM plugin executed from CNI_PATH.
protocol IPAMBackend {
    var name: String { get }
    /// Gateways (with their prefix length) that ADD's result will carry,
    /// known before ADD runs; empty when only the result will tell.
    var plannedGateways: [IPPrefix] { get }
    /// The MTU the address source asks for (a cluster node file's), used
    /// when the config sets none; nil for a delegated plugin.
    var linkMTU: Int? { get }
    /// ADD; `isNew` is false when the attachment held these addresses
    /// already, so that a failed ADD releases only what it took itself.
    func add() throws -> (result: CNIResult, isNew: Bool)
    func del() throws
    func check() throws
    func gc() throws
    func status() throws
}

/// `"ipam": {"type": "berth-ipam"}`: the same code as the `berth-ipam`
/// executable, run in-process (no second exec).
struct InProcessIPAM: IPAMBackend {
    static let type = "berth-ipam"
    let invocation: PluginInvocation
    let allocator: AddressAllocator

    var name: String { InProcessIPAM.type }
    var linkMTU: Int? { allocator.config.linkMTU }
    var plannedGateways: [IPPrefix] {
        allocator.config.rangeSets.compactMap(\.gatewayPrefix).reduce(into: []) { out, p in if !out.contains(p) { out.append(p) } }
    }

    init(invocation: PluginInvocation) throws {
        self.invocation = invocation
        allocator = AddressAllocator(config: try IPAMConfig(network: invocation.network, reader: invocation.reader,
                                                            cniArgs: invocation.env.args))
    }

    func add() throws -> (result: CNIResult, isNew: Bool) {
        let allocation = try allocator.allocate(AddressAllocator.key(invocation.env))
        return (allocation.result, allocation.isNew)
    }
    func del() throws { try allocator.del(AddressAllocator.key(invocation.env)) }
    func check() throws { try allocator.check(AddressAllocator.key(invocation.env)) }
    func gc() throws { try allocator.gc(keeping: try AddressAllocator.validKeys(invocation.reader)) }
    func status() throws { try allocator.status() }
}

/// Any other IPAM plugin, executed per the spec. It runs holding the
/// attachment's lock (inherited) and to its end even if `berth` is killed,
/// so a DEL that follows a killed ADD waits for it and then finds what it took.
struct DelegatedIPAM: IPAMBackend {
    let plugin: DelegatedPlugin
    let lock: LockFile?

    var name: String { plugin.type }
    var plannedGateways: [IPPrefix] { [] }
    var linkMTU: Int? { nil }

    /// ADD, with the result checked before Berth uses it: a gateway outside
    /// its address's subnet is an error 7 naming both, and what the plugin
    /// took is released again.
    func add() throws -> (result: CNIResult, isNew: Bool) {
        guard let json = try run(.add) else {
            throw CNIError(.decodeFailure, "IPAM plugin \(plugin.type) printed no result")
        }
        do throws {
            let result = try CNIResult(json: json, field: "result of IPAM plugin \(plugin.type)")
            for ip in result.ips {
                if let gateway = ip.gateway, !ip.address.network.contains(gateway) {
                    throw CNIError(.invalidNetworkConfig,
                                   "IPAM plugin \(plugin.type) returned gateway \(gateway), which is outside the subnet of its address \(ip.address)")
                }
            }
            return (result, true)
        } catch {
            try? del()
            throw error
        }
    }
    func del() throws { _ = try run(.del) }
    func check() throws { _ = try run(.check) }
    func gc() throws { _ = try run(.gc) }
    func status() throws { _ = try run(.status) }

    private func run(_ command: CNICommand) throws -> JSON? {
        try plugin.run(command, inherit: lock?.descriptor, outliveCaller: lock != nil)
    }
}
