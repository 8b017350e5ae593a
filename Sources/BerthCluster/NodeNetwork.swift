import Foundation
import BerthNetlink
import BerthSystem
import BerthNet

/// The node's kernel side of a cluster network, one backend per mode:
/// `HostGatewayBackend` (a route per peer's block via its address) and
/// `VXLANBackend` (a VXLAN device, and per peer a route through it, a
/// neighbour and an FDB entry). Each owns its device, its peers and its
/// MTU; `PeerProgrammer` does what they share: making the kernel match a
/// set of peers by difference, so a restart or a resynchronisation changes
/// nothing that is already right.
public enum NodeNetwork {
    /// The backend of `config`'s mode on this node, whose underlay address is `address`.
    /// `node` and `stateDirectory` name what a mode keeps (wireguard: its device and key).
    /// `ipv6Address` is the node's IPv6 underlay address, which host-gw needs in a dual-stack cluster.
    public static func backend(for config: ClusterConfig, address: IPAddress, ipv6Address: IPAddress? = nil, node: String, stateDirectory: String,
                               log: @escaping (String) -> Void) throws -> any NodeBackend {
        switch config.mode {
        case .hostGateway: return try HostGatewayBackend(config: config, address: address, ipv6Address: ipv6Address, log: log)
        case .vxlan: return try VXLANBackend(config: config, address: address, log: log)
        case .wireguard:
            return try WireGuardBackend(config: config, address: address, node: node, stateDirectory: stateDirectory, log: log)
        }
    }

    /// The VXLAN device's name for VNI `vni`.
    public static func deviceName(vni: Int) -> String { "berthvx\(vni)" }

    /// The routing protocol number of the agent's routes, so that it finds
    /// exactly its own again (`ip route show proto 77`).
    public static let routeProtocol: UInt8 = 77

    /// The key under which `sync` reports failures to remove what no peer needs.
    public static let staleEntries = ""

    /// A socket on this node with IPv4 forwarding on, and the underlay link holding `address`.
    static func underlay(_ address: IPAddress) throws -> (RouteSocket, LinkInfo) {
        let socket = try RouteSocket()
        try Sysctl.ensure("net.ipv4.ip_forward", is: "1")
        // IPv6 blocks are routed too (a v6 range, or a v6 underlay).
        if FileManager.default.fileExists(atPath: "/proc/sys/net/ipv6/conf/all/forwarding") {
            try Sysctl.ensure("net.ipv6.conf.all.forwarding", is: "1")
        }
        guard let underlay = try socket.link(holding: address) else {
            throw ClusterError("no interface of this node has the address \(address)")
        }
        return (socket, underlay)
    }
}

/// What one peer needs in the kernel: a route per block (two with dual
/// stack), and through a device a neighbour entry per VTEP address and an
/// FDB entry.
struct PeerEntries {
    var routes: [GatewayRoute]
    var neighbours: [OverlayEntry] = []
    var forwarding: OverlayEntry?
}

/// host-gw: a route `BLOCK via ADDRESS` per peer (the nodes share an L2
/// segment); with dual stack, also `IPV6BLOCK via IPV6ADDRESS`.
final class HostGatewayBackend: NodeBackend {
    let programmer: PeerProgrammer
    let podMTU: Int
    var vtepMAC: String? { nil }

    init(config: ClusterConfig, address: IPAddress, ipv6Address: IPAddress?, log: @escaping (String) -> Void) throws {
        let (socket, underlay) = try NodeNetwork.underlay(address)
        if config.isDualStack {
            guard let ipv6Address else {
                throw ClusterError("cluster \(config.name) is dual-stack in host-gw mode: give this node's IPv6 underlay address too (--ipv6-address), the next hop of its IPv6 block")
            }
            guard ipv6Address.family == .v6 else { throw ClusterError("--ipv6-address \(ipv6Address) is not an IPv6 address") }
            guard try socket.link(holding: ipv6Address) != nil else { throw ClusterError("no interface of this node has the address \(ipv6Address) (--ipv6-address)") }
        }
        podMTU = underlay.mtu
        programmer = PeerProgrammer(socket: socket, device: nil, log: log)
    }

    func holdBlock(_ block: IPPrefix) throws { try programmer.hold(block) }

    func sync(peers: [NodeRecord]) throws -> [String: String] {
        try programmer.sync(peers) { p in
            // Each block via the peer's underlay address of its family.
            PeerEntries(routes: p.blocks.compactMap { block in
                [p.address, p.ipv6Address].compactMap { $0 }.first { $0.family == block.family }
                    .map { GatewayRoute(destination: block, gateway: $0) }
            })
        }
    }

