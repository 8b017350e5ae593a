import BerthNetlink

extension BridgeOperation {
    /// DEL: releases the addresses, removes the rules (even when the namespace
    /// is already gone) and the veth. The bridge stays. Whatever is already
    /// gone is fine: DEL must succeed when repeated.
    func del() throws {
        try ipam?.del()
        if hasFirewallRules {
            try rules.removeAll(backend: config.ipMasqBackend)
        }
        guard let netns = try openNamespace(required: false) else { return }
        let container = try RouteSocket.opened(in: netns)
        // Only a veth is Berth's to remove: an interface of another kind of
        // that name (`lo` after a refused ADD) stays.
        guard let link = try container.link(named: env.ifname), link.kind == "veth" else { return }
        try container.deleteLink(link)
    }
}
