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

    public var network: NetworkConfig
    /// The bridge's name (`bridge`, default berth0).
    public var bridge: String
    /// Give the bridge each range's gateway address.
    public var isGateway: Bool
    /// Also route the container's default traffic through the bridge.
    public var isDefaultGateway: Bool
    /// MTU of the bridge and both veth ends.
    public var mtu: Int?

    public init(_ bytes: [UInt8]) throws(CNIError) {
        let (network, r) = try NetworkConfig.decode(bytes)
        try self.init(network: network, reader: r)
    }

    public init(network: NetworkConfig, reader r: FieldReader) throws(CNIError) {
        self.network = network
        bridge = try r.string("bridge") ?? BridgeConfig.defaultBridge
        if bridge.isEmpty { bridge = BridgeConfig.defaultBridge }
        if let problem = CNIEnvironment.interfaceNameProblem(bridge) {
            throw r.error("bridge", "\"\(bridge)\" is not a valid interface name: \(problem)")
        }
        isDefaultGateway = try r.bool("isDefaultGateway") ?? false
        isGateway = try r.bool("isGateway") ?? false || isDefaultGateway
        mtu = try r.int("mtu")
        if let mtu, mtu != 0, !(68...65535).contains(mtu) {
            throw r.error("mtu", "\(mtu) is outside 68-65535")
        }
        if mtu == 0 { mtu = nil }
        if isGateway && network.ipamType == nil {
            throw r.error(isDefaultGateway ? "isDefaultGateway" : "isGateway",
                          "needs an IPAM (\"ipam\": {\"type\": ...}) to know the gateway address")
        }
    }
}