    func teardown() { programmer.removeRoutes() }
    var changesMade: Int { programmer.changes }
    func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor? { try programmer.monitor(onChange) }
}

/// vxlan: a device `berthvxVNI` (no learning, the block's first address as
/// the VTEP) and per peer a route through it, onlink, a permanent neighbour
/// entry VTEP -> MAC and an FDB entry MAC -> underlay address. Pods get the
/// underlay's MTU less VXLAN's 50 bytes.
final class VXLANBackend: NodeBackend {
    let programmer: PeerProgrammer
    let device: LinkInfo
    let podMTU: Int
    var vtepMAC: String? { device.mac }

    init(config: ClusterConfig, address: IPAddress, log: @escaping (String) -> Void) throws {
        let (socket, underlay) = try NodeNetwork.underlay(address)
        // VXLAN's overhead: 50 bytes over IPv4 (20 IP + 8 UDP + 8 VXLAN + 14 Ethernet), 70 over IPv6.
        podMTU = underlay.mtu - (address.family == .v4 ? 50 : 70)
        let name = NodeNetwork.deviceName(vni: config.vni)
        if let existing = try socket.link(named: name) {
            guard existing.kind == "vxlan" else { throw ClusterError("\(name) exists and is not a VXLAN device") }
            device = existing
        } else {
            try socket.createVXLAN(name: name, vni: UInt32(config.vni), local: address, underlay: underlay,
                                   port: UInt16(config.port), mac: randomLocalMAC(), mtu: podMTU)
            guard let made = try socket.link(named: name) else { throw ClusterError("the VXLAN device \(name) vanished once made") }
            device = made
            log("created VXLAN device \(name) (VNI \(config.vni), UDP \(config.port), over \(underlay.name))")
        }
        programmer = PeerProgrammer(socket: socket, device: device, log: log)
    }

    /// Gives the device the node's VTEP address of `block` (its first address).
    func holdBlock(_ block: IPPrefix) throws { try programmer.hold(block, addressOn: device) }

    /// Per peer a route per block via that block's first address (its VTEP
    /// address of the family) onlink, a neighbour entry for each VTEP
    /// address, and one FDB entry: IPv4 and IPv6 pods share the device.
    func sync(peers: [NodeRecord]) throws -> [String: String] {
        let device = self.device
        return try programmer.sync(peers) { p in
            guard let mac = p.vtepMAC else { return nil }
            return PeerEntries(routes: p.blocks.map { GatewayRoute(destination: $0, gateway: $0.network.address, outputIndex: device.index) },
                               neighbours: p.blocks.map { OverlayEntry(address: $0.network.address, mac: mac) },
                               forwarding: OverlayEntry(address: p.address, mac: mac))
        }
    }

    func teardown() {
        programmer.removeRoutes()
        _ = try? programmer.socket.deleteLink(named: device.name)
    }

    var changesMade: Int { programmer.changes }
    func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor? { try programmer.monitor(onChange) }
}

/// Programs peers by difference for a backend: its routes (protocol
/// `NodeNetwork.routeProtocol`) and, with a device, that device's permanent
/// neighbour and FDB entries.
final class PeerProgrammer {
    let socket: RouteSocket
    let device: LinkInfo?
    let log: (String) -> Void
    /// The blocks this node holds: no peer's route, neighbour or FDB entry may touch them.
    private(set) var ownBlocks: [IPPrefix] = []
    let metrics = AgentMetrics()
    /// Routes and entries added or removed so far.
    private(set) var changes = 0

    init(socket: RouteSocket, device: LinkInfo?, log: @escaping (String) -> Void) {
        self.socket = socket
        self.device = device
        self.log = log
    }

    /// Takes `block` as this node's own; with `device`, puts the block's
    /// first address on it (a VTEP address, a WireGuard device's address).
    func hold(_ block: IPPrefix, addressOn device: LinkInfo? = nil) throws {
        ownBlocks.removeAll { $0.family == block.family }
        ownBlocks.append(block)
        guard let device else { return }
        do {
            try socket.addAddress(IPPrefix(address: block.network.address, prefixLength: block.family == .v4 ? 32 : 128)!, to: device)
        } catch {
            if !error.isExists { throw error }
        }
    }

    /// Whether `block` overlaps one of this node's own blocks.
    func isOwn(_ block: IPPrefix) -> Bool { ownBlocks.contains { $0.overlaps(block) } }

    /// Watches this node's routes (the agent's protocol) and the device's
    /// neighbour and FDB entries; what this programmer's own socket does is not told.
    func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor {
        try RouteMonitor(routeProtocol: NodeNetwork.routeProtocol, ifindex: device?.index, ignoringPort: socket.localPort, onChange: onChange)
    }

