import BerthNet

/// One end of a connection: a pod, the pod's own node (health probes), or
/// an address outside (no namespace, no labels).
public enum PolicyEndpoint: Equatable, Sendable {
    case pod(PolicyPod)
    case node
    case external(IPAddress)

    var address: IPAddress? {
        switch self {
        case .pod(let p): p.addresses.first
        case .node: nil
        case .external(let a): a
        }
    }
}

/// What a set of policies says of one connection, and why.
public struct PolicyVerdict: Equatable, Sendable, CustomStringConvertible {
    public var allowed: Bool
    /// Who decided, for people: "ingress of default/b: allowed by default/allow-a", "not isolated".
    public var reasons: [String]

    public var description: String { (allowed ? "allowed: " : "denied: ") + reasons.joined(separator: "; ") }
}

/// Policies and namespaces, and what they allow: the semantics Berth
/// enforces, written once and unit-tested, and what `berthctl policy check`
/// answers with.
public struct PolicySet: Equatable, Sendable {
    public var policies: [NetworkPolicy]
    public var namespaces: [String: PolicyNamespace]

    public init(policies: [NetworkPolicy] = [], namespaces: [PolicyNamespace] = []) {
        self.policies = policies
        self.namespaces = Dictionary(namespaces.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// A namespace's labels: its document's, or only its name label when no document gave it.
    public func labels(ofNamespace name: String) -> [String: String] {
        namespaces[name]?.labels ?? PolicyNamespace(name: name).labels
    }

    /// The policies that select `pod` for `direction` (those of its
    /// namespace whose pod selector matches it and whose types include it).
    public func selecting(_ pod: PolicyPod, _ direction: PolicyDirection) -> [NetworkPolicy] {
        let nsLabels = labels(ofNamespace: pod.namespace)
        return policies.filter { $0.policyTypes.contains(direction) && $0.selectedGroup.contains(pod, namespaceLabels: nsLabels) }
    }

    /// Whether `peer` of a rule of `policy` is `endpoint`.
    func matches(_ peer: PolicyPeer, of policy: NetworkPolicy, _ endpoint: PolicyEndpoint) -> Bool {
        switch peer {
        case .ipBlock(let cidr, let except):
            guard let address = endpoint.address else { return false }
            return cidr.contains(address) && !except.contains { $0.contains(address) }
        case .pods:
            // The group the kernel's sets hold for this peer: one definition of who is in it.
            guard case .pod(let pod) = endpoint, let group = policy.group(of: peer) else { return false }
            return group.contains(pod, namespaceLabels: labels(ofNamespace: pod.namespace))
        }
    }

    func allows(_ rule: PolicyRule, of policy: NetworkPolicy, peer: PolicyEndpoint, port: UInt16, proto: TransportProtocol) -> Bool {
        (rule.peers.isEmpty || rule.peers.contains { matches($0, of: policy, peer) })
            && (rule.ports.isEmpty || rule.ports.contains { $0.contains(port, proto) })
    }

    /// One direction at one end: allowed when no policy isolates `pod` that
    /// way, or some rule of a policy that does lets `peer` through.
    func side(_ pod: PolicyPod, _ direction: PolicyDirection, peer: PolicyEndpoint, port: UInt16,
              proto: TransportProtocol) -> (allowed: Bool, reason: String) {
        let isolating = selecting(pod, direction)
        let what = "\(direction == .ingress ? "ingress" : "egress") of \(pod.namespace)/\(pod.name)"
        if isolating.isEmpty { return (true, "\(what): not isolated") }
        if let policy = isolating.first(where: { p in p.rules(direction).contains { allows($0, of: p, peer: peer, port: port, proto: proto) } }) {
            return (true, "\(what): allowed by \(policy.qualifiedName)")
        }
        return (false, "\(what): isolated by \(isolating.map(\.qualifiedName).joined(separator: ", ")), no rule allows it")
    }

    /// Whether a new connection from `from` to port `port`/`proto` of `to`
    /// passes: the source's egress AND the destination's ingress must allow
    /// it; from a pod's own node it always passes. (Replies of an allowed
    /// connection always pass: they are not new connections.)
    public func verdict(from: PolicyEndpoint, to: PolicyEndpoint, port: UInt16, proto: TransportProtocol) -> PolicyVerdict {
        if case .node = from { return PolicyVerdict(allowed: true, reasons: ["from the pod's own node"]) }
        var reasons: [String] = []
        var allowed = true
        if case .pod(let source) = from {
            let e = side(source, .egress, peer: to, port: port, proto: proto)
            allowed = allowed && e.allowed
            reasons.append(e.reason)
        }
        if case .pod(let destination) = to {
            let i = side(destination, .ingress, peer: from, port: port, proto: proto)
            allowed = allowed && i.allowed
            reasons.append(i.reason)
        }
        return PolicyVerdict(allowed: allowed, reasons: reasons)
    }
}
