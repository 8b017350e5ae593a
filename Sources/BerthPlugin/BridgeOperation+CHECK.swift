import BerthEndpoints
import BerthEnforcement
import BerthFirewall
import BerthCNI
import BerthNetlink

extension BridgeOperation {
    /// CHECK: what ADD made, as `prevResult` describes it, is still in place:
    /// the allocation, the container interface with its addresses and routes,
    /// the bridge and Berth's host end on it, the rules.
    func check() throws {
        guard let prevJSON = config.network.prevResult else {
            throw CNIError(.invalidNetworkConfig, "field \"prevResult\": is required for CHECK")
        }
        let prev = try CNIResult(json: prevJSON, field: "prevResult", code: .invalidNetworkConfig)
        try ipam?.check()
        let netns = try requiredNamespace()
        let container = try RouteSocket.opened(in: netns)
        let host = try RouteSocket()

        guard let expectedIndex = prev.interfaces.firstIndex(where: { $0.name == env.ifname && $0.sandbox == env.netns })
                ?? prev.interfaces.firstIndex(where: { $0.name == env.ifname && !$0.sandbox.isEmpty })
        else {
            throw CNIError(.checkFailed, "prevResult lists no interface \(env.ifname) inside a sandbox")
        }
        let ownIPs = prev.ips.filter { $0.interface == nil || $0.interface == expectedIndex }
        try checkContainerInterface(container, expected: prev.interfaces[expectedIndex], ips: ownIPs, routes: prev.routes)
        try checkBridge(host, prev: prev)
        if hasFirewallRules {
            try checkRules(addressCount: ownIPs.count)
        }
        try checkIsolation()
        try checkPolicySets()
    }

    /// With policies in force, the pod is recorded and its addresses are in
    /// the sets of every group that holds it.
    private func checkPolicySets() throws {
        guard policyState.mayBeInForce else { return }
        guard let endpoint = try endpoints.read(attachment) else {
            throw CNIError(.checkFailed, "no endpoint record for \(attachment) (\(endpoints.directory)): policies in force cannot know this pod")
        }
        let missing = try PolicyEnforcement.missing(endpoint.pod, state: policyState)
        if !missing.isEmpty {
            throw CNIError(.checkFailed, "the pod's addresses are missing from policy sets of table inet berth-policy: \(missing.joined(separator: ", "))")
        }
    }

    /// With `isolate`, the bridge is in the isolation sets of its level.
    private func checkIsolation() throws {
        guard let level = config.isolation else { return }
        let members = try NetworkIsolation.members()
        let quoted = "\(config.bridge)"
        if !(members[NetworkIsolation.isolatedSet] ?? []).contains(quoted) {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is not isolated (set \(NetworkIsolation.isolatedSet) of table inet berth)")
        }
        if level == .strict && !(members[NetworkIsolation.strictSet] ?? []).contains(quoted) {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is not strictly isolated (set \(NetworkIsolation.strictSet) of table inet berth)")
        }
    }

    private func checkContainerInterface(_ container: RouteSocket, expected: CNIResult.Interface,
                                         ips: [CNIResult.IPConfig], routes: [CNIResult.Route]) throws {
        guard let inside = try container.link(named: env.ifname) else {
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
        let addresses = try container.addresses(of: inside)
        for ip in ips where !addresses.contains(ip.address) {
            throw CNIError(.checkFailed, "address \(ip.address) is missing from \(env.ifname) in \(env.netns)")
        }
        let installed = try container.routes(through: inside)
        for route in routes {
            let found = installed.contains { $0.dst == route.dst.network && (route.gw == nil || $0.gateway == route.gw) }
            if !found {
                let via = route.gw.map { " via \($0)" } ?? ""
                throw CNIError(.checkFailed, "route \(route.dst)\(via) is missing from \(env.netns)")
            }
        }
    }

    /// The bridge, and Berth's own host end: the veth of `prev` that follows
    /// this bridge in its interface list, a port of the bridge with the
    /// configured port options.
    private func checkBridge(_ host: RouteSocket, prev: CNIResult) throws {
        guard let bridge = try host.link(named: config.bridge), bridge.kind == "bridge" else {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is missing")
        }
        if config.promiscMode && !bridge.isPromiscuous {
            throw CNIError(.checkFailed, "bridge \(config.bridge) is not promiscuous, but promiscMode asks for it")
        }
        let hostEnds = prev.interfaces.enumerated().filter { i, iface in
            iface.sandbox.isEmpty && iface.name != config.bridge && i > 0 && prev.interfaces[i - 1].name == config.bridge
        }.map(\.element)
        for iface in hostEnds {
            guard let outside = try host.link(named: iface.name) else {
                throw CNIError(.checkFailed, "host veth \(iface.name) is missing")
            }
            if outside.master != bridge.index {
                throw CNIError(.checkFailed, "host veth \(iface.name) is not attached to bridge \(config.bridge)")
            }
            guard let state = BridgePortState.read(port: iface.name) else { continue }
            if state.hairpin != config.hairpinMode {
                throw CNIError(.checkFailed, "hairpin mode of \(iface.name) is \(state.hairpin ? "on" : "off"), hairpinMode says \(config.hairpinMode)")
            }
            if state.isolated != config.portIsolation {
                throw CNIError(.checkFailed, "isolation of \(iface.name) is \(state.isolated ? "on" : "off"), portIsolation says \(config.portIsolation)")
            }
        }
    }

    private func checkRules(addressCount: Int) throws {
        let counts = try rules.count(backend: config.ipMasqBackend)
        if config.ipMasq && counts.masquerade < addressCount {
            throw CNIError(.checkFailed, "masquerade rules of \(env.containerID) are missing (\(counts.masquerade) of \(addressCount) in \(config.ipMasqBackend.rawValue))")
        }
        if config.macSpoofCheck && counts.macSpoof < 1 {
            throw CNIError(.checkFailed, "the MAC spoof check rule of \(env.containerID) is missing")
        }
    }
}
