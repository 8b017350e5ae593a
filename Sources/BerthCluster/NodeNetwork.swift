import BerthCNI
import BerthNetlink
import BerthSystem

/// The node's kernel side of a cluster network: IPv4 forwarding, in vxlan
/// mode the VXLAN device, and for every other node the route to its block
/// (and in vxlan mode the neighbour and FDB entries of its VTEP). `sync`
/// makes the kernel match a set of peers by difference, so a restart or a
/// resynchronisation changes nothing that is already right.
public final class NodeNetwork {
    public let config: ClusterConfig
    let socket: RouteSocket
    let log: (String) -> Void
    /// The VXLAN device (vxlan mode).
    public private(set) var device: LinkInfo?
    /// The MTU the node's pods should use: the underlay's, less VXLAN's 50 bytes in vxlan mode.
    public let podMTU: Int

    /// The VXLAN device's name for VNI `vni`.
    public static func deviceName(vni: Int) -> String { "berthvx\(vni)" }

    public init(config: ClusterConfig, address: IPAddress, log: @escaping (String) -> Void) throws {
        self.config = config
        self.log = log
        socket = try RouteSocket()
        try Sysctl.ensure("net.ipv4.ip_forward", is: "1")
        guard let underlay = try socket.link(holding: address) else {
            throw ClusterError("no interface of this node has the address \(address)")
        }
        switch config.mode {
        case .hostGateway:
            podMTU = underlay.mtu
        case .vxlan:
            podMTU = underlay.mtu - 50
            let name = NodeNetwork.deviceName(vni: config.vni)
            if let existing = try socket.link(named: name) {
                guard existing.kind == "vxlan" else { throw ClusterError("\(name) exists and is not a VXLAN device") }
                device = existing
            } else {
                try socket.createVXLAN(name: name, vni: UInt32(config.vni), local: address, underlay: underlay,
                                       port: UInt16(config.port), mac: randomLocalMAC(), mtu: podMTU)
                device = try socket.link(named: name)
                log("created VXLAN device \(name) (VNI \(config.vni), UDP \(config.port), over \(underlay.name))")
            }
        }
    }

    /// The VXLAN device's MAC, published for the other nodes.
    public var vtepMAC: String? { device?.mac }

    /// The block this node holds: no peer's route, neighbour or FDB entry may touch it.
    public private(set) var ownBlock: IPPrefix?

    /// In vxlan mode, gives the device the node's VTEP address (its block's first address).
    public func holdBlock(_ block: IPPrefix) throws {
        ownBlock = block
        guard let device else { return }
        let vtep = IPPrefix(address: block.network.address, prefixLength: 32)!
        do {
            try socket.addAddress(vtep, to: device)
        } catch {
            if !error.isExists { throw error }
        }
    }

    /// The routing protocol number of the agent's routes, so that it finds
    /// exactly its own again (`ip route show proto 77`).
    public static let routeProtocol: UInt8 = 77

    /// The key under which `sync` reports failures to remove what no peer needs.
    public static let staleEntries = ""

    /// What one peer needs in the kernel.
    struct PeerEntries {
        var route: GatewayRoute
        var neighbour: OverlayEntry?
        var forwarding: OverlayEntry?
    }

    func entries(of p: NodeRecord) -> PeerEntries? {
        switch config.mode {
        case .hostGateway:
            return PeerEntries(route: GatewayRoute(destination: p.block, gateway: p.address))
        case .vxlan:
            guard let device, let mac = p.vtepMAC else { return nil }
            return PeerEntries(route: GatewayRoute(destination: p.block, gateway: p.vtepAddress, outputIndex: device.index),
                               neighbour: OverlayEntry(address: p.vtepAddress, mac: mac),
                               forwarding: OverlayEntry(address: p.address, mac: mac))
        }
    }

    /// Makes the kernel hold exactly what `peers` (every other node) need,
    /// by difference. Each peer is applied on its own: one that fails (the
    /// kernel refuses its route, say) is returned with the reason, by node,
    /// and holds back no other. A peer whose block overlaps this node's own
    /// is never applied. Throws only when the kernel's state cannot be read.
    @discardableResult
    public func sync(peers: [NodeRecord]) throws -> [String: String] {
        var failures: [String: String] = [:]
        var want: [(node: String, entries: PeerEntries)] = []
        for p in peers.sorted(by: { $0.node < $1.node }) {
            if let ownBlock, ownBlock.overlaps(p.block) {
                failures[p.node] = "its block \(p.block) is this node's own"
                continue
            }
            if let e = entries(of: p) { want.append((p.node, e)) }
        }
        let routes = Set(want.map(\.entries.route))
        let neighbours = Set(want.compactMap(\.entries.neighbour))
        let forwarding = Set(want.compactMap(\.entries.forwarding))
        let haveRoutes = Set(try socket.routes(owner: NodeNetwork.routeProtocol))
        var haveNeighbours = Set<OverlayEntry>(), haveForwarding = Set<OverlayEntry>()
        if let device {
            haveForwarding = Set(try socket.entries(on: device, forwarding: true))
            haveNeighbours = Set(try socket.entries(on: device, forwarding: false))
        }
        // What no peer needs any more goes first: routes, then their entries.
        for route in haveRoutes.subtracting(routes) {
            attempt("route \(route)", into: &failures, node: NodeNetwork.staleEntries) { try self.socket.deleteRoute(route, owner: NodeNetwork.routeProtocol) }
        }
        if let device {
            for entry in haveNeighbours.subtracting(neighbours) {
                attempt("neighbour \(entry.address) -> \(entry.mac)", into: &failures, node: NodeNetwork.staleEntries) {
                    try self.socket.deleteEntry(entry, on: device, forwarding: false)
                }
            }
            for entry in haveForwarding.subtracting(forwarding) {
                attempt("forwarding entry \(entry.mac) -> \(entry.address)", into: &failures, node: NodeNetwork.staleEntries) {
                    try self.socket.deleteEntry(entry, on: device, forwarding: true)
                }
            }
        }
        // Then each peer: its entries before its route (a route through the
        // device must find its neighbour); a failure stops only that peer.
        for (node, e) in want {
            do {
                if let device, let f = e.forwarding, !haveForwarding.contains(f) {
                    try socket.replaceEntry(f, on: device, forwarding: true)
                    log("added forwarding entry \(f.mac) -> \(f.address) (node \(node))")
                }
                if let device, let n = e.neighbour, !haveNeighbours.contains(n) {
                    try socket.replaceEntry(n, on: device, forwarding: false)
                    log("added neighbour \(n.address) -> \(n.mac) (node \(node))")
                }
                if !haveRoutes.contains(e.route) {
                    try socket.replaceRoute(e.route, owner: NodeNetwork.routeProtocol)
                    log("added route \(e.route) (node \(node))")
                }
            } catch {
                failures[node] = "\(error)"
            }
        }
        return failures
    }

    private func attempt(_ what: String, into failures: inout [String: String], node: String, _ body: () throws -> Void) {
        do {
            try body()
            log("removed \(what)")
        } catch {
            failures[node, default: ""] += (failures[node] == nil ? "" : "; ") + "remove \(what): \(error)"
        }
    }

    /// Removes everything the agent programmed on this node: its routes,
    /// and in vxlan mode the VXLAN device with its entries (a node leaving).
    public func teardown() {
        for route in (try? socket.routes(owner: NodeNetwork.routeProtocol)) ?? [] { try? socket.deleteRoute(route, owner: NodeNetwork.routeProtocol) }
        if let device { _ = try? socket.deleteLink(named: device.name) }
        device = nil
        ownBlock = nil
    }
}
