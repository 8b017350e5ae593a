#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthFirewall
import BerthNetlink
import BerthSystem

/// One invocation of the `berth` plugin for one container: ADD, DEL, CHECK, GC, STATUS.
///
/// Everything runs synchronously on the main thread. The container's
/// namespace is entered only for the instant a netlink socket is opened in it
/// (`RouteSocket.opened(in:)`); all later work goes through that socket.
struct BridgeOperation {
    let config: BridgeConfig
    let env: CNIEnvironment
    let ipam: IPAMBackend?
    let rules: AttachmentRules

    /// The index of the container interface among Berth's own `interfaces`.
    static let containerInterfaceIndex = 2

    /// Ports a Linux bridge can have (port numbers are 10 bits, 0 unused).
    static let maximumPorts = 1023

    init(config: BridgeConfig, invocation: PluginInvocation) throws(CNIError) {
        self.config = config
        env = invocation.env
        rules = AttachmentRules(network: config.network.name, containerID: env.containerID, ifname: env.ifname)
        switch config.network.ipamType {
        case nil:
            ipam = nil
        case InProcessIPAM.type?:
            ipam = try InProcessIPAM(invocation: invocation)
        case let type?:
            // Resolved here, so a missing plugin is refused before anything is touched.
            ipam = DelegatedIPAM(plugin: try DelegatedPlugin(type: type, searchPath: env.path,
                                                             environment: invocation.processEnvironment,
                                                             stdin: invocation.input))
        }
    }

    var hasFirewallRules: Bool { config.ipMasq || config.macSpoofCheck }

    // MARK: ADD

    func add() throws(CNIError) -> CNIResult {
        // A result handed over by an earlier plugin of the chain is carried into ours.
        let previous = try config.network.prevResult.map { (json) throws(CNIError) in
            try CNIResult(json: json, field: "prevResult", code: .invalidNetworkConfig)
        }
        let netns = try openNamespace(required: true)!
        let host = try kernel("open a netlink socket") { () throws(NetlinkError) in try RouteSocket() }
        let container = try kernel("open a netlink socket in \(env.netns)") { () throws(NetlinkError) in
            try RouteSocket.opened(in: netns)
        }
        if try kernel("look up \(env.ifname)", { () throws(NetlinkError) in try container.link(named: env.ifname) }) != nil {
            throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
        }
        let bridge = try ensureBridge(host)
        // Gateways known from the config are given (and checked for conflicts
        // with the bridge's addresses) before IPAM runs and before an existing
        // bridge is brought up, so such a refused ADD changes nothing.
        let earlyGateways = plannedGatewayAddresses
        for gateway in earlyGateways {
            try addGatewayAddress(gateway, to: bridge, host: host)
        }
        try activate(bridge, host: host)

        let ipamResult = try ipam?.add() ?? CNIResult()
        var result: CNIResult
        do {
            result = try wire(ipamResult, host: host, container: container, netns: netns, bridge: bridge,
                              gatewaysGiven: earlyGateways)
        } catch {
            try? ipam?.del()
            throw error
        }
        if let previous {
            let offset = previous.interfaces.count
            result.interfaces = previous.interfaces + result.interfaces
            result.ips = previous.ips + result.ips.map { ip in
                var shifted = ip
                shifted.interface = ip.interface.map { $0 + offset }
                return shifted
            }
            result.routes = previous.routes + result.routes
            if result.dns.isEmpty { result.dns = previous.dns }
        }
        return result
    }

    /// Makes the veth, applies the IPAM result and builds the plugin's result.
    /// Removes the veth and any rule again if a later step fails.
    private func wire(_ ipamResult: CNIResult, host: RouteSocket, container: RouteSocket,
                      netns: NetworkNamespace, bridge: LinkInfo, gatewaysGiven: [IPPrefix]) throws(CNIError) -> CNIResult {
        let (hostName, hostMAC) = try createVeth(host: host, container: container, netns: netns, bridge: bridge)
        do {
            return try configure(ipamResult, hostName: hostName, hostMAC: hostMAC, host: host, container: container,
                                 bridge: bridge, gatewaysGiven: gatewaysGiven)
        } catch {
            if hasFirewallRules { try? rules.removeAll(iptables: config.ipMasqBackend == .iptables) }
            _ = try? container.deleteLink(named: env.ifname)
            _ = try? host.deleteLink(named: hostName)
            throw error
        }
    }

