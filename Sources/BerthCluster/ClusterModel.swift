import BerthCNI
import BerthJSON
import BerthNet

/// How the nodes of a cluster network reach each other's blocks.
public enum ClusterMode: String, Sendable, CaseIterable {
    /// A route per remote block via that node's address (nodes share an L2 segment).
    case hostGateway = "host-gw"
    /// A VXLAN device per node, with per-peer FDB and neighbour entries and a
    /// route per remote block through it (works across routed underlays).
    case vxlan
    /// A WireGuard device per node, a peer per remote node (allowed IPs: its
    /// block) and a route per remote block through it: encrypted, across
    /// routed underlays.
    case wireguard
}

/// A range of addresses split into blocks of one length, one per node.
public struct BlockRange: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var network: IPPrefix
    public var blockLength: Int

    public init(network: IPPrefix, blockLength: Int) {
        self.network = network.network
        self.blockLength = blockLength
    }

    public var family: IPAddress.Family { network.family }
    public var description: String { "\(network) (/\(blockLength) blocks)" }

    /// How many blocks the range holds.
    public var blockCount: Int { 1 << (blockLength - network.prefixLength) }

    /// Block number `i` of the range.
    public func block(_ i: Int) -> IPPrefix {
        // The bits from the range's length to the block's hold i (at most 16 of them).
        var bytes = network.address.bytes
        let width = blockLength - network.prefixLength
        for bit in 0..<width where (i >> (width - 1 - bit)) & 1 == 1 {
            let position = network.prefixLength + bit
            bytes[position / 8] |= UInt8(0x80 >> (position % 8))
        }
        return IPPrefix(address: IPAddress(bytes: bytes)!, prefixLength: blockLength)!
    }

    /// Whether `prefix` is one of this range's blocks.
    public func isBlock(_ prefix: IPPrefix) -> Bool {
        prefix.prefixLength == blockLength && network.contains(prefix.address) && prefix.address == prefix.network.address
    }

    /// Why `network` split into /`blockLength` blocks cannot be a cluster range, or nil.
    static func problem(network: IPPrefix, blockLength: Int, what: String) -> String? {
        // A block holds the gateway and at least two pods: /30 for IPv4, /126 for IPv6.
        let longest = network.family == .v4 ? 30 : 126
        guard blockLength > network.prefixLength, blockLength <= longest else {
            return "\(what) /\(blockLength) must be longer than the cluster range \(network) and at most /\(longest)"
        }
        guard blockLength - network.prefixLength <= 16 else {
            return "cluster range \(network) would hold more than 65,536 blocks of /\(blockLength)"
        }
        return nil
    }
}

/// A cluster network as declared once in etcd (`berth-agent init`).
public struct ClusterConfig: Equatable, Sendable {
    public var name: String
    /// The cluster's range, split into one block per node.
    public var network: IPPrefix
    /// The prefix length of a node's block (24 by default).
    public var blockLength: Int
    public var mode: ClusterMode
    /// VXLAN network identifier (vxlan mode) and UDP port (vxlan, wireguard).
    public var vni: Int
    public var port: Int
    /// Dual stack: an IPv6 range beside the IPv4 `network` (flannel's
    /// `IPv6Network`); each node then holds one block of each.
    public var ipv6Network: IPPrefix?
    /// The prefix length of a node's block of `ipv6Network` (/64 by default).
    public var ipv6BlockLength: Int

    /// The range the node's first block comes from (`network`).
    public var primary: BlockRange { BlockRange(network: network, blockLength: blockLength) }
    /// Dual stack's IPv6 range, if declared.
    public var secondary: BlockRange? { ipv6Network.map { BlockRange(network: $0, blockLength: ipv6BlockLength) } }
    /// Every range a node takes a block of: one, or two with dual stack.
    public var ranges: [BlockRange] { [primary] + (secondary.map { [$0] } ?? []) }
    public var isDualStack: Bool { ipv6Network != nil }