    /// Makes the kernel hold exactly what `peers` (every other node) need,
    /// by difference. Each peer is applied on its own: one that fails (the
    /// kernel refuses its route, say) is returned with the reason, by node,
    /// and holds back no other. A peer whose block overlaps this node's own
    /// is never applied. Throws only when the kernel's state cannot be read.
    func sync(_ peers: [NodeRecord], entries: (NodeRecord) -> PeerEntries?) throws -> [String: String] {
        var failures: [String: String] = [:]
        var want: [(node: String, entries: PeerEntries)] = []
        for p in peers.sorted(by: { $0.node < $1.node }) {
            if let own = p.blocks.first(where: isOwn) {
                failures[p.node] = "its block \(own) is this node's own"
                continue
            }
            if let e = entries(p) { want.append((p.node, e)) }
        }
        let routes = Set(want.flatMap(\.entries.routes))
        let neighbours = Set(want.flatMap(\.entries.neighbours))
        let forwarding = Set(want.compactMap(\.entries.forwarding))
        let haveRoutes = Set(try socket.routes(owner: NodeNetwork.routeProtocol))
        var haveNeighbours = Set<OverlayEntry>(), haveForwarding = Set<OverlayEntry>()
        if let device {
            haveForwarding = Set(try socket.entries(on: device, forwarding: true))
            haveNeighbours = Set(try socket.entries(on: device, forwarding: false))
        }
        // What no peer needs any more goes first: routes, then their entries.
        for route in haveRoutes.subtracting(routes) {
            attempt("route \(route)", kind: "route", into: &failures, node: NodeNetwork.staleEntries) { try self.socket.deleteRoute(route, owner: NodeNetwork.routeProtocol) }
        }
        if let device {
            for entry in haveNeighbours.subtracting(neighbours) {
                attempt("neighbour \(entry.address) -> \(entry.mac)", kind: "neighbour", into: &failures, node: NodeNetwork.staleEntries) {
                    try self.socket.deleteEntry(entry, on: device, forwarding: false)
                }
            }
            for entry in haveForwarding.subtracting(forwarding) {
                attempt("forwarding entry \(entry.mac) -> \(entry.address)", kind: "fdb", into: &failures, node: NodeNetwork.staleEntries) {
                    try self.socket.deleteEntry(entry, on: device, forwarding: true)
                }
            }
        }
        var held = (routes: haveRoutes.intersection(routes).count, neighbours: haveNeighbours.intersection(neighbours).count,
                    fdb: haveForwarding.intersection(forwarding).count)
        // Then each peer: its entries before its route (a route through the
        // device must find its neighbour); a failure stops only that peer.
        for (node, e) in want {
            do {
                if let device, let f = e.forwarding, !haveForwarding.contains(f) {
                    try socket.replaceEntry(f, on: device, forwarding: true)
                    log("added forwarding entry \(f.mac) -> \(f.address) (node \(node))")
                    metrics.kernelChanges("fdb", "added").increment()
                    changes += 1
                    held.fdb += 1
                }
                if let device {
                    for n in e.neighbours where !haveNeighbours.contains(n) {
                        try socket.replaceEntry(n, on: device, forwarding: false)
                        log("added neighbour \(n.address) -> \(n.mac) (node \(node))")
                        metrics.kernelChanges("neighbour", "added").increment()
                        changes += 1
                        held.neighbours += 1
                    }
                }
                for route in e.routes where !haveRoutes.contains(route) {
                    try socket.replaceRoute(route, owner: NodeNetwork.routeProtocol)
                    log("added route \(route) (node \(node))")
                    metrics.kernelChanges("route", "added").increment()
                    changes += 1
                    held.routes += 1
                }
            } catch {
                failures[node] = "\(error)"
            }
        }
        metrics.programmed("route").record(held.routes)
        if device != nil {
            metrics.programmed("neighbour").record(held.neighbours)
            metrics.programmed("fdb").record(held.fdb)
        }
        return failures
    }

    private func attempt(_ what: String, kind: String, into failures: inout [String: String], node: String, _ body: () throws -> Void) {
        do {
            try body()
            log("removed \(what)")
            metrics.kernelChanges(kind, "removed").increment()
            changes += 1
        } catch {
            failures[node, default: ""] += (failures[node] == nil ? "" : "; ") + "remove \(what): \(error)"
        }
    }

    /// Removes every route of the agent's on this node.
    func removeRoutes() {
        for route in (try? socket.routes(owner: NodeNetwork.routeProtocol)) ?? [] {
            try? socket.deleteRoute(route, owner: NodeNetwork.routeProtocol)
        }
    }
}
