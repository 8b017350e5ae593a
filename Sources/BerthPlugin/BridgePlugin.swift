import BerthCNI
import BerthNetlink
import BerthSystem

/// One invocation of the `berth` plugin for one container: ADD, DEL or CHECK.
///
/// Everything runs synchronously on the main thread. The container's
/// namespace is entered only for the instant a netlink socket is opened in it
/// (`RouteSocket.opened(in:)`); all later work goes through that socket.
struct BridgeOperation {
    let config: BridgeConfig
    let env: CNIEnvironment
    let ipam: IPAMBackend?

    /// The index of the container interface in the result's `interfaces`.
    static let containerInterfaceIndex = 2

    init(config: BridgeConfig, invocation: PluginInvocation) throws(CNIError) {
        self.config = config
        env = invocation.env
        switch config.network.ipamType {
        case nil:
            ipam = nil
        case InProcessIPAM.type?:
            ipam = try InProcessIPAM(invocation: invocation)
        case let type?:
            ipam = DelegatedIPAM(plugin: DelegatedPlugin(type: type, searchPath: env.path,
                                                         environment: invocation.processEnvironment,
                                                         stdin: invocation.input))
        }
    }

    // MARK: ADD

    func add() throws(CNIError) -> CNIResult {
        let netns = try openNamespace(required: true)!
        let host = try kernel("open a netlink socket") { () throws(NetlinkError) in try RouteSocket() }
        let container = try kernel("open a netlink socket in \(env.netns)") { () throws(NetlinkError) in
            try RouteSocket.opened(in: netns)
        }
        if try kernel("look up \(env.ifname)", { () throws(NetlinkError) in try container.link(named: env.ifname) }) != nil {
            throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
        }
        let bridge = try ensureBridge(host)

        let ipamResult = try ipam?.add() ?? CNIResult()
        do {
            return try wire(ipamResult, host: host, container: container, netns: netns, bridge: bridge)
        } catch {
            try? ipam?.del()
            throw error
        }
    }

    /// Makes the veth, applies the IPAM result and builds the plugin's result.
    /// Removes the veth again if a later step fails.
    private func wire(_ ipamResult: CNIResult, host: RouteSocket, container: RouteSocket,
                      netns: NetworkNamespace, bridge: LinkInfo) throws(CNIError) -> CNIResult {
        let hostName = try createVeth(host: host, container: container, netns: netns, bridge: bridge)
        do {
            return try configure(ipamResult, hostName: hostName, host: host, container: container, bridge: bridge)
        } catch {
            _ = try? container.deleteLink(named: env.ifname)
            _ = try? host.deleteLink(named: hostName)
            throw error
        }
    }

    private func configure(_ ipamResult: CNIResult, hostName: String, host: RouteSocket, container: RouteSocket,
                           bridge: LinkInfo) throws(CNIError) -> CNIResult {
        guard let inside = try kernel("look up \(env.ifname)", { () throws(NetlinkError) in
            try container.link(named: env.ifname)
        }) else {
            throw CNIError(.ioFailure, "the veth end \(env.ifname) vanished from \(env.netns) right after it was made")
        }
        guard let outside = try kernel("look up \(hostName)", { () throws(NetlinkError) in try host.link(named: hostName) })
        else {
            throw CNIError(.ioFailure, "the veth end \(hostName) vanished right after it was made")
        }

        var result = CNIResult(interfaces: [
            .init(name: bridge.name, mac: bridge.mac, mtu: config.mtu),
            .init(name: outside.name, mac: outside.mac, mtu: config.mtu),
            .init(name: inside.name, mac: inside.mac, mtu: config.mtu, sandbox: env.netns),
        ])
        let plan = AddressPlan(ipamResult: ipamResult, isGateway: config.isGateway,
                               isDefaultGateway: config.isDefaultGateway,
                               interfaceIndex: BridgeOperation.containerInterfaceIndex)
        result.ips = plan.ips
        result.routes = plan.routes
        result.dns = config.network.dns.isEmpty ? ipamResult.dns : config.network.dns

        for ip in plan.ips {
            try kernel("add \(ip.address) to \(env.ifname)") { () throws(NetlinkError) in
                try container.addAddress(ip.address, index: inside.index)
            }
        }
        try kernel("bring up \(env.ifname)") { () throws(NetlinkError) in try container.setUp(index: inside.index) }
        for route in plan.installedRoutes {
            try kernel("add route \(route.dst) in \(env.netns)") { () throws(NetlinkError) in
                try container.addRoute(route, outputIndex: inside.index)
            }
        }
        for gateway in plan.bridgeAddresses {
            do {
                try host.addAddress(gateway, index: bridge.index)
            } catch let e where e.isExists {
                // Another container on this bridge gave it the address first.
            } catch {
                throw CNIError(.ioFailure, "give bridge \(bridge.name) the gateway address \(gateway): \(error)")
            }
        }
        return result
    }

