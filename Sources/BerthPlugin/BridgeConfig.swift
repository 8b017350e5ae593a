import BerthNames
import BerthCNI
import BerthNet
import BerthFirewall

/// The `berth` plugin's config: the reference bridge plugin's fields.
public struct BridgeConfig: Sendable {
    public static let defaultBridge = "berth0"

    public var network: NetworkConfig
    /// The bridge's name (`bridge`, default berth0).
    public var bridge: String
    /// Give the bridge each range's gateway address.
    public var isGateway: Bool
    /// Also route the container's default traffic through the bridge.
    public var isDefaultGateway: Bool
    /// Replace a conflicting address on the bridge instead of failing.
    public var forceAddress: Bool
    /// Masquerade the container's traffic leaving its subnet.
    public var ipMasq: Bool
    public var ipMasqBackend: FirewallBackend
    /// MTU of the bridge and both veth ends.
    public var mtu: Int?
    /// Let frames leave through the port they came in (a container reaching itself through the bridge).
    public var hairpinMode: Bool
    /// Put the bridge in promiscuous mode.
    public var promiscMode: Bool
    /// Isolated ports cannot talk to each other, only to non-isolated ones (the bridge itself, uplinks).
    public var portIsolation: Bool
    /// Access VLAN of the container's port (untagged), if any.
    public var vlan: Int?
    /// Tagged VLANs of the container's port.
    public var vlanTrunk: [Int]
    /// Keep the bridge's default VLAN 1 on the port as well.
    public var preserveDefaultVlan: Bool
    /// The container may send only frames with its own MAC.
    public var macSpoofCheck: Bool
    /// Isolation from other networks of the host (`isolate`: true, or
    /// "strict"); nil when off, as the reference plugin behaves.
    public var isolation: NetworkIsolation.Level?
    /// Run IPv6 duplicate address detection (and wait for it) instead of skipping it.
    public var enableDAD: Bool
    /// Leave the container end down (a layer-2 attachment configured by someone else).
    public var disableContainerInterface: Bool
    /// MAC for the container interface: `runtimeConfig.mac`, then `args.cni.mac`, then `CNI_ARGS` `MAC=`.
    public var mac: String?
    /// Where the node's endpoint records and the policies in force are kept
    /// (`runDir`, default /run/berth): one per node when several simulated
    /// nodes share a machine (each node's `berth-agent --run-dir`).
    public var runDirectory: String
    /// Names on the network (`"names"`): a DNS server of its own answers each attachment's names.
    public var names: NamesConfig?
    public static let defaultRunDirectory = "/run/berth"

    /// The fields this config reads (besides the CNI ones every config has).
    public static let fields = ["bridge", "isGateway", "isDefaultGateway", "forceAddress", "ipMasq", "ipMasqBackend", "mtu",
                                "hairpinMode", "promiscMode", "portIsolation", "vlan", "vlanTrunk", "preserveDefaultVlan",
                                "macspoofchk", "isolate", "enabledad", "disableContainerInterface", "dns", "args", "runtimeConfig",
                                "capabilities", "runDir", "names"]

    public init(_ bytes: [UInt8], cniArgs: [(key: String, value: String)] = []) throws(CNIError) {
        let (network, r) = try NetworkConfig.decode(bytes)
        try self.init(network: network, reader: r, cniArgs: cniArgs)
    }