    private func configure(_ ipamResult: CNIResult, hostName: String, hostMAC: String, host: RouteSocket,
                           container: RouteSocket, bridge: LinkInfo, gatewaysGiven: [IPPrefix]) throws(CNIError) -> CNIResult {
        guard let inside = try kernel("look up \(env.ifname)", { () throws(NetlinkError) in
            try container.link(named: env.ifname)
        }) else {
            throw CNIError(.ioFailure, "the veth end \(env.ifname) vanished from \(env.netns) right after it was made")
        }
        var gatewayLink = bridge
        if config.hairpinMode || config.portIsolation || config.usesVLANs {
            // Port options need the host end's index: one look-up, only then.
            guard let outside = try kernel("look up \(hostName)", { () throws(NetlinkError) in try host.link(named: hostName) })
            else {
                throw CNIError(.ioFailure, "the veth end \(hostName) vanished right after it was made")
            }
            if config.hairpinMode || config.portIsolation {
                try kernel("set hairpin/isolation on \(hostName)") { () throws(NetlinkError) in
                    try host.setBridgePort(index: outside.index, hairpin: config.hairpinMode, isolated: config.portIsolation)
                }
            }
            gatewayLink = try configureVLANs(host: host, port: outside, bridge: bridge)
        }

        let plan = AddressPlan(ipamResult: ipamResult, isGateway: config.isGateway,
                               isDefaultGateway: config.isDefaultGateway,
                               interfaceIndex: BridgeOperation.containerInterfaceIndex)
        for ip in plan.ips {
            try kernel("add \(ip.address) to \(env.ifname)") { () throws(NetlinkError) in
                try container.addAddress(ip.address, index: inside.index, skipDAD: !config.enableDAD)
            }
        }
        if !config.disableContainerInterface {
            try kernel("bring up \(env.ifname)") { () throws(NetlinkError) in try container.setUp(index: inside.index) }
        }
        if config.enableDAD && plan.ips.contains(where: { $0.address.family == .v6 }) {
            try waitForDAD(container, index: inside.index)
        }
        for route in plan.installedRoutes {
            try kernel("add route \(route.dst) in \(env.netns)") { () throws(NetlinkError) in
                try container.addRoute(route, outputIndex: inside.index)
            }
        }
        for gateway in plan.bridgeAddresses where !(gatewayLink.index == bridge.index && gatewaysGiven.contains(gateway)) {
            try addGatewayAddress(gateway, to: gatewayLink, host: host)
        }
        if config.ipMasq {
            // Masqueraded traffic is forwarded by the host. IPv6 forwarding is left
            // alone: turning it on makes the host ignore router advertisements.
            if plan.ips.contains(where: { $0.address.family == .v4 }) {
                do {
                    try Sysctl.ensure("net.ipv4.ip_forward", is: "1")
                } catch {
                    throw CNIError(.ioFailure, "turn on IPv4 forwarding for ipMasq: \(error)")
                }
            }
            try firewall("masquerade \(env.containerID)") { () throws(FirewallError) in
                try rules.addMasquerade(plan.ips.map(\.address), backend: config.ipMasqBackend)
            }
        }
        if config.macSpoofCheck {
            try firewall("MAC spoof check for \(env.containerID)") { () throws(FirewallError) in
                try rules.addMacSpoofCheck(hostInterface: hostName, mac: inside.mac)
            }
        }

        var result = CNIResult(interfaces: [
            .init(name: bridge.name, mac: bridge.mac, mtu: config.mtu),
            .init(name: hostName, mac: hostMAC, mtu: config.mtu),
            .init(name: inside.name, mac: inside.mac, mtu: config.mtu, sandbox: env.netns),
        ])
        result.ips = plan.ips
        result.routes = plan.routes
        result.dns = config.network.dns.isEmpty ? ipamResult.dns : config.network.dns
        return result
    }