    /// Creates the bridge if missing (many ADDs may race to do it) and brings it up.
    private func ensureBridge(_ host: RouteSocket) throws(CNIError) -> LinkInfo {
        let name = config.bridge
        var existing = try kernel("look up bridge \(name)") { () throws(NetlinkError) in try host.link(named: name) }
        if existing == nil {
            do {
                try host.createBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
            } catch let e where e.isExists {
                // Created by a concurrent ADD between our look-up and our request.
            } catch {
                throw CNIError(.ioFailure, "create bridge \(name): \(error)")
            }
            existing = try kernel("look up bridge \(name)") { () throws(NetlinkError) in try host.link(named: name) }
        }
        guard let bridge = existing else {
            throw CNIError(.ioFailure, "bridge \(name) disappeared while it was being set up")
        }
        guard bridge.kind == "bridge" else {
            let kind = bridge.kind.isEmpty ? "a device without a link kind" : "a \(bridge.kind)"
            throw CNIError(.invalidNetworkConfig, "field \"bridge\": \(name) exists and is \(kind), not a bridge")
        }
        if !bridge.isUp {
            try kernel("bring up bridge \(name)") { () throws(NetlinkError) in try host.setUp(index: bridge.index) }
        }
        return bridge
    }

    /// Creates the veth pair; returns the host end's name. Host names are
    /// `veth` + 8 random hex digits, drawn again if taken.
    private func createVeth(host: RouteSocket, container: RouteSocket, netns: NetworkNamespace,
                            bridge: LinkInfo) throws(CNIError) -> String {
        var lastError: NetlinkError?
        for _ in 0..<8 {
            let hostName = randomVethName()
            do {
                try host.createVethPair(
                    host: VethEnd(name: hostName, mtu: config.mtu),
                    master: bridge.index,
                    // Up at creation is refused (ENOTCONN) for an end made in another
                    // namespace: it is brought up once its addresses are on.
                    peer: VethEnd(name: env.ifname, mtu: config.mtu, up: false),
                    peerNamespace: netns)
                return hostName
            } catch let e where e.isExists {
                lastError = e
                if (try? container.link(named: env.ifname)) != nil {
                    throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
                }
            } catch {
                throw CNIError(.ioFailure, "\(error)")
            }
        }
        throw CNIError(.tryAgainLater, "could not find a free host veth name: \(lastError.map { "\($0)" } ?? "")")
    }

    // MARK: DEL

    func del() throws(CNIError) {
        try ipam?.del()
        guard let netns = try openNamespace(required: false) else { return }
        let container = try kernel("open a netlink socket in \(env.netns)") { () throws(NetlinkError) in
            try RouteSocket.opened(in: netns)
        }
        try kernel("delete \(env.ifname) in \(env.netns)") { () throws(NetlinkError) in
            try container.deleteLink(named: env.ifname)
        }
    }

    // MARK: CHECK

