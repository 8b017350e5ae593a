import BerthCNI
import BerthIPAM

/// Where the bridge plugin gets its addresses: Berth's own IPAM in this
/// process, or another IPAM plugin executed from CNI_PATH.
protocol IPAMBackend {
    var name: String { get }
    /// Gateways (with their prefix length) that ADD's result will carry,
    /// known before ADD runs; empty when only the result will tell.
    var plannedGateways: [IPPrefix] { get }
    func add() throws(CNIError) -> CNIResult
    func del() throws(CNIError)
    func check() throws(CNIError)
    func gc() throws(CNIError)
    func status() throws(CNIError)
}

/// `"ipam": {"type": "berth-ipam"}`: the same code as the `berth-ipam`
/// executable, run in-process (no second exec).
struct InProcessIPAM: IPAMBackend {
    static let type = "berth-ipam"
    let invocation: PluginInvocation
    let allocator: AddressAllocator

    var name: String { InProcessIPAM.type }
    var plannedGateways: [IPPrefix] {
        allocator.config.rangeSets.compactMap(\.gatewayPrefix).reduce(into: []) { out, p in if !out.contains(p) { out.append(p) } }
    }

    init(invocation: PluginInvocation) throws(CNIError) {
        self.invocation = invocation
        allocator = AddressAllocator(config: try IPAMConfig(network: invocation.network, reader: invocation.reader,
                                                            cniArgs: invocation.env.args))
        // An attachment the store cannot name is refused before anything is touched.
        if [.add, .del, .check].contains(invocation.env.command) { _ = try AddressAllocator.key(invocation.env) }
    }

    func add() throws(CNIError) -> CNIResult { try IPAMPlugin.add(allocator, invocation.env) }
    func del() throws(CNIError) { try IPAMPlugin.del(allocator, invocation.env) }
    func check() throws(CNIError) { try IPAMPlugin.check(allocator, invocation.env) }
    func gc() throws(CNIError) { try IPAMPlugin.gc(allocator, invocation.reader) }
    func status() throws(CNIError) { try allocator.status() }
}

/// Any other IPAM plugin, executed per the spec.
struct DelegatedIPAM: IPAMBackend {
    let plugin: DelegatedPlugin

    var name: String { plugin.type }
    var plannedGateways: [IPPrefix] { [] }

    func add() throws(CNIError) -> CNIResult {
        guard let json = try plugin.run(.add) else {
            throw CNIError(.decodeFailure, "IPAM plugin \(plugin.type) printed no result")
        }
        return try CNIResult(json: json, field: "result of IPAM plugin \(plugin.type)")
    }
    func del() throws(CNIError) { _ = try plugin.run(.del) }
    func check() throws(CNIError) { _ = try plugin.run(.check) }
    func gc() throws(CNIError) { _ = try plugin.run(.gc) }
    func status() throws(CNIError) { _ = try plugin.run(.status) }
}