    /// Gives `link` (the bridge, or its VLAN device) a gateway address. When
    /// this ADD is the one that added it, any other address of the link in
    /// the same subnet is a conflict: an error naming both, or with
    /// `forceAddress`, removed.
    private func addGatewayAddress(_ gateway: IPPrefix, to link: LinkInfo, host: RouteSocket) throws(CNIError) {
        do {
            try host.addAddress(gateway, index: link.index)
        } catch let e where e.isExists {
            return  // given by an earlier ADD on this bridge
        } catch {
            throw CNIError(.ioFailure, "give \(link.name) the gateway address \(gateway): \(error)")
        }
        let conflicts = try kernel("list addresses of \(link.name)") { () throws(NetlinkError) in
            try host.addresses(index: link.index)
        }.filter { $0 != gateway && $0.family == gateway.family && $0.overlaps(gateway) }
        guard !conflicts.isEmpty else { return }
        if config.forceAddress {
            // Removing a primary IPv4 address takes its secondaries (ours) with
            // it, so the gateway address is given again afterwards.
            try kernel("replace \(conflicts.map(\.description).joined(separator: ", ")) of \(link.name) with \(gateway)") {
                () throws(NetlinkError) in
                for old in conflicts { try host.deleteAddress(old, index: link.index) }
                do throws(NetlinkError) { try host.addAddress(gateway, index: link.index) } catch let e where e.isExists {}
            }
            return
        }
        try? host.deleteAddress(gateway, index: link.index)
        throw CNIError(.invalidNetworkConfig,
                       "bridge \(link.name) already has address \(conflicts[0]), which conflicts with the gateway address \(gateway) (set \"forceAddress\": true to replace it)")
    }

    /// Waits until the container's IPv6 addresses have passed duplicate address detection.
    private func waitForDAD(_ container: RouteSocket, index: Int32) throws(CNIError) {
        for _ in 0..<500 {
            let states = try kernel("list addresses in \(env.netns)") { () throws(NetlinkError) in
                try container.addressStates(index: index)
            }
            if let failed = states.first(where: \.dadFailed) {
                throw CNIError(.ioFailure, "address \(failed.prefix) of \(env.ifname) is in use on the network (duplicate address detection failed)")
            }
            if !states.contains(where: { $0.isTentative && $0.prefix.family == .v6 }) { return }
            usleep(20_000)
        }
        throw CNIError(.ioFailure, "IPv6 duplicate address detection on \(env.ifname) did not finish within 10 s")
    }

    /// Puts the container's port in its VLANs. Returns the link that holds the
    /// gateway address: the bridge, or for an access VLAN with `isGateway`, a
    /// VLAN device on the bridge, where that VLAN's traffic reaches the host.
    private func configureVLANs(host: RouteSocket, port: LinkInfo, bridge: LinkInfo) throws(CNIError) -> LinkInfo {
        guard config.usesVLANs else { return bridge }
        var vlans: [PortVLAN] = []
        if let vlan = config.vlan { vlans.append(PortVLAN(id: vlan, isPVID: true, isUntagged: true)) }
        vlans += config.vlanTrunk.map { PortVLAN(id: $0) }
        try kernel("add VLANs to \(port.name)") { () throws(NetlinkError) in
            try host.changePortVLANs(index: port.index, vlans)
            if !config.preserveDefaultVlan && !vlans.contains(where: { $0.id == 1 }) {
                try host.changePortVLANs(index: port.index, [PortVLAN(id: 1)], remove: true)
            }
        }
        guard let vlan = config.vlan, config.isGateway else { return bridge }
        let name = String(bridge.name.prefix(15 - 1 - String(vlan).count)) + "." + String(vlan)
        return try kernel("set up VLAN \(vlan) gateway device \(name)") { () throws(NetlinkError) -> LinkInfo in
            try host.changePortVLANs(index: bridge.index, [PortVLAN(id: vlan)], bridgeSelf: true)
            if let existing = try host.link(named: name) { return existing }
            do throws(NetlinkError) {
                try host.createVLANDevice(name: name, parent: bridge.index, id: vlan)
            } catch let e where e.isExists {}
            guard let created = try host.link(named: name) else { throw NetlinkError("look up \(name)", code: 0) }
            return created
        }
    }