    func check() throws(CNIError) {
        guard let prevJSON = config.network.prevResult else {
            throw CNIError(.invalidNetworkConfig, "field \"prevResult\": is required for CHECK")
        }
        let prev = try CNIResult(json: prevJSON, field: "prevResult", code: .invalidNetworkConfig)
        try ipam?.check()

        let netns = try openNamespace(required: true)!
        let container = try kernel("open a netlink socket in \(env.netns)") { () throws(NetlinkError) in
            try RouteSocket.opened(in: netns)
        }
        let host = try kernel("open a netlink socket") { () throws(NetlinkError) in try RouteSocket() }

        guard let expectedIndex = prev.interfaces.firstIndex(where: { $0.name == env.ifname && !$0.sandbox.isEmpty })
        else {
            throw CNIError(.checkFailed, "prevResult lists no interface \(env.ifname) inside a sandbox")
        }
        let expected = prev.interfaces[expectedIndex]
        guard let inside = try kernel("look up \(env.ifname)", { () throws(NetlinkError) in
            try container.link(named: env.ifname)
        }) else {
            throw CNIError(.checkFailed, "interface \(env.ifname) is missing from \(env.netns)")
        }
        if !expected.mac.isEmpty && expected.mac.lowercased() != inside.mac {
            throw CNIError(.checkFailed, "interface \(env.ifname) has MAC \(inside.mac), prevResult says \(expected.mac)")
        }
        if !inside.isUp {
            throw CNIError(.checkFailed, "interface \(env.ifname) in \(env.netns) is down")
        }
        let addresses = try kernel("list addresses in \(env.netns)") { () throws(NetlinkError) in
            try container.addresses(index: inside.index)
        }
        for ip in prev.ips where ip.interface == nil || ip.interface == expectedIndex {
            if !addresses.contains(ip.address) {
                throw CNIError(.checkFailed, "address \(ip.address) is missing from \(env.ifname) in \(env.netns)")
            }
        }
        let routes = try kernel("list routes in \(env.netns)") { () throws(NetlinkError) in
            try container.routes(index: inside.index)
        }
        for route in prev.routes {
            let found = routes.contains { $0.dst == route.dst.network && (route.gw == nil || $0.gateway == route.gw) }
            if !found {
                let via = route.gw.map { " via \($0)" } ?? ""
                throw CNIError(.checkFailed, "route \(route.dst)\(via) is missing from \(env.netns)")
            }
        }

        guard let bridge = try kernel("look up bridge", { () throws(NetlinkError) in try host.link(named: config.bridge) }),
              bridge.kind == "bridge" else {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is missing")
        }
        for iface in prev.interfaces where iface.sandbox.isEmpty && iface.name != config.bridge {
            guard let outside = try kernel("look up \(iface.name)", { () throws(NetlinkError) in
                try host.link(named: iface.name)
            }) else {
                throw CNIError(.checkFailed, "host veth \(iface.name) is missing")
            }
            if outside.master != bridge.index {
                throw CNIError(.checkFailed, "host veth \(iface.name) is not attached to bridge \(config.bridge)")
            }
        }
    }

    // MARK: GC and STATUS

    /// GC: the IPAM releases every allocation not in the valid list. The
    /// bridge plugin itself keeps nothing per container outside the
    /// container's namespace, which goes away with it.
    func gc() throws(CNIError) {
        try ipam?.gc()
    }

    /// STATUS: ready when the IPAM could hand out an address.
    func status() throws(CNIError) {
        try ipam?.status()
    }

    // MARK: Helpers

    /// Opens CNI_NETNS. Missing or not a network namespace is an error 4 on
    /// ADD and CHECK; on DEL it means there is nothing left to remove (nil).
    /// The host's own namespace is refused: a plugin must not turn the host
    /// into a container, nor delete the host's interfaces on DEL.
    private func openNamespace(required: Bool) throws(CNIError) -> NetworkNamespace? {
        if env.netns.isEmpty { return nil }
        let netns: NetworkNamespace
        do {
            netns = try NetworkNamespace(path: env.netns)
        } catch {
            switch error {
            case .missing, .notANetworkNamespace:
                if !required { return nil }
                throw CNIError(.invalidEnvironment, "CNI_NETNS: \(error)")
            case .system(let e):
                throw CNIError(.ioFailure, "CNI_NETNS: \(e)")
            }
        }
        let isHost: Bool
        do {
            isHost = try netns.isCurrentThreadNamespace()
        } catch {
            throw CNIError(.ioFailure, "CNI_NETNS: \(error)")
        }
        if isHost {
            throw CNIError(.invalidEnvironment, "CNI_NETNS: \(env.netns) is the plugin's own (host) network namespace")
        }
        return netns
    }

    /// Runs a netlink step, turning its failure into a CNI I/O error that says what was being done.
    private func kernel<T>(_ what: @autoclosure () -> String, _ body: () throws(NetlinkError) -> T) throws(CNIError) -> T {
        do {
            return try body()
        } catch {
            throw CNIError(.ioFailure, "\(what()): \(error)")
        }
    }
}

private func randomVethName() -> String {
    var rng = SystemRandomNumberGenerator()
    let value = UInt32.random(in: 0...UInt32.max, using: &rng)
    let hex = String(value, radix: 16)
    return "veth" + String(repeating: "0", count: 8 - hex.count) + hex
}