    public init(network: NetworkConfig, reader r: FieldReader,
                cniArgs: [(key: String, value: String)] = []) throws(CNIError) {
        self.network = network
        bridge = try r.string("bridge") ?? BridgeConfig.defaultBridge
        if bridge.isEmpty { bridge = BridgeConfig.defaultBridge }
        if let problem = CNIEnvironment.interfaceNameProblem(bridge) {
            throw r.error("bridge", "\"\(bridge)\" is not a valid interface name: \(problem)")
        }
        isDefaultGateway = try r.bool("isDefaultGateway") ?? false
        isGateway = try r.bool("isGateway") ?? false || isDefaultGateway
        forceAddress = try r.bool("forceAddress") ?? false
        ipMasq = try r.bool("ipMasq") ?? false
        let backend = try r.string("ipMasqBackend") ?? ""
        guard let parsedBackend = backend.isEmpty ? .nftables : FirewallBackend(rawValue: backend) else {
            throw r.error("ipMasqBackend", "\"\(backend)\" is not one of nftables, iptables")
        }
        ipMasqBackend = parsedBackend
        mtu = try r.int("mtu")
        if let mtu, mtu != 0, !(68...65535).contains(mtu) {
            throw r.error("mtu", "\(mtu) is outside 68-65535")
        }
        if mtu == 0 { mtu = nil }
        hairpinMode = try r.bool("hairpinMode") ?? false
        promiscMode = try r.bool("promiscMode") ?? false
        if hairpinMode && promiscMode {
            throw r.error("promiscMode", "cannot be combined with hairpinMode")
        }
        portIsolation = try r.bool("portIsolation") ?? false
        vlan = try r.int("vlan")
        if let vlan, !(0...4094).contains(vlan) {
            throw r.error("vlan", "\(vlan) is outside 0-4094")
        }
        if vlan == 0 { vlan = nil }
        vlanTrunk = []
        for item in try r.objects("vlanTrunk") ?? [] {
            let id = try item.int("id"), minID = try item.int("minID"), maxID = try item.int("maxID")
            if let id {
                if minID != nil || maxID != nil { throw item.error("id", "give either id or minID and maxID") }
                guard (1...4094).contains(id) else { throw item.error("id", "\(id) is outside 1-4094") }
                vlanTrunk.append(id)
            } else {
                guard let minID, let maxID else { throw item.error("minID", "a trunk entry needs id, or minID and maxID") }
                guard (1...4094).contains(minID) else { throw item.error("minID", "\(minID) is outside 1-4094") }
                guard (1...4094).contains(maxID) else { throw item.error("maxID", "\(maxID) is outside 1-4094") }
                guard minID <= maxID else { throw item.error("minID", "\(minID) is greater than maxID \(maxID)") }
                vlanTrunk += Array(minID...maxID)
            }
        }
        vlanTrunk = Array(Set(vlanTrunk)).sorted()
        if vlan != nil && !vlanTrunk.isEmpty {
            throw r.error("vlanTrunk", "cannot be combined with vlan")
        }
        preserveDefaultVlan = try r.bool("preserveDefaultVlan") ?? true
        macSpoofCheck = try r.bool("macspoofchk") ?? false
        switch r.object["isolate"] {
        case nil, .null?, .bool(false)?: isolation = nil
        case .bool(true)?: isolation = .isolated
        case .string("strict")?: isolation = .strict
        case let other?:
            throw r.error("isolate", "expected true, false or \"strict\", got \(other.serialized())")
        }
        runDirectory = try r.string("runDir") ?? BridgeConfig.defaultRunDirectory
        if !runDirectory.hasPrefix("/") || runDirectory.contains("\0") || runDirectory.split(separator: "/").contains("..") {
            throw r.error("runDir", "\"\(runDirectory)\" is not an absolute path without ..")
        }
        names = try NamesConfig.read(r)
        if names != nil && !isGateway {
            throw r.error("names", "needs \"isGateway\": the network's DNS server listens on the gateway address")
        }
        enableDAD = try r.bool("enabledad") ?? false
        disableContainerInterface = try r.bool("disableContainerInterface") ?? false
        if disableContainerInterface && network.ipamType != nil {
            throw r.error("disableContainerInterface", "a container interface left down cannot take addresses: remove \"ipam\"")
        }
        if isGateway && network.ipamType == nil {
            throw r.error(isDefaultGateway ? "isDefaultGateway" : "isGateway",
                          "needs an IPAM (\"ipam\": {\"type\": ...}) to know the gateway address")
        }
        if ipMasq && network.ipamType == nil {
            throw r.error("ipMasq", "needs an IPAM to know which addresses to masquerade")
        }

        var mac: String?
        if let given = try RuntimeInput.values("mac", cniArgsKey: "MAC", in: r, cniArgs: cniArgs, list: false).first {
            guard let normalized = BridgeConfig.normalizedUnicastMAC(given.text) else {
                throw given.error("is not a unicast MAC address (like 0a:58:0a:01:00:05)")
            }
            mac = normalized
        }
        self.mac = mac
    }

    /// "AA:bb:..." in lower case when it is a 6-byte unicast MAC, else nil.
    public static func normalizedUnicastMAC(_ text: String) -> String? {
        guard let bytes = parseMAC(text), bytes[0] & 1 == 0, bytes != [0, 0, 0, 0, 0, 0] else { return nil }
        return text.lowercased()
    }

    /// Whether the container's port needs bridge VLAN filtering.
    public var usesVLANs: Bool { vlan != nil || !vlanTrunk.isEmpty }
}