    public static let defaultBlockLength = 24
    /// An IPv6 block, as flannel's IPv6 subnets: /64.
    public static let defaultBlockLength6 = 64

    /// A node's block length when none is given: /24 of an IPv4 range, /64 of an IPv6 one.
    public static func defaultBlockLength(for family: IPAddress.Family) -> Int { family == .v4 ? defaultBlockLength : defaultBlockLength6 }
    /// flannel's VXLAN port, so the two can share firewall rules; 4789 is IANA's.
    public static let defaultPort = 8472
    /// WireGuard's usual port.
    public static let defaultWireGuardPort = 51820

    /// The UDP port of `mode` when none is given.
    public static func defaultPort(for mode: ClusterMode) -> Int { mode == .wireguard ? defaultWireGuardPort : defaultPort }

    public init(name: String, network: IPPrefix, blockLength: Int = ClusterConfig.defaultBlockLength,
                mode: ClusterMode = .hostGateway, vni: Int = 1, port: Int? = nil,
                ipv6Network: IPPrefix? = nil, ipv6BlockLength: Int = ClusterConfig.defaultBlockLength6) throws(ClusterError) {
        let port = port ?? ClusterConfig.defaultPort(for: mode)
        if let problem = NetworkConfig.networkNameProblem(name) { throw ClusterError("cluster name \"\(name)\" is invalid: \(problem)") }
        if let problem = BlockRange.problem(network: network, blockLength: blockLength, what: "block length") { throw ClusterError(problem) }
        if let ipv6Network {
            guard network.family == .v4 else {
                throw ClusterError("a dual-stack cluster's range \(network) must be IPv4 beside its IPv6 range \(ipv6Network) (an IPv6-only cluster needs no second range)")
            }
            guard ipv6Network.family == .v6 else { throw ClusterError("the IPv6 range \(ipv6Network) is not an IPv6 prefix") }
            if let problem = BlockRange.problem(network: ipv6Network, blockLength: ipv6BlockLength, what: "IPv6 block length") { throw ClusterError(problem) }
        }
        guard (1...16_777_215).contains(vni) else { throw ClusterError("VNI \(vni) is not between 1 and 16777215") }
        guard (1...65535).contains(port) else { throw ClusterError("UDP port \(port) is not between 1 and 65535") }
        self.name = name
        self.network = network.network
        self.blockLength = blockLength
        self.mode = mode
        self.vni = vni
        self.port = port
        self.ipv6Network = ipv6Network?.network
        self.ipv6BlockLength = ipv6BlockLength
    }

    public var json: JSON {
        var o: JSONObject = ["name": .string(name), "network": .string(network.description), "blockLength": .int(blockLength),
                             "mode": .string(mode.rawValue), "vni": .int(vni), "port": .int(port)]
        if let ipv6Network {
            o["ipv6Network"] = .string(ipv6Network.description)
            o["ipv6BlockLength"] = .int(ipv6BlockLength)
        }
        return .object(o)
    }

    public init(json: JSON) throws(ClusterError) {
        guard let name = json["name"]?.stringValue, let network = json["network"]?.stringValue.flatMap(IPPrefix.init),
              let mode = json["mode"]?.stringValue.flatMap(ClusterMode.init(rawValue:)) else {
            throw ClusterError("the cluster config is not one: \(json.serialized())")
        }
        var ipv6Network: IPPrefix?
        if let value = json["ipv6Network"] {
            guard let prefix = value.stringValue.flatMap(IPPrefix.init) else {
                throw ClusterError("the cluster config's ipv6Network \(value.serialized()) is not a prefix")
            }
            ipv6Network = prefix
        }
        try self.init(name: name, network: network,
                      blockLength: json["blockLength"]?.intValue ?? ClusterConfig.defaultBlockLength(for: network.family),
                      mode: mode, vni: json["vni"]?.intValue ?? 1, port: json["port"]?.intValue,
                      ipv6Network: ipv6Network, ipv6BlockLength: json["ipv6BlockLength"]?.intValue ?? ClusterConfig.defaultBlockLength6)
    }

