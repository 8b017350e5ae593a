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
/// (`RouteSocket.opened(in:)`) and to set the interface's sysctls; all other
/// work goes through that socket.
///
/// ADD, CHECK and DEL of one attachment (network, container, interface) run
/// one at a time: each holds the attachment's lock (`attachmentLock`) from
/// before it touches anything until its reply is delivered, and a delegated
/// IPAM plugin inherits it, so the lock outlives a killed `berth` until that
/// plugin is done.
struct BridgeOperation {
    let config: BridgeConfig
    let env: CNIEnvironment
    let ipam: IPAMBackend?
    let rules: AttachmentRules
    /// Held for ADD, CHECK and DEL; released by `finish()`.
    let attachmentLock: LockFile?

    /// The index of the container interface among Berth's own `interfaces`.
    static let containerInterfaceIndex = 2

    /// Ports a Linux bridge can have (port numbers are 10 bits, 0 unused).
    static let maximumPorts = 1023

    /// How long an operation waits for another one on the same attachment.
    static let lockTimeout: Double = 60

    init(config: BridgeConfig, invocation: PluginInvocation) throws(CNIError) {
        self.config = config
        env = invocation.env
        rules = AttachmentRules(network: config.network.name, containerID: env.containerID, ifname: env.ifname)
        var delegate: DelegatedPlugin?
        if let type = config.network.ipamType, type != InProcessIPAM.type {
            // Resolved first, so a missing plugin is refused before anything is touched.
            delegate = try DelegatedPlugin(type: type, searchPath: env.path, environment: invocation.processEnvironment,
                                           stdin: invocation.input)
        }
        let env = invocation.env
        let lock = try [.add, .check, .del].contains(env.command)
            ? BridgeOperation.lock(DerivedName.fit("\(config.network.name):\(env.containerID):\(env.ifname)", limit: 255),
                                   shared: false, what: "container \(env.containerID) interface \(env.ifname) of network \(config.network.name)")
            : nil
        attachmentLock = lock
        switch config.network.ipamType {
        case nil:
            ipam = nil
        case InProcessIPAM.type?:
            ipam = try InProcessIPAM(invocation: invocation)
        case .some:
            ipam = delegate.map { DelegatedIPAM(plugin: $0, lock: lock) }
        }
    }

    /// Releases the attachment's lock: call once the reply is delivered.
    func finish() {
        attachmentLock?.release()
    }

    /// Takes lock `name`; says whose it is when another operation holds it too long.
    static func lock(_ name: String, shared: Bool, what: String) throws(CNIError) -> LockFile {
        do {
            return try LockFile(name: name, shared: shared, timeout: lockTimeout)
        } catch {
            switch error {
            case .timedOut(let seconds):
                throw CNIError(.tryAgainLater, "\(what): another operation on it has held its lock for \(seconds) s")
            case .system(let e):
                throw systemFailure("lock \(what)", e)
            }
        }
    }

    /// A failed system call as a CNI error; a missing privilege is named.
    static func systemFailure(_ what: String, _ e: SystemError) -> CNIError {
        CNIError(.ioFailure, "\(what): \(e)" + (e.isPermissionDenied ? BridgeOperation.privilegeHint : ""))
    }

    static let privilegeHint = " (berth must run as root: it needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"

    var hasFirewallRules: Bool { config.ipMasq || config.macSpoofCheck }

    // MARK: ADD

