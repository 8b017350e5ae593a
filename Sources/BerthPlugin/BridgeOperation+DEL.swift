import BerthEndpoints
import BerthNames
import BerthEnforcement
import BerthFirewall
import BerthNetlink
import BerthSystem

extension BridgeOperation {
    /// DEL: releases the addresses, removes the rules (even when the namespace
    /// is already gone) and the veth. The bridge stays. Whatever is already
    /// gone is fine: DEL must succeed when repeated.
    func del() throws {
        try ipam?.del()
        if hasFirewallRules {
            try rules.removeAll(backend: config.ipMasqBackend)
        }
        // Out of the policy sets once the pod can send nothing (its interface
        // down), while the veth deletion that follows waits out the kernel's
        // grace period the set change started (the session closes after it).
        // Without policies in force there is nothing to take out: the record
        // goes and the interface is deleted as it is.
        let policies = policyState.mayBeInForce
        let session = NFTSession()
        defer { session.close() }
        try deleteContainerInterface(takeDownFirst: policies) { try forgetEndpoint(session: policies ? session : nil) }
        try releaseIsolationIfLast()
        try forgetNames()
    }

    /// Takes the attachment's names off the network's server (its last stops it).
    func forgetNames() throws {
        guard let names = networkNames else { return }
        try names.forget(attachment.fileName)
        names.removeIfEmpty()
    }

    /// Takes the pod out of the policy sets (when policies may be in force),
    /// then forgets its record.
    func forgetEndpoint(session: NFTSession? = nil) throws {
        if policyState.mayBeInForce, let endpoint = try endpoints.read(attachment) {
            try PolicyEnforcement.release(endpoint.pod, state: policyState, session: session)
        }
        try endpoints.remove(attachment)
    }

    /// Deletes the container's veth; `beforeDeleting` runs before, once the
    /// interface is down when `takeDownFirst` (or when there is none).
    private func deleteContainerInterface(takeDownFirst: Bool, beforeDeleting: () throws -> Void) throws {
        guard let netns = try openNamespace(required: false) else { return try beforeDeleting() }
        let container = try RouteSocket.opened(in: netns)
        // Only a veth is Berth's to remove: an interface of another kind of
        // that name (`lo` after a refused ADD) stays.
        guard let link = try container.link(named: env.ifname), link.kind == "veth" else { return try beforeDeleting() }
        if takeDownFirst { try container.setDown(link) }
        try beforeDeleting()
        try container.deleteLink(link)
    }

    /// With isolation, the network's last attachment takes its bridge out of
    /// the isolation sets: when the bridge has no port left (or is gone) and
    /// no ADD is using it (an ADD holds the bridge's shared lock from before
    /// it isolates until it is done, so it finds its element in place).
    func releaseIsolationIfLast() throws {
        guard config.isolation != nil else { return }
        guard let use = try? LockFile(name: "bridge:\(config.bridge)", timeout: 0) else { return }
        defer { use.release() }
        let host = try RouteSocket()
        if let bridge = try host.link(named: config.bridge), try host.portCount(master: bridge.index) > 0 { return }
        try NetworkIsolation.release(bridge: config.bridge)
    }
}