    /// How many blocks the first range holds.
    public var blockCount: Int { primary.blockCount }

    /// Block number `i` of the first range.
    public func block(_ i: Int) -> IPPrefix { primary.block(i) }

    /// Whether `prefix` is a block of one of the cluster's ranges.
    public func isBlock(_ prefix: IPPrefix) -> Bool { ranges.contains { $0.isBlock(prefix) } }

    /// The range `prefix` is a block of.
    public func range(of prefix: IPPrefix) -> BlockRange? { ranges.first { $0.isBlock(prefix) } }

    /// Whether `address` is inside one of the cluster's ranges.
    public func contains(_ address: IPAddress) -> Bool { ranges.contains { $0.network.contains(address) } }

    // MARK: Keys in etcd

    public static let root = "/berth/clusters/"
    public static func configKey(_ name: String) -> String { "\(root)\(name)/config" }
    public var configKey: String { ClusterConfig.configKey(name) }
    public var nodesPrefix: String { "\(ClusterConfig.root)\(name)/nodes/" }
    public var blocksPrefix: String { "\(ClusterConfig.root)\(name)/blocks/" }
    public func nodeKey(_ node: String) -> String { nodesPrefix + node }
    /// Network policies: `policies/NAMESPACE/NAME`, each a NetworkPolicy document.
    public var policiesPrefix: String { "\(ClusterConfig.root)\(name)/policies/" }
    public func policyKey(namespace: String, name: String) -> String { policiesPrefix + "\(namespace)/\(name)" }
    /// Namespaces' labels for policy: `namespaces/NAME`, each a Namespace document.
    public var namespacesPrefix: String { "\(ClusterConfig.root)\(name)/namespaces/" }
    public func namespaceKey(_ namespace: String) -> String { namespacesPrefix + namespace }
    /// Each node's pods as policy sees them: `endpoints/NODE/NETWORK:CONTAINER:IFNAME`, under the node's lease.
    public var endpointsPrefix: String { "\(ClusterConfig.root)\(name)/endpoints/" }
    public func endpointsPrefix(node: String) -> String { endpointsPrefix + node + "/" }
    /// A block's key: its address and length ("10.244.3.0-24").
    public func blockKey(_ block: IPPrefix) -> String { blocksPrefix + "\(block.address)-\(block.prefixLength)" }
    public func block(fromKey key: String) -> IPPrefix? {
        guard key.hasPrefix(blocksPrefix) else { return nil }
        let text = key.dropFirst(blocksPrefix.count)
        guard let dash = text.lastIndex(of: "-"), let prefix = IPPrefix("\(text[..<dash])/\(text[text.index(after: dash)...])"),
              isBlock(prefix) else { return nil }
        return prefix
    }
}

/// What a node publishes about itself (under its lease).
public struct NodeRecord: Equatable, Sendable {
    public var node: String
    /// The node's underlay address: where other nodes send its block's traffic.
    public var address: IPAddress
    public var block: IPPrefix
    /// Dual stack: the node's block of the cluster's IPv6 range.
    public var ipv6Block: IPPrefix?
    /// Dual stack in host-gw: the node's IPv6 underlay address, the next hop of its IPv6 block.
    public var ipv6Address: IPAddress?
    /// The MAC of the node's VXLAN device (vxlan mode).
    public var vtepMAC: String?
    /// The public key of the node's WireGuard device, base64 (wireguard mode).
    public var publicKey: String?
    /// When the node took its lease (seconds since 1970).
    public var since: Int

    public init(node: String, address: IPAddress, block: IPPrefix, ipv6Block: IPPrefix? = nil, ipv6Address: IPAddress? = nil,
                vtepMAC: String? = nil, publicKey: String? = nil, since: Int) {
        self.node = node
        self.address = address
        self.block = block
        self.ipv6Block = ipv6Block
        self.ipv6Address = ipv6Address
        self.vtepMAC = vtepMAC
        self.publicKey = publicKey
        self.since = since
    }