    func add() throws(CNIError) -> CNIResult {
        // A result handed over by an earlier plugin of the chain is carried into ours.
        let previous = try config.network.prevResult.map { (json) throws(CNIError) in
            try CNIResult(json: json, field: "prevResult", code: .invalidNetworkConfig)
        }
        let netns = try requiredNamespace()
        let host = try kernel("open a netlink socket") { () throws(NetlinkError) in try RouteSocket() }
        let container = try socket(in: netns)
        if try kernel("look up \(env.ifname)", { () throws(NetlinkError) in try container.link(named: env.ifname) }) != nil {
            throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
        }
        // Every ADD on the bridge holds this shared lock until it is done, so
        // the ADD that made the bridge can tell, if it fails, whether another
        // ADD may be using the bridge before it removes it again.
        let bridgeUse = try BridgeOperation.lock("bridge:\(config.bridge)", shared: true, what: "bridge \(config.bridge)")
        defer { bridgeUse.release() }
        let (bridge, createdBridge) = try ensureBridge(host)
        // Gateways known from the config are given (and checked for conflicts
        // with the bridge's addresses) before IPAM runs and before an existing
        // bridge is brought up, so such a refused ADD changes nothing.
        let earlyGateways = plannedGatewayAddresses
        var allocation: (result: CNIResult, isNew: Bool)?
        var result: CNIResult
        do {
            for gateway in earlyGateways {
                try addGatewayAddress(gateway, to: bridge, host: host)
            }
            try activate(bridge, host: host)
            allocation = try ipam?.add()
            result = try wire(allocation?.result ?? CNIResult(), host: host, container: container, netns: netns,
                              bridge: bridge, gatewaysGiven: earlyGateways)
        } catch {
            // Only what this ADD made goes: addresses it took, a bridge it created.
            if allocation?.isNew == true { try? ipam?.del() }
            if createdBridge { removeIfUnused(bridge, host: host, use: bridgeUse) }
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
                                 netns: netns, bridge: bridge, gatewaysGiven: gatewaysGiven)
        } catch {
            if hasFirewallRules { try? rules.removeAll(iptables: config.ipMasqBackend == .iptables) }
            _ = try? container.deleteLink(named: env.ifname)
            _ = try? host.deleteLink(named: hostName)
            throw error
        }
    }

    private func configure(_ ipamResult: CNIResult, hostName: String, hostMAC: String, host: RouteSocket,
                           container: RouteSocket, netns: NetworkNamespace, bridge: LinkInfo,
                           gatewaysGiven: [IPPrefix]) throws(CNIError) -> CNIResult {
        guard let inside = try kernel("look up \(env.ifname)", { () throws(NetlinkError) in
            try container.link(named: env.ifname)
        }) else {
            throw CNIError(.ioFailure, "the veth end \(env.ifname) vanished from \(env.netns) right after it was made")
        }
        if !config.enableDAD {
            // As the reference plugin does: no duplicate address detection on the
            // container interface at all, so its link-local address does not wait
            // either. Set while the interface is still down, before any address.
            try disableDAD(in: netns)
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
            throw netlinkFailure("give \(link.name) the gateway address \(gateway)", error)
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
            guard let created = try host.link(named: name) else {
                throw NetlinkError.notFound("VLAN device \(name) vanished right after it was made")
            }
            return created
        }
    }

    /// Creates the bridge if missing (many ADDs may race to do it) and turns
    /// on VLAN filtering when needed; `activate` brings it up later.
    private func ensureBridge(_ host: RouteSocket) throws(CNIError) -> (bridge: LinkInfo, created: Bool) {
        let name = config.bridge
        var existing = try kernel("look up bridge \(name)") { () throws(NetlinkError) in try host.link(named: name) }
        var created = false
        if existing == nil {
            do {
                if config.usesVLANs {
                    try host.createVLANFilteringBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                } else {
                    try host.createBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                }
                created = true
            } catch let e where e.isExists {
                // Created by a concurrent ADD between our look-up and our request.
            } catch let e where e.isNotSupported && config.usesVLANs {
                throw vlanFilteringUnsupported(e)
            } catch {
                throw netlinkFailure("create bridge \(name)", error)
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
        return (bridge, created)
    }

    /// Removes a bridge this ADD created, unless another ADD holds it (`use`
    /// is not ours alone) or it has ports.
    private func removeIfUnused(_ bridge: LinkInfo, host: RouteSocket, use: LockFile) {
        guard use.isAlone(), let ports = try? host.portCount(master: bridge.index), ports == 0 else { return }
        _ = try? host.deleteLink(named: bridge.name)
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
                throw netlinkFailure(nil, error)
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
        let container = try socket(in: netns)
        // Already gone is fine: DEL must succeed when repeated. Only a veth is
        // Berth's to remove: an interface of another kind of that name (`lo`
        // after a refused ADD) stays.
        guard let link = try kernel("look up \(env.ifname) in \(env.netns)", { () throws(NetlinkError) in
            try container.link(named: env.ifname)
        }), link.kind == "veth" else { return }
        _ = try kernel("delete \(env.ifname) in \(env.netns)") { () throws(NetlinkError) in
            try container.deleteLink(index: link.index)
        }
    }

    // MARK: CHECK

    func check() throws(CNIError) {
        guard let prevJSON = config.network.prevResult else {
            throw CNIError(.invalidNetworkConfig, "field \"prevResult\": is required for CHECK")
        }
        let prev = try CNIResult(json: prevJSON, field: "prevResult", code: .invalidNetworkConfig)
        try ipam?.check()

        let netns = try requiredNamespace()
        let container = try socket(in: netns)
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
        // Locks left by processes killed while holding them (no holder now).
        LockFile.removeUnheld()
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

    /// CNI_NETNS for ADD and CHECK, where the environment check made it required.
    private func requiredNamespace() throws(CNIError) -> NetworkNamespace {
        guard let netns = try openNamespace(required: true) else {
            throw CNIError(.invalidEnvironment, "CNI_NETNS is not set")
        }
        return netns
    }

    /// A netlink socket inside the container's namespace.
    private func socket(in netns: NetworkNamespace) throws(CNIError) -> RouteSocket {
        do {
            return try RouteSocket.opened(in: netns)
        } catch let e as NetworkNamespace.SwitchError {
            throw BridgeOperation.systemFailure("open a netlink socket in \(env.netns)", e.cause)
        } catch let e as NetlinkError {
            throw netlinkFailure("open a netlink socket in \(env.netns)", e)
        } catch {
            throw CNIError(.ioFailure, "open a netlink socket in \(env.netns): \(error)")
        }
    }

    /// Turns off duplicate address detection on the container interface
    /// (`accept_dad` and `enhanced_dad`, per network namespace); a kernel
    /// without IPv6 has neither, which is fine.
    private func disableDAD(in netns: NetworkNamespace) throws(CNIError) {
        do {
            try netns.perform {
                for key in ["accept_dad", "enhanced_dad"] {
                    try Sysctl.setIfPresent(path: "net/ipv6/conf/\(env.ifname)/\(key)", to: "0")
                }
            }
        } catch let e as NetworkNamespace.SwitchError {
            throw BridgeOperation.systemFailure("turn off duplicate address detection on \(env.ifname)", e.cause)
        } catch let e as SystemError {
            throw BridgeOperation.systemFailure("turn off duplicate address detection on \(env.ifname)", e)
        } catch {
            throw CNIError(.ioFailure, "turn off duplicate address detection on \(env.ifname): \(error)")
        }
    }

    /// Runs a netlink step, turning its failure into a CNI I/O error that says what was being done.
    private func kernel<T>(_ what: @autoclosure () -> String, _ body: () throws(NetlinkError) -> T) throws(CNIError) -> T {
        do {
            return try body()
        } catch {
            throw netlinkFailure(what(), error)
        }
    }

    /// A netlink failure as a CNI I/O error; a missing privilege is named.
    private func netlinkFailure(_ what: String?, _ e: NetlinkError) -> CNIError {
        CNIError(.ioFailure, (what.map { "\($0): " } ?? "") + "\(e)" + (e.isPermissionDenied ? BridgeOperation.privilegeHint : ""))
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
