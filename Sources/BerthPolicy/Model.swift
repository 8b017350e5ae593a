import BerthNet

/// A Kubernetes label selector: every `matchLabels` pair AND every
/// expression must hold; an empty selector matches everything.
public struct LabelSelector: Equatable, Sendable {
    public struct Requirement: Equatable, Sendable {
        public enum Operator: String, Sendable { case `in` = "In", notIn = "NotIn", exists = "Exists", doesNotExist = "DoesNotExist" }
        public var key: String
        public var op: Operator
        public var values: [String]

        public init(key: String, op: Operator, values: [String] = []) {
            self.key = key
            self.op = op
            self.values = values
        }

        func matches(_ labels: [String: String]) -> Bool {
            switch op {
            case .in: labels[key].map { values.contains($0) } ?? false
            case .notIn: labels[key].map { !values.contains($0) } ?? true
            case .exists: labels[key] != nil
            case .doesNotExist: labels[key] == nil
            }
        }
    }

    public var matchLabels: [String: String]
    public var matchExpressions: [Requirement]

    public init(matchLabels: [String: String] = [:], matchExpressions: [Requirement] = []) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// Matches every set of labels.
    public static let everything = LabelSelector()

    public func matches(_ labels: [String: String]) -> Bool {
        matchLabels.allSatisfy { labels[$0.key] == $0.value } && matchExpressions.allSatisfy { $0.matches(labels) }
    }
}

public enum PolicyDirection: String, Sendable, CaseIterable { case ingress = "Ingress", egress = "Egress" }

public enum TransportProtocol: String, Sendable, CaseIterable { case tcp = "TCP", udp = "UDP", sctp = "SCTP" }

/// One entry of a rule's `ports`: a protocol and its ports `first...last`
/// (all of the protocol's ports when `first` is nil).
public struct PortRange: Equatable, Sendable {
    public var proto: TransportProtocol
    public var first: UInt16?
    public var last: UInt16?

    public init(proto: TransportProtocol, first: UInt16? = nil, last: UInt16? = nil) {
        self.proto = proto
        self.first = first
        self.last = last ?? first
    }

    public func contains(_ port: UInt16, _ p: TransportProtocol) -> Bool {
        guard p == proto else { return false }
        guard let first, let last else { return true }
        return (first...last).contains(port)
    }
}

/// Who a rule lets in (or out to).
public enum PolicyPeer: Equatable, Sendable {
    /// Pods: with only a pod selector, those of the policy's namespace; with
    /// only a namespace selector, every pod of the namespaces it matches;
    /// with both, the pods it matches in those namespaces.
    case pods(namespaces: LabelSelector?, pods: LabelSelector?)
    /// Addresses in `cidr` but not in any of `except`. Pods' addresses too:
    /// Berth matches a peer by its address, whoever holds it.
    case ipBlock(cidr: IPPrefix, except: [IPPrefix])
}

/// A rule: traffic matching any of `peers` (any peer when empty) AND any
/// of `ports` (any port when empty).
public struct PolicyRule: Equatable, Sendable {
    public var peers: [PolicyPeer]
    public var ports: [PortRange]

    public init(peers: [PolicyPeer] = [], ports: [PortRange] = []) {
        self.peers = peers
        self.ports = ports
    }
}

/// A `networking.k8s.io/v1` NetworkPolicy, checked.
public struct NetworkPolicy: Equatable, Sendable {
    public var name: String
    public var namespace: String
    public var podSelector: LabelSelector
    /// After defaulting: Ingress, and Egress when the policy has egress rules.
    public var policyTypes: Set<PolicyDirection>
    public var ingress: [PolicyRule]
    public var egress: [PolicyRule]

    public init(name: String, namespace: String = "default", podSelector: LabelSelector = .everything,
                policyTypes: Set<PolicyDirection>? = nil, ingress: [PolicyRule] = [], egress: [PolicyRule] = []) {
        self.name = name
        self.namespace = namespace
        self.podSelector = podSelector
        self.policyTypes = policyTypes ?? (egress.isEmpty ? [.ingress] : [.ingress, .egress])
        self.ingress = ingress
        self.egress = egress
    }

    /// "NAMESPACE/NAME", as policies are named in messages.
    public var qualifiedName: String { "\(namespace)/\(name)" }

    public func rules(_ direction: PolicyDirection) -> [PolicyRule] { direction == .ingress ? ingress : egress }
}

/// A namespace and its labels (`kubernetes.io/metadata.name` always among them).
public struct PolicyNamespace: Equatable, Sendable {
    public static let nameLabel = "kubernetes.io/metadata.name"
    public var name: String
    public var labels: [String: String]

    public init(name: String, labels: [String: String] = [:]) {
        self.name = name
        var all = labels
        all[PolicyNamespace.nameLabel] = name
        self.labels = all
    }
}

/// A pod as policy sees it: its namespace, its labels and its addresses.
public struct PolicyPod: Equatable, Sendable {
    public var name: String
    public var namespace: String
    public var labels: [String: String]
    public var addresses: [IPAddress]

    public init(name: String, namespace: String = "default", labels: [String: String] = [:], addresses: [IPAddress]) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.addresses = addresses
    }
}