    /// The node's blocks: one, or an IPv4 and an IPv6 one with dual stack.
    public var blocks: [IPPrefix] { [block] + (ipv6Block.map { [$0] } ?? []) }

    public var json: JSON {
        var o: JSONObject = ["node": .string(node), "address": .string(address.description),
                             "block": .string(block.description), "since": .int(since)]
        if let ipv6Block { o["ipv6Block"] = .string(ipv6Block.description) }
        if let ipv6Address { o["ipv6Address"] = .string(ipv6Address.description) }
        if let vtepMAC { o["vtepMAC"] = .string(vtepMAC) }
        if let publicKey { o["publicKey"] = .string(publicKey) }
        return .object(o)
    }

    /// Reads a record; nil when it is not one (a corrupt record is logged and ignored).
    public init?(json: JSON) {
        guard let node = json["node"]?.stringValue, !node.isEmpty,
              let address = json["address"]?.stringValue.flatMap(IPAddress.init),
              let block = json["block"]?.stringValue.flatMap(IPPrefix.init) else { return nil }
        if let mac = json["vtepMAC"]?.stringValue, parseMAC(mac) == nil { return nil }
        if let key = json["publicKey"], key.stringValue == nil { return nil }
        var ipv6Block: IPPrefix?, ipv6Address: IPAddress?
        if let value = json["ipv6Block"] {
            guard let prefix = value.stringValue.flatMap(IPPrefix.init) else { return nil }
            ipv6Block = prefix
        }
        if let value = json["ipv6Address"] {
            guard let ip = value.stringValue.flatMap(IPAddress.init) else { return nil }
            ipv6Address = ip
        }
        self.init(node: node, address: address, block: block, ipv6Block: ipv6Block, ipv6Address: ipv6Address,
                  vtepMAC: json["vtepMAC"]?.stringValue, publicKey: json["publicKey"]?.stringValue, since: json["since"]?.intValue ?? 0)
    }

    /// The VTEP address in vxlan mode: the block's first address (as flannel uses).
    public var vtepAddress: IPAddress { block.network.address }
}

/// A failure of the cluster code that a person reads.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Which block a node should try to take, in order: the one it holds in
/// etcd already (a restart within the lease's life), the one it last wrote
/// locally, then every free block of the range from the first.
/// With dual stack each of the cluster's ranges is searched on its own
/// (`range`; the first range when nil).
public func blockCandidates(config: ClusterConfig, node: String, held: [IPPrefix: String],
                            previous: IPPrefix?, range: BlockRange? = nil) -> [IPPrefix] {
    let range = range ?? config.primary
    var out: [IPPrefix] = held.filter { $0.value == node && range.isBlock($0.key) }.map(\.key).sorted { $0.address < $1.address }
    if let previous, range.isBlock(previous), held[previous] == nil || held[previous] == node, !out.contains(previous) {
        out.append(previous)
    }
    // A set, not the list: an IPv6 range has 65,536 blocks, and a search of the list for each would be quadratic.
    var listed = Set(out)
    for i in 0..<range.blockCount {
        let b = range.block(i)
        if held[b] == nil && listed.insert(b).inserted { out.append(b) }
    }
    return out
}

// MARK: Records from etcd are checked before they change anything

/// Why `address` cannot be a node's underlay address, or nil when it can:
/// only a unicast address that is not loopback, multicast, unspecified,
/// link-local, broadcast or reserved, outside the cluster's range, and not
/// this node's own.
public func underlayAddressProblem(_ address: IPAddress, config: ClusterConfig, own: IPAddress?) -> String? {
    if config.mode == .hostGateway && address.family != config.network.family {
        return "\(address) is not an \(config.network.family == .v4 ? "IPv4" : "IPv6") address (host-gw routes a block via an address of its family)"
    }
    if let own, own.family != address.family { return "\(address) is not of the family of this node's underlay address \(own)" }
    return unicastProblem(address, config: config, own: own)
}