    /// Creates the bridge if missing (many ADDs may race to do it) and turns
    /// on VLAN filtering when needed; `activate` brings it up later.
    private func ensureBridge(_ host: RouteSocket) throws(CNIError) -> LinkInfo {
        let name = config.bridge
        var existing = try kernel("look up bridge \(name)") { () throws(NetlinkError) in try host.link(named: name) }
        if existing == nil {
            do {
                if config.usesVLANs {
                    try host.createVLANFilteringBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                } else {
                    try host.createBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                }
            } catch let e where e.isExists {
                // Created by a concurrent ADD between our look-up and our request.
            } catch let e where e.isNotSupported && config.usesVLANs {
                throw vlanFilteringUnsupported(e)
            } catch {
                throw CNIError(.ioFailure, "create bridge \(name): \(error)")
            }
            existing = try kernel("look up bridge \(name)") { () throws(NetlinkError) in try host.link(named: name) }
        } else if config.usesVLANs {
            do {
                try host.enableVLANFiltering(bridgeIndex: existing!.index)
            } catch let e where e.isNotSupported {
                throw vlanFilteringUnsupported(e)
            } catch {
                throw CNIError(.ioFailure, "turn on VLAN filtering of bridge \(name): \(error)")
            }
        }
        guard let bridge = existing else {
            throw CNIError(.ioFailure, "bridge \(name) disappeared while it was being set up")
        }
        guard bridge.kind == "bridge" else {
            let kind = bridge.kind.isEmpty ? "a device without a link kind" : "a \(bridge.kind)"
            throw CNIError(.invalidNetworkConfig, "field \"bridge\": \(name) exists and is \(kind), not a bridge")
        }
        return bridge
    }

    /// The bridge's gateway addresses known before IPAM runs (from the IPAM
    /// config with `berth-ipam`); none without `isGateway`, or when an access
    /// VLAN's device holds the gateway.
    var plannedGatewayAddresses: [IPPrefix] {
        guard config.isGateway, !config.usesVLANs else { return [] }
        return ipam?.plannedGateways ?? []
    }

    /// Brings the bridge up and applies promiscuous mode, if needed.
    private func activate(_ bridge: LinkInfo, host: RouteSocket) throws(CNIError) {
        let name = bridge.name
        if !bridge.isUp {
            try kernel("bring up bridge \(name)") { () throws(NetlinkError) in try host.setUp(index: bridge.index) }
        }
        if config.promiscMode && !bridge.isPromiscuous {
            try kernel("set bridge \(name) promiscuous") { () throws(NetlinkError) in
                try host.setPromiscuous(index: bridge.index, true)
            }
        }
    }

    private func vlanFilteringUnsupported(_ e: NetlinkError) -> CNIError {
        let field = config.vlan != nil ? "vlan" : "vlanTrunk"
        return CNIError(.unsupportedField,
                        "field \"\(field)\": this kernel has no bridge VLAN filtering, which VLANs on bridge \(config.bridge) need",
                        details: e.description)
    }

    /// Creates the veth pair; returns the host end's name. Host names are
    /// `veth` + 8 random hex digits, drawn again if taken.
    private func createVeth(host: RouteSocket, container: RouteSocket, netns: NetworkNamespace,
                            bridge: LinkInfo) throws(CNIError) -> (name: String, mac: String) {
        var lastError: NetlinkError?
        for _ in 0..<8 {
            let hostName = randomVethName()
            // Berth picks the host end's MAC (as the kernel would: random, locally
            // administered), so it need not look the link up again for the result.
            let hostMAC = randomLocalMAC()
            do {
                try host.createVethPair(
                    host: VethEnd(name: hostName, mtu: config.mtu, mac: hostMAC),
                    master: bridge.index,
                    // Up at creation is refused (ENOTCONN) for an end made in another
                    // namespace: it is brought up once its addresses are on.
                    peer: VethEnd(name: env.ifname, mtu: config.mtu, mac: config.mac, up: false),
                    peerNamespace: netns)
                return (hostName, hostMAC)
            } catch let e where e.isExists {
                lastError = e
                if (try? container.link(named: env.ifname)) != nil {
                    throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
                }
            } catch {
                // The kernel answers a full bridge with an unspecific error: say what it is.
                let ports = (try? DirectoryHandle(path: "/sys/class/net/\(bridge.name)/brif", create: false).names().count) ?? 0
                if ports >= BridgeOperation.maximumPorts {
                    throw CNIError(.tryAgainLater,
                                   "bridge \(bridge.name) has \(ports) ports, the most a Linux bridge can take: no room for \(env.containerID)",
                                   details: "\(error)")
                }
                throw CNIError(.ioFailure, "\(error)")
            }
        }
        throw CNIError(.tryAgainLater, "could not find a free host veth name: \(lastError.map { "\($0)" } ?? "")")
    }

    // MARK: DEL

