import BerthJSON
import BerthNet

/// The file a node's cluster agent writes (`/run/berth/cluster/NAME.json`)
/// and `berth-ipam` reads through a range's `subnetFile`: the block of the
/// cluster's range this node holds, and the MTU its pods should use (the
/// underlay's, less the encapsulation of the cluster's mode).
///
///     {"cluster": "pods", "network": "10.244.0.0/16", "block": "10.244.3.0/24", "mtu": 1450}
///
/// A dual-stack cluster's node file holds the node's IPv6 block too:
///
///     {..., "ipv6Network": "fd00:10:244::/48", "ipv6Block": "fd00:10:244:3::/64"}
public struct NodeFile: Equatable, Sendable {
    public var cluster: String
    /// The cluster's whole range.
    public var network: IPPrefix?
    public var block: IPPrefix
    /// Dual stack: the cluster's IPv6 range and the node's block of it.
    public var ipv6Network: IPPrefix?
    public var ipv6Block: IPPrefix?
    /// The pods' MTU; nil when the agent gave none (pods keep the plugin's default).
    public var mtu: Int?

    public init(cluster: String, network: IPPrefix?, block: IPPrefix, ipv6Network: IPPrefix? = nil, ipv6Block: IPPrefix? = nil, mtu: Int?) {
        self.cluster = cluster
        self.network = network
        self.block = block
        self.ipv6Network = ipv6Network
        self.ipv6Block = ipv6Block
        self.mtu = mtu
    }

    /// The node's blocks: the first, then the IPv6 one of a dual-stack cluster.
    public var blocks: [IPPrefix] { [block] + (ipv6Block.map { [$0] } ?? []) }

    /// The node's block of `family`, if it holds one.
    public func block(family: IPAddress.Family) -> IPPrefix? { blocks.first { $0.family == family } }

    public var json: JSON {
        var o: JSONObject = ["cluster": .string(cluster), "block": .string(block.description)]
        if let network { o["network"] = .string(network.description) }
        if let ipv6Network { o["ipv6Network"] = .string(ipv6Network.description) }
        if let ipv6Block { o["ipv6Block"] = .string(ipv6Block.description) }
        if let mtu { o["mtu"] = .int(mtu) }
        return .object(o)
    }

    /// What the file holds as bytes (pretty JSON and a newline).
    public var bytes: [UInt8] { Array((json.serialized(pretty: true) + "\n").utf8) }

    /// Reads the file's bytes; the reason in one phrase when they are not a node file.
    public static func parse(_ bytes: [UInt8]) -> Result<NodeFile, NodeFileProblem> {
        guard let json = try? JSON.parse(bytes), json.objectValue != nil else { return .failure(NodeFileProblem("is not a JSON object")) }
        guard let text = json["block"]?.stringValue, let block = IPPrefix(text) else {
            return .failure(NodeFileProblem("holds no \"block\" prefix"))
        }
        var mtu: Int?
        if let value = json["mtu"] {
            guard let m = value.intValue, (68...65535).contains(m) else {
                return .failure(NodeFileProblem("has \"mtu\" \(value.serialized()), not an MTU between 68 and 65535"))
            }
            mtu = m
        }
        var ipv6Block: IPPrefix?
        if let value = json["ipv6Block"] {
            guard let prefix = value.stringValue.flatMap(IPPrefix.init), prefix.family == .v6, block.family == .v4 else {
                return .failure(NodeFileProblem("has \"ipv6Block\" \(value.serialized()), not an IPv6 prefix beside an IPv4 \"block\""))
            }
            ipv6Block = prefix
        }
        let network = json["network"]?.stringValue.flatMap(IPPrefix.init)
        return .success(NodeFile(cluster: json["cluster"]?.stringValue ?? "", network: network, block: block,
                                 ipv6Network: json["ipv6Network"]?.stringValue.flatMap(IPPrefix.init), ipv6Block: ipv6Block, mtu: mtu))
    }
}

public struct NodeFileProblem: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