/// Why `address` cannot be an underlay address of any node, whatever the
/// mode: not unicast, loopback, link-local and the like, inside one of the
/// cluster's ranges, or this node's own.
public func unicastProblem(_ address: IPAddress, config: ClusterConfig, own: IPAddress?) -> String? {
    let b = address.bytes
    if address.family == .v6 {
        if b.allSatisfy({ $0 == 0 }) { return "\(address) is unspecified" }
        if b.dropLast().allSatisfy({ $0 == 0 }) && b[15] == 1 { return "\(address) is a loopback address" }
        if b[0] == 0xFF { return "\(address) is a multicast address" }
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return "\(address) is a link-local address" }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF { return "\(address) is an IPv4-mapped address" }
        if let range = config.ranges.first(where: { $0.network.contains(address) }) { return "\(address) is inside the cluster range \(range.network)" }
        if address == own { return "\(address) is this node's own address" }
        return nil
    }
    if b[0] == 0 { return "\(address) is unspecified (0.0.0.0/8)" }
    if b[0] == 127 { return "\(address) is a loopback address" }
    if b[0] >= 224 && b[0] < 240 { return "\(address) is a multicast address" }
    if b == [255, 255, 255, 255] { return "\(address) is the broadcast address" }
    if b[0] >= 240 { return "\(address) is a reserved address (240.0.0.0/4)" }
    if b[0] == 169 && b[1] == 254 { return "\(address) is a link-local address" }
    if let range = config.ranges.first(where: { $0.network.contains(address) }) { return "\(address) is inside the cluster range \(range.network)" }
    if address == own { return "\(address) is this node's own address" }
    return nil
}

/// A node record as read from etcd, with the key it was read at.
public struct KeyedRecord: Equatable, Sendable {
    public var key: String
    public var record: NodeRecord
}

/// Which records are peers this node may program, and why the others are not.
/// A record counts only when the block key of its block names its node (the
/// transaction that claimed the block wrote that), its address passes
/// `underlayAddressProblem`, it does not touch this node's own block or VTEP,
/// (vxlan) its VTEP MAC is a unicast MAC no other peer has, and (wireguard)
/// its public key is a key no other peer, nor this node, has. Deterministic:
/// records are judged in key order.
///
/// Dual stack: the record's IPv6 block is judged as its first block (a block
/// of the IPv6 range its block key names, not this node's), it must have one,
/// and in host-gw an IPv6 underlay address too (its next hop); a cluster
/// without an IPv6 range accepts no record that claims an IPv6 block.
public func acceptedPeers(_ records: [KeyedRecord], owners: [IPPrefix: String], config: ClusterConfig, node: String,
                          ownBlock: IPPrefix?, ownAddress: IPAddress?, ownVTEPMAC: String?, ownPublicKey: String? = nil,
                          ownIPv6Block: IPPrefix? = nil, ownIPv6Address: IPAddress? = nil)
    -> (peers: [KeyedRecord], rejected: [(key: String, reason: String)]) {
    var peers: [KeyedRecord] = []
    var rejected: [(key: String, reason: String)] = []
    var macs: [String: String] = [:]
    var keys: [String: String] = [:]
    for item in records.sorted(by: { $0.key < $1.key }) {
        let r = item.record
        if r.node == node { continue }
        func reject(_ reason: String) { rejected.append((item.key, reason)) }
        guard item.key == config.nodeKey(r.node) else { reject("its key does not name node \(r.node)"); continue }
        guard config.primary.isBlock(r.block) else { reject("\(r.block) is not a /\(config.blockLength) block of \(config.network)"); continue }
        let own = [ownBlock, ownIPv6Block].compactMap { $0 }
        if let problem = blockProblem(r.block, of: r.node, owners: owners, own: own) { reject(problem); continue }
        if let secondary = config.secondary {
            guard let b6 = r.ipv6Block else { reject("it has no IPv6 block (cluster \(config.name) is dual-stack)"); continue }
            guard secondary.isBlock(b6) else { reject("\(b6) is not a /\(secondary.blockLength) block of \(secondary.network)"); continue }
            if let problem = blockProblem(b6, of: r.node, owners: owners, own: own) { reject(problem); continue }
        } else if let b6 = r.ipv6Block {
            reject("it claims the IPv6 block \(b6), but cluster \(config.name) has no IPv6 range"); continue
        }
        if let problem = underlayAddressProblem(r.address, config: config, own: ownAddress) { reject(problem); continue }
        if let a6 = r.ipv6Address {
            guard a6.family == .v6 else { reject("its IPv6 address \(a6) is not an IPv6 address"); continue }
            if let problem = unicastProblem(a6, config: config, own: ownIPv6Address) { reject(problem); continue }
        }
        if config.mode == .hostGateway, config.isDualStack, r.ipv6Address == nil {
            reject("it has no IPv6 underlay address (host-gw routes its IPv6 block via one)"); continue
        }
        if config.mode == .vxlan {
            guard let mac = r.vtepMAC, let bytes = parseMAC(mac) else { reject("it has no VTEP MAC (vxlan mode)"); continue }
            let normal = mac.lowercased()
            if bytes[0] & 1 == 1 || bytes.allSatisfy({ $0 == 0 }) { reject("VTEP MAC \(mac) is not a unicast MAC"); continue }
            if let ownVTEPMAC, ownVTEPMAC.lowercased() == normal { reject("VTEP MAC \(mac) is this node's own"); continue }
            if let other = macs[normal] { reject("VTEP MAC \(mac) is node \(other)'s too"); continue }
            macs[normal] = r.node
        }
        if config.mode == .wireguard {
            guard let key = r.publicKey else { reject("it has no WireGuard public key (wireguard mode)"); continue }
            guard let bytes = WireGuardKey.bytes(base64: key) else { reject("its WireGuard public key is not 32 bytes of base64"); continue }
            if bytes.allSatisfy({ $0 == 0 }) { reject("its WireGuard public key is all zeros"); continue }
            if let ownPublicKey, ownPublicKey == key { reject("its WireGuard public key is this node's own"); continue }
            if let other = keys[key] { reject("its WireGuard public key is node \(other)'s too"); continue }
            keys[key] = r.node
        }
        peers.append(item)
    }
    return (peers, rejected)
}