    /// Releases the addresses, removes the rules (even when the namespace is
    /// already gone) and the veth. The bridge stays.
    func del() throws(CNIError) {
        try ipam?.del()
        if hasFirewallRules {
            try firewall("remove the rules of \(env.containerID)") { () throws(FirewallError) in
                try rules.removeAll(iptables: config.ipMasqBackend == .iptables)
            }
        }
        guard let netns = try openNamespace(required: false) else { return }
        let container = try kernel("open a netlink socket in \(env.netns)") { () throws(NetlinkError) in
            try RouteSocket.opened(in: netns)
        }
        // Already gone is fine: DEL must succeed when repeated.
        _ = try kernel("delete \(env.ifname) in \(env.netns)") { () throws(NetlinkError) in
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

        guard let expectedIndex = prev.interfaces.firstIndex(where: { $0.name == env.ifname && $0.sandbox == env.netns })
                ?? prev.interfaces.firstIndex(where: { $0.name == env.ifname && !$0.sandbox.isEmpty })
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
        if let mac = config.mac, mac != inside.mac {
            throw CNIError(.checkFailed, "interface \(env.ifname) has MAC \(inside.mac), the runtime asked for \(mac)")
        }
        if inside.isUp == config.disableContainerInterface {
            throw CNIError(.checkFailed, "interface \(env.ifname) in \(env.netns) is \(inside.isUp ? "up" : "down")"
                           + (config.disableContainerInterface ? ", but disableContainerInterface keeps it down" : ""))
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
        if config.promiscMode && !bridge.isPromiscuous {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is not promiscuous, but promiscMode asks for it")
        }
        // Berth's own host end: the veth of prevResult that is a port of this bridge's list entry.
        let hostEnds = prev.interfaces.enumerated().filter { i, iface in
            iface.sandbox.isEmpty && iface.name != config.bridge && i > 0 && prev.interfaces[i - 1].name == config.bridge
        }.map(\.element)
        for iface in hostEnds {
            guard let outside = try kernel("look up \(iface.name)", { () throws(NetlinkError) in
                try host.link(named: iface.name)
            }) else {
                throw CNIError(.checkFailed, "host veth \(iface.name) is missing")
            }
            if outside.master != bridge.index {
                throw CNIError(.checkFailed, "host veth \(iface.name) is not attached to bridge \(config.bridge)")
            }
            if let state = BridgePortState.read(port: iface.name) {
                if state.hairpin != config.hairpinMode {
                    throw CNIError(.checkFailed, "hairpin mode of \(iface.name) is \(state.hairpin ? "on" : "off"), hairpinMode says \(config.hairpinMode)")
                }
                if state.isolated != config.portIsolation {
                    throw CNIError(.checkFailed, "isolation of \(iface.name) is \(state.isolated ? "on" : "off"), portIsolation says \(config.portIsolation)")
                }
            }
        }
        if hasFirewallRules {
            let counts = try firewall("list the rules of \(env.containerID)") { () throws(FirewallError) in
                try rules.count(backend: config.ipMasqBackend)
            }
            let ours = prev.ips.filter { $0.interface == nil || $0.interface == expectedIndex }.count
            if config.ipMasq && counts.masquerade < ours {
                throw CNIError(.checkFailed, "masquerade rules of \(env.containerID) are missing (\(counts.masquerade) of \(ours) in \(config.ipMasqBackend.rawValue))")
            }
            if config.macSpoofCheck && counts.macSpoof < 1 {
                throw CNIError(.checkFailed, "the MAC spoof check rule of \(env.containerID) is missing")
            }
        }
    }

    // MARK: GC and STATUS

    /// GC: the IPAM releases every allocation not in the valid list, and the
    /// rules of attachments no longer valid are removed.
    func gc(valid: [(containerID: String, ifname: String)]) throws(CNIError) {
        var firstError: CNIError?
        do { try ipam?.gc() } catch { firstError = error }
        do {
            try firewall("remove the rules of stale attachments") { () throws(FirewallError) in
                try AttachmentRules.removeAll(network: config.network.name, except: valid)
            }
        } catch {
            firstError = firstError ?? error
        }
        if let firstError { throw firstError }
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

    /// Runs a firewall step, likewise.
    private func firewall<T>(_ what: @autoclosure () -> String, _ body: () throws(FirewallError) -> T) throws(CNIError) -> T {
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
