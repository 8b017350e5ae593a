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

    /// In vxlan mode, gives the device the node's VTEP address (its block's first address).
    public func holdBlock(_ block: IPPrefix) throws {
        guard let device else { return }
        let vtep = IPPrefix(address: block.network.address, prefixLength: 32)!
        do {
            try socket.addAddress(vtep, to: device)
        } catch {
            if !error.isExists { throw error }
        }
    }

    /// Makes the kernel hold exactly what `peers` (every other node) need.
    public func sync(peers: [NodeRecord]) throws {
        var routes: [NodeRoute: String] = [:]
        var neighbours: [OverlayEntry: String] = [:]
        var forwarding: [OverlayEntry: String] = [:]
        for p in peers {
            switch config.mode {
            case .hostGateway:
                routes[NodeRoute(destination: p.block, gateway: p.address)] = p.node
            case .vxlan:
                guard let device, let mac = p.vtepMAC else { continue }
                routes[NodeRoute(destination: p.block, gateway: p.vtepAddress, outputIndex: device.index)] = p.node
                neighbours[OverlayEntry(address: p.vtepAddress, mac: mac)] = p.node
                forwarding[OverlayEntry(address: p.address, mac: mac)] = p.node
            }
        }
        if let device {
            // Entries before routes: a route through the device must find its neighbour.
            try reconcile(have: Set(try socket.entries(on: device, forwarding: true)), want: forwarding,
                          add: { try self.socket.replaceEntry($0, on: device, forwarding: true) },
                          remove: { try self.socket.deleteEntry($0, on: device, forwarding: true) },
                          what: { "forwarding entry \($0.mac) -> \($0.address)" })
            try reconcile(have: Set(try socket.entries(on: device, forwarding: false)), want: neighbours,
                          add: { try self.socket.replaceEntry($0, on: device, forwarding: false) },
                          remove: { try self.socket.deleteEntry($0, on: device, forwarding: false) },
                          what: { "neighbour \($0.address) -> \($0.mac)" })
        }
        try reconcile(have: Set(try socket.nodeRoutes()), want: routes,
                      add: { try self.socket.replaceNodeRoute($0) }, remove: { try self.socket.deleteNodeRoute($0) },
                      what: { "route \($0)" })
    }

    private func reconcile<T: Hashable>(have: Set<T>, want: [T: String], add: (T) throws -> Void,
                                        remove: (T) throws -> Void, what: (T) -> String) throws {
        for item in have where want[item] == nil {
            try remove(item)
            log("removed \(what(item))")
        }
        for (item, node) in want where !have.contains(item) {
            try add(item)
            log("added \(what(item)) (node \(node))")
        }
    }
}
