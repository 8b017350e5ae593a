import BerthEndpoints
import BerthNames
import BerthEnforcement
#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthNetlink
import BerthFirewall
import BerthSystem
import BerthNet

/// What one ADD works with once the veth exists.
struct Wiring {
    let host: RouteSocket
    let container: RouteSocket
    let netns: NetworkNamespace
    let bridge: LinkInfo
    /// The host end: its name and the MAC Berth gave it.
    let hostEnd: (name: String, mac: String)
    /// Gateway addresses the bridge was given before IPAM ran (from the config).
    let gatewaysGiven: [IPPrefix]
}

extension BridgeOperation {
    /// ADD: the bridge (created if missing), the IPAM allocation, the veth with
    /// the container end made inside the namespace, addresses, routes, rules.
    /// A failed ADD removes what it made itself (its veth and rules, addresses
    /// it took, a bridge it created that no other ADD is using), nothing else.
    func add() throws -> CNIResult {
        // A result handed over by an earlier plugin of the chain is carried into ours.
        let previous = try config.network.prevResult.map { json in
            try CNIResult(json: json, field: "prevResult", code: .invalidNetworkConfig)
        }
        let netns = try requiredNamespace()
        let host = try RouteSocket()
        let container = try RouteSocket.opened(in: netns)
        if try container.link(named: env.ifname) != nil {
            throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
        }
        // Every ADD on the bridge holds this shared lock until it is done, so
        // the ADD that made the bridge can tell, if it fails, whether another
        // ADD may be using the bridge before it removes it again.
        let bridgeUse = try LockFile(name: "bridge:\(config.bridge)", shared: true, timeout: BridgeOperation.lockTimeout)
        defer { bridgeUse.release() }
        // With policies in force, libnftables is loaded on another thread
        // meanwhile (most of what putting the pod in its sets costs).
        let policyInForce = identity != nil && policyState.mayBeInForce
        let warmup = policyInForce ? try? BackgroundWork { try PolicyTable.preload() } : nil
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
            // Before any port of this ADD exists: the container is isolated from its first packet.
            try isolate(bridge, host: host)
            allocation = try ipam?.add()
            // Recorded, and in the policy sets its identity puts it in, before
            // its interface is up: filtered from its first packet. On a thread
            // of its own (libnftables' loading and cache cost most of a
            // millisecond) while this one makes the veth; joined before the
            // container's end comes up.
            let endpoint = identity.map {
                Endpoint(attachment: attachment, identity: $0, addresses: (allocation?.result.ips ?? []).map(\.address.address),
                         names: requestedNames)
            }
            try? warmup?.wait()
            var admission: BackgroundWork?
            if let endpoint {
                if policyInForce { admission = try BackgroundWork { try admit(endpoint) } } else { try admit(endpoint) }
            }
            do {
                let hostEnd: (name: String, mac: String)
                do {
                    hostEnd = try createVeth(host: host, container: container, netns: netns, bridge: bridge)
                } catch {
                    try? admission?.wait()
                    throw error
                }
                let wiring = Wiring(host: host, container: container, netns: netns, bridge: bridge, hostEnd: hostEnd,
                                    gatewaysGiven: earlyGateways)
                do {
                    result = try configure(wiring, ipamResult: allocation?.result ?? CNIResult(), beforeUp: { try admission?.wait() })
                } catch {
                    if hasFirewallRules { try? rules.removeAll(backend: config.ipMasqBackend) }
                    _ = try? container.deleteLink(named: env.ifname)
                    _ = try? host.deleteLink(named: hostEnd.name)
                    throw error
                }
            } catch {
                try? admission?.wait()
                if let endpoint { forget(endpoint) }
                throw error
            }
        } catch {
            if allocation?.isNew == true { try? ipam?.del() }
            if createdBridge { removeIfUnused(bridge, host: host, use: bridgeUse) }
            if createdBridge, config.isolation != nil, (try? host.link(named: config.bridge)) == nil {
                try? NetworkIsolation.release(bridge: config.bridge)
            }
            throw error
        }
        if let previous { result.prepend(previous) }
        return result
    }

    /// Applies the IPAM result to the new veth and builds the plugin's result;
    /// `beforeUp` runs just before the container's end comes up.
    private func configure(_ w: Wiring, ipamResult: CNIResult, beforeUp: () throws -> Void) throws -> CNIResult {
        guard let inside = try w.container.link(named: env.ifname) else {
            throw CNIError(.ioFailure, "the veth end \(env.ifname) vanished from \(env.netns) right after it was made")
        }
        if !config.enableDAD {
            // As the reference plugin does: no duplicate address detection on the
            // container interface at all, so its link-local address does not wait
            // either. Set while the interface is still down, before any address.
            try disableDAD(in: w.netns)
        }
        let gatewayLink = try configurePort(w)
        let plan = AddressPlan(ipamResult: ipamResult, isGateway: config.isGateway,
                               isDefaultGateway: config.isDefaultGateway,
                               interfaceIndex: BridgeOperation.containerInterfaceIndex)
        for ip in plan.ips {
            try w.container.addAddress(ip.address, to: inside, skipDAD: !config.enableDAD)
        }
        try beforeUp()
        if !config.disableContainerInterface {
            try w.container.setUp(inside)
        }
        if config.enableDAD && plan.ips.contains(where: { $0.address.family == .v6 }) {
            try waitForDAD(w.container, on: inside)
        }
        for route in plan.installedRoutes {
            try w.container.addRoute(RouteSpec(route), through: inside)
        }
        for gateway in plan.bridgeAddresses where !(gatewayLink.index == w.bridge.index && w.gatewaysGiven.contains(gateway)) {
            try addGatewayAddress(gateway, to: gatewayLink, host: w.host)
        }
        try addRules(addresses: plan.ips.map(\.address), hostInterface: w.hostEnd.name, mac: inside.mac)

        var result = CNIResult(interfaces: [
            .init(name: w.bridge.name, mac: w.bridge.mac, mtu: config.mtu),
            .init(name: w.hostEnd.name, mac: w.hostEnd.mac, mtu: config.mtu),
            .init(name: inside.name, mac: inside.mac, mtu: config.mtu, sandbox: env.netns),
        ])
        result.ips = plan.ips
        result.routes = plan.routes
        result.dns = config.network.dns.isEmpty ? ipamResult.dns : config.network.dns
        if let names = networkNames {
            result.dns = try recordNames(names, plan: plan)
        }
        return result
    }

    /// Records the attachment's names (and addresses) with the network's DNS
    /// server, started if it does not run; returns the DNS the container
    /// should use: that server on the gateway addresses, searching the
    /// network's domain first.
    private func recordNames(_ names: NetworkNames, plan: AddressPlan) throws -> CNIResult.DNS {
        let gateways = plan.ips.compactMap(\.gateway)
        let listen = gateways.reduce(into: [IPAddress]()) { if !$0.contains($1) { $0.append($1) } }
        guard !listen.isEmpty else {
            throw CNIError(.invalidNetworkConfig, "field \"names\": the IPAM gave no gateway address for the network's DNS server to listen on")
        }
        let entry = NameEntry(attachment: attachment.description, names: requestedNames,
                              addresses: plan.ips.map(\.address.address), since: Int(time(nil)))
        do {
            try names.record(entry, fileName: attachment.fileName, listen: listen, subnets: plan.ips.map(\.address.network))
        } catch let error as NameServerError {
            throw CNIError(.ioFailure, error.description)
        }
        var dns = config.network.dns
        dns.nameservers = listen.map(\.description)
        dns.domain = names.config.domain
        dns.search = [names.config.domain] + dns.search.filter { $0 != names.config.domain }
        return dns
    }

    /// The host end's port options (hairpin, isolation, VLANs); returns the
    /// link that holds the gateway address (the bridge, or its VLAN device).
    private func configurePort(_ w: Wiring) throws -> LinkInfo {
        guard config.hairpinMode || config.portIsolation || config.usesVLANs else { return w.bridge }
        // Port options need the host end's index: one look-up, only then.
        guard let outside = try w.host.link(named: w.hostEnd.name) else {
            throw CNIError(.ioFailure, "the veth end \(w.hostEnd.name) vanished right after it was made")
        }
        if config.hairpinMode || config.portIsolation {
            try w.host.setBridgePort(outside, hairpin: config.hairpinMode, isolated: config.portIsolation)
        }
        return try configureVLANs(host: w.host, port: outside, bridge: w.bridge)
    }

    /// Puts the bridge in the isolation sets of `isolate` (a strict
    /// network also records the host's way out as it is now). Routed
    /// traffic is what isolation filters: IPv4 forwarding stays as it is.
    private func isolate(_ bridge: LinkInfo, host: RouteSocket) throws {
        guard let level = config.isolation else { return }
        let waysOut = level == .strict ? try host.defaultRouteLinks() : []
        try NetworkIsolation.isolate(bridge: bridge.name, level: level, waysOut: waysOut)
    }

    /// Records the endpoint and puts its addresses in the sets of the policy
    /// groups that hold it. Policy that cannot be enforced fails the ADD
    /// (error 11: the policies in force need fixing, not the config).
    private func admit(_ endpoint: Endpoint) throws {
        try endpoints.write(endpoint)
        do {
            try PolicyEnforcement.admit(endpoint.pod, state: policyState)
        } catch {
            try? endpoints.remove(endpoint.attachment)
            throw CNIError(.tryAgainLater, "network policy for \(endpoint.identity.namespace)/\(endpoint.identity.name): \(error)")
        }
    }

    /// Undoes `admit` (a failed ADD).
    private func forget(_ endpoint: Endpoint) {
        try? PolicyEnforcement.release(endpoint.pod, state: policyState)
        try? endpoints.remove(endpoint.attachment)
    }

    /// Masquerade and MAC spoof rules of the attachment.
    private func addRules(addresses: [IPPrefix], hostInterface: String, mac: String) throws {
        if config.ipMasq {
            // Masqueraded traffic is forwarded by the host. IPv6 forwarding is left
            // alone: turning it on makes the host ignore router advertisements.
            if addresses.contains(where: { $0.family == .v4 }) {
                try Sysctl.ensure("net.ipv4.ip_forward", is: "1")
            }
            try rules.addMasquerade(addresses, backend: config.ipMasqBackend)
        }
        if config.macSpoofCheck {
            try rules.addMacSpoofCheck(hostInterface: hostInterface, mac: mac)
        }
    }

    /// Turns off duplicate address detection on the container interface
    /// (`accept_dad` and `enhanced_dad`, per network namespace); a kernel
    /// without IPv6 has neither, which is fine.
    private func disableDAD(in netns: NetworkNamespace) throws {
        try netns.perform {
            for key in ["accept_dad", "enhanced_dad"] {
                try Sysctl.setIfPresent(path: "net/ipv6/conf/\(env.ifname)/\(key)", to: "0")
            }
        }
    }

    /// Waits until the container's IPv6 addresses have passed duplicate address detection.
    private func waitForDAD(_ container: RouteSocket, on inside: LinkInfo) throws {
        for _ in 0..<500 {
            let states = try container.addressStates(of: inside)
            if let failed = states.first(where: \.dadFailed) {
                throw CNIError(.ioFailure, "address \(failed.prefix) of \(env.ifname) is in use on the network (duplicate address detection failed)")
            }
            if !states.contains(where: { $0.isTentative && $0.prefix.family == .v6 }) { return }
            usleep(20_000)
        }
        throw CNIError(.ioFailure, "IPv6 duplicate address detection on \(env.ifname) did not finish within 10 s")
    }

    /// Creates the veth pair; returns the host end's name and MAC. Host names
    /// are `veth` + 8 random hex digits, drawn again if taken.
    private func createVeth(host: RouteSocket, container: RouteSocket, netns: NetworkNamespace,
                            bridge: LinkInfo) throws -> (name: String, mac: String) {
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
            } catch {
                if error.isExists {
                    lastError = error
                    if (try? container.link(named: env.ifname)) != nil {
                        throw CNIError(.invalidEnvironment, "CNI_IFNAME: an interface named \(env.ifname) already exists in \(env.netns)")
                    }
                    continue
                }
                // The kernel answers a full bridge with an unspecific error: say what it is.
                let ports = (try? DirectoryHandle(path: "/sys/class/net/\(bridge.name)/brif", create: false).names().count) ?? 0
                if ports >= BridgeOperation.maximumPorts {
                    throw CNIError(.tryAgainLater,
                                   "bridge \(bridge.name) has \(ports) ports, the most a Linux bridge can take: no room for \(env.containerID)",
                                   details: "\(error)")
                }
                throw error
            }
        }
        throw CNIError(.tryAgainLater, "could not find a free host veth name: \(lastError.map { "\($0)" } ?? "")")
    }
}

private func randomVethName() -> String {
    var rng = SystemRandomNumberGenerator()
    return "veth" + hexString((0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) })
}

extension RouteSpec {
    /// The kernel route for a CNI result's route.
    init(_ route: CNIResult.Route) {
        self.init(destination: route.dst, gateway: route.gw, table: route.table, scope: route.scope,
                  priority: route.priority, mtu: route.mtu, advmss: route.advmss)
    }
}
