import BerthCNI
import BerthNetlink
import BerthSystem
import BerthNet

/// The bridge side of ADD: the bridge itself, its gateway addresses, VLANs.
extension BridgeOperation {
    /// Creates the bridge if missing (many ADDs may race to do it) and turns
    /// on VLAN filtering when needed; `activate` brings it up later. Says
    /// whether this ADD created it.
    func ensureBridge(_ host: RouteSocket) throws -> (bridge: LinkInfo, created: Bool) {
        let name = config.bridge
        var existing = try host.link(named: name)
        var created = false
        if existing == nil {
            do {
                if config.usesVLANs {
                    try host.createVLANFilteringBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                } else {
                    try host.createBridge(name: name, mtu: config.mtu, mac: randomLocalMAC())
                }
                created = true
            } catch {
                // Exists: created by a concurrent ADD between our look-up and our request.
                if error.isNotSupported && config.usesVLANs { throw vlanFilteringUnsupported(error) }
                if !error.isExists { throw error }
            }
            existing = try host.link(named: name)
        } else if config.usesVLANs, let bridge = existing {
            do {
                try host.enableVLANFiltering(bridgeIndex: bridge.index)
            } catch {
                throw error.isNotSupported ? vlanFilteringUnsupported(error) : error
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
    func removeIfUnused(_ bridge: LinkInfo, host: RouteSocket, use: LockFile) {
        guard use.isAlone(), let ports = try? host.portCount(master: bridge.index), ports == 0 else { return }
        _ = try? host.deleteLink(bridge)
    }

    /// Brings the bridge up and applies promiscuous mode, if needed.
    func activate(_ bridge: LinkInfo, host: RouteSocket) throws {
        if !bridge.isUp {
            try host.setUp(bridge)
        }
        if config.promiscMode && !bridge.isPromiscuous {
            try host.setPromiscuous(bridge, true)
        }
    }

    /// The bridge's gateway addresses known before IPAM runs (from the IPAM
    /// config with `berth-ipam`); none without `isGateway`, or when an access
    /// VLAN's device holds the gateway.
    var plannedGatewayAddresses: [IPPrefix] {
        guard config.isGateway, !config.usesVLANs else { return [] }
        return ipam?.plannedGateways ?? []
    }

    /// Gives `link` (the bridge, or its VLAN device) a gateway address. When
    /// this ADD is the one that added it, any other address of the link in
    /// the same subnet is a conflict: an error naming both, or with
    /// `forceAddress`, removed.
    func addGatewayAddress(_ gateway: IPPrefix, to link: LinkInfo, host: RouteSocket) throws {
        do {
            try host.addAddress(gateway, to: link)
        } catch {
            if error.isExists { return }  // given by an earlier ADD on this bridge
            throw error
        }
        let conflicts = try host.addresses(of: link).filter {
            $0 != gateway && $0.family == gateway.family && $0.overlaps(gateway)
        }
        guard !conflicts.isEmpty else { return }
        if config.forceAddress {
            // Removing a primary IPv4 address takes its secondaries (ours) with
            // it, so the gateway address is given again afterwards.
            for old in conflicts { try host.deleteAddress(old, from: link) }
            do { try host.addAddress(gateway, to: link) } catch { if !error.isExists { throw error } }
            return
        }
        try? host.deleteAddress(gateway, from: link)
        throw CNIError(.invalidNetworkConfig,
                       "bridge \(link.name) already has address \(conflicts[0]), which conflicts with the gateway address \(gateway) (set \"forceAddress\": true to replace it)")
    }

    /// Puts the container's port in its VLANs. Returns the link that holds the
    /// gateway address: the bridge, or for an access VLAN with `isGateway`, a
    /// VLAN device on the bridge, where that VLAN's traffic reaches the host.
    func configureVLANs(host: RouteSocket, port: LinkInfo, bridge: LinkInfo) throws -> LinkInfo {
        guard config.usesVLANs else { return bridge }
        var vlans: [PortVLAN] = []
        if let vlan = config.vlan { vlans.append(PortVLAN(id: vlan, isPVID: true, isUntagged: true)) }
        vlans += config.vlanTrunk.map { PortVLAN(id: $0) }
        try host.changePortVLANs(of: port, vlans)
        if !config.preserveDefaultVlan && !vlans.contains(where: { $0.id == 1 }) {
            try host.changePortVLANs(of: port, [PortVLAN(id: 1)], remove: true)
        }
        guard let vlan = config.vlan, config.isGateway else { return bridge }
        let name = BridgeOperation.vlanDeviceName(bridge: bridge.name, vlan: vlan)
        try host.changePortVLANs(of: bridge, [PortVLAN(id: vlan)], bridgeSelf: true)
        if let existing = try host.link(named: name) { return existing }
        do {
            try host.createVLANDevice(name: name, parent: bridge.index, id: vlan)
        } catch {
            if !error.isExists { throw error }
        }
        guard let created = try host.link(named: name) else {
            throw CNIError(.ioFailure, "VLAN device \(name) vanished right after it was made")
        }
        return created
    }

    /// `BRIDGE.VID`, the bridge's name cut so that the whole fits the kernel's 15 bytes.
    static func vlanDeviceName(bridge: String, vlan: Int) -> String {
        String(bridge.prefix(15 - 1 - String(vlan).count)) + "." + String(vlan)
    }

    private func vlanFilteringUnsupported(_ e: NetlinkError) -> CNIError {
        let field = config.vlan != nil ? "vlan" : "vlanTrunk"
        return CNIError(.unsupportedField,
                        "field \"\(field)\": this kernel has no bridge VLAN filtering, which VLANs on bridge \(config.bridge) need",
                        details: e.description)
    }
}
