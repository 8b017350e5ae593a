/// The fields every CNI network config has, read and checked.
public struct NetworkConfig: Sendable {
    public var cniVersion: CNIVersion
    public var name: String
    public var type: String
    /// `ipam.type`, or nil when the config has no IPAM (a layer-2 only network).
    public var ipamType: String?
    /// `dns` of the config.
    public var dns: CNIResult.DNS
    /// `prevResult` as given (a chained plugin's input).
    public var prevResult: JSON?
    /// The whole config object.
    public var raw: JSONObject

    /// Decodes a config from stdin bytes: JSON errors are 6, an unsupported
    /// `cniVersion` is 1, a bad field is 7 naming it.
    public static func decode(_ bytes: [UInt8]) throws(CNIError) -> (NetworkConfig, FieldReader) {
        let object = try decodeObject(bytes)
        let r = FieldReader(object)
        return (try NetworkConfig(r), r)
    }

    /// Parses stdin as a JSON object (error 6 otherwise).
    public static func decodeObject(_ bytes: [UInt8]) throws(CNIError) -> JSONObject {
        let json: JSON
        do {
            json = try JSON.parse(bytes)
        } catch {
            throw CNIError(.decodeFailure, "network config is not valid JSON: \(error)")
        }
        guard let object = json.objectValue else {
            throw CNIError(.decodeFailure, "network config must be a JSON object, got \(json.typeName)")
        }
        return object
    }

    /// The version to print errors in: the config's own when it is valid and
    /// supported, the newest otherwise.
    public static func replyVersion(for bytes: [UInt8]) -> CNIVersion {
        guard let json = try? JSON.parse(bytes), let text = json["cniVersion"]?.stringValue,
              let v = CNIVersion(text), CNIVersion.supported.contains(v) else { return .latest }
        return v
    }

    /// Reads `cniVersion` alone: missing means 0.1.0 (as libcni decides).
    public static func version(_ r: FieldReader) throws(CNIError) -> CNIVersion {
        guard let text = try r.string("cniVersion"), !text.isEmpty else { return .implicit }
        guard let v = CNIVersion(text) else {
            throw CNIError(.incompatibleVersion, "cniVersion \"\(text)\" is not a version (expected MAJOR.MINOR.PATCH)")
        }
        guard CNIVersion.supported.contains(v) else {
            throw CNIError(.incompatibleVersion, "cniVersion \(text) is not supported",
                           details: "supported versions: " + CNIVersion.supported.map(\.description).joined(separator: ", "))
        }
        return v
    }

    public init(_ r: FieldReader) throws(CNIError) {
        cniVersion = try NetworkConfig.version(r)
        name = try r.requiredString("name")
        if let problem = NetworkConfig.networkNameProblem(name) {
            throw r.error("name", "\"\(name)\" is invalid: \(problem)")
        }
        type = try r.string("type") ?? ""
        if let ipam = try r.object("ipam"), let t = try ipam.string("type"), !t.isEmpty {
            if t.contains("/") || t == "." || t == ".." {
                throw ipam.error("type", "\"\(t)\" must be a plugin name found on CNI_PATH, not a path")
            }
            ipamType = t
        } else {
            ipamType = nil
        }
        dns = try r.object("dns").map { (d) throws(CNIError) in try CNIResult.readDNS(d) } ?? CNIResult.DNS()
        prevResult = r.object["prevResult"].flatMap { $0 == .null ? nil : $0 }
        raw = r.object
    }

    /// Why `name` cannot be a network name, or nil: names are used in file
    /// paths, so they follow the spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
    public static func networkNameProblem(_ name: String) -> String? {
        if name == "." || name == ".." { return "it may not be \".\" or \"..\"" }
        return CNIEnvironment.containerIDProblem(name)
    }
}

/// The `berth` plugin's config: the reference bridge plugin's fields.
public struct BridgeConfig: Sendable {
    public static let defaultBridge = "berth0"

    /// How masquerading rules are installed.
    public enum MasqueradeBackend: String, Sendable {
        case nftables, iptables
    }

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
    public var ipMasqBackend: MasqueradeBackend
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
    /// Run IPv6 duplicate address detection (and wait for it) instead of skipping it.
    public var enableDAD: Bool
    /// Leave the container end down (a layer-2 attachment configured by someone else).
    public var disableContainerInterface: Bool
    /// MAC for the container interface: `runtimeConfig.mac`, then `args.cni.mac`, then `CNI_ARGS` `MAC=`.
    public var mac: String?

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
        guard let parsedBackend = backend.isEmpty ? .nftables : MasqueradeBackend(rawValue: backend) else {
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
        var macSource = "CNI_ARGS MAC"
        if let fromArgs = cniArgs.last(where: { $0.key == "MAC" })?.value { mac = fromArgs }
        if let args = try r.object("args"), let cni = try args.object("cni"), let m = try cni.string("mac") {
            mac = m
            macSource = "args.cni.mac"
        }
        if let rc = try r.object("runtimeConfig"), let m = try rc.string("mac"), !m.isEmpty {
            mac = m
            macSource = "runtimeConfig.mac"
        }
        if let given = mac {
            guard let normalized = BridgeConfig.normalizedUnicastMAC(given) else {
                let code: CNIError.Code = macSource == "CNI_ARGS MAC" ? .invalidEnvironment : .invalidNetworkConfig
                throw CNIError(code, "\(macSource): \"\(given)\" is not a unicast MAC address (like 0a:58:0a:01:00:05)")
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

extension NetworkConfig {
    /// The attachments GC must keep: `cni.dev/valid-attachments` (or the
    /// older `cni.dev/attachments`), each `{containerID, ifname}`.
    public static func validAttachments(_ r: FieldReader) throws(CNIError) -> [(containerID: String, ifname: String)] {
        let key = r.has("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments"
        guard let items = try r.objects(key) else {
            throw r.error("cni.dev/valid-attachments", "is required for GC")
        }
        var out: [(containerID: String, ifname: String)] = []
        for item in items {
            out.append((try item.requiredString("containerID"), try item.requiredString("ifname")))
        }
        return out
    }
}