/// Why `block` cannot be `node`'s: it overlaps one of this node's own
/// blocks, or no block key names `node` for it.
func blockProblem(_ block: IPPrefix, of node: String, owners: [IPPrefix: String], own: [IPPrefix]) -> String? {
    if own.contains(where: { $0.overlaps(block) }) { return "it claims \(block), this node's own block" }
    switch owners[block] {
    case nil: return "no block key claims \(block) for it"
    case let owner? where owner != node: return "block \(block) is held by node \(owner)"
    default: return nil
    }
}

/// Bytes from outside (an etcd value) as one printable line for the log:
/// control characters and non-UTF-8 escaped, cut once about `limit`
/// characters are written, with the whole length said.
public func escapedForLog(_ bytes: [UInt8], limit: Int = 160) -> String {
    var out = ""
    var count = 0, written = 0  // scalars read, characters written
    let text = String(decoding: bytes.prefix(limit * 4), as: UTF8.self)
    for scalar in text.unicodeScalars {
        if count >= limit || written >= limit {
            out += "... (\(bytes.count) bytes)"
            return out
        }
        switch scalar {
        case "\\": out += "\\\\"; written += 2
        case "\n": out += "\\n"; written += 2
        case "\t": out += "\\t"; written += 2
        case "\r": out += "\\r"; written += 2
        case "\u{FFFD}": out += "\\uFFFD"; written += 6
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value)
                || scalar.properties.generalCategory == .format || scalar.properties.generalCategory == .lineSeparator
                || scalar.properties.generalCategory == .paragraphSeparator {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                written += 2 + max(4, hex.count)
            } else {
                out.unicodeScalars.append(scalar)
                written += 1
            }
        }
        count += 1
    }
    if bytes.count > limit * 4 { out += "... (\(bytes.count) bytes)" }
    return out
}
