import BerthNet

/// A set of pods that policies name: those of one namespace, or of every
/// namespace a selector matches, whose labels a pod selector matches. A
/// policy's own pods are a group, and so is each pod peer of its rules;
/// policies that name the same pods share one group (one kernel set per
/// address family), as Calico shares an IP set per selector.
public struct PodGroup: Hashable, Sendable, Comparable {
    public enum Namespaces: Hashable, Sendable {
        case named(String)
        case matching(LabelSelector)
    }

    public var namespaces: Namespaces
    public var pods: LabelSelector

    public init(namespaces: Namespaces, pods: LabelSelector) {
        self.namespaces = namespaces
        self.pods = pods
    }

    /// The canonical text of the group: equal groups have equal keys.
    public var key: String {
        let ns: String
        switch namespaces {
        case .named(let name): ns = "ns=\(name)"
        case .matching(let selector): ns = "nsSelector=\(selector.canonical)"
        }
        return "\(ns);pods=\(pods.canonical)"
    }

    /// A short name derived from the key ("g" + 12 hex digits): set names
    /// are this with "4" or "6" appended.
    public var id: String { "g" + String(SHA256.hex(Array(key.utf8)).prefix(12)) }

    public static func < (a: PodGroup, b: PodGroup) -> Bool { a.key < b.key }
    /// Groups are equal when their keys are (expressions in another order name the same pods).
    public static func == (a: PodGroup, b: PodGroup) -> Bool { a.key == b.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }

    /// Whether `pod` is in the group, given its namespace's labels.
    public func contains(_ pod: PolicyPod, namespaceLabels: [String: String]) -> Bool {
        switch namespaces {
        case .named(let name): guard pod.namespace == name else { return false }
        case .matching(let selector): guard selector.matches(namespaceLabels) else { return false }
        }
        return pods.matches(pod.labels)
    }

    /// For people: "pods app=web of namespace shop".
    public var words: String {
        let who = pods == .everything ? "every pod" : "pods \(pods.words)"
        switch namespaces {
        case .named(let name): return "\(who) of namespace \(name)"
        case .matching(let selector):
            return selector == .everything ? "\(who) of every namespace" : "\(who) of namespaces \(selector.words)"
        }
    }
}

extension LabelSelector: Hashable {
    public func hash(into hasher: inout Hasher) { hasher.combine(canonical) }

    /// matchLabels sorted, then the expressions sorted, values sorted.
    public var canonical: String {
        let labels = matchLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let expressions = matchExpressions.map { "\($0.key) \($0.op.rawValue) (\($0.values.sorted().joined(separator: ",")))" }.sorted()
        return "{" + (labels + expressions).joined(separator: ",") + "}"
    }

    /// For people: "app=web, tier in (a, b)"; "everything" for the empty selector.
    public var words: String {
        if self == .everything { return "(any labels)" }
        let labels = matchLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let expressions = matchExpressions.map { e -> String in
            switch e.op {
            case .in: "\(e.key) in (\(e.values.joined(separator: ", ")))"
            case .notIn: "\(e.key) not in (\(e.values.joined(separator: ", ")))"
            case .exists: "has \(e.key)"
            case .doesNotExist: "no \(e.key)"
            }
        }
        return (labels + expressions).joined(separator: ", ")
    }
}


extension NetworkPolicy {
    /// The pods the policy applies to.
    public var selectedGroup: PodGroup { PodGroup(namespaces: .named(namespace), pods: podSelector) }

    /// The group a pod peer of one of its rules names (nil for an ipBlock).
    public func group(of peer: PolicyPeer) -> PodGroup? {
        guard case .pods(let namespaces, let pods) = peer else { return nil }
        return PodGroup(namespaces: namespaces.map { .matching($0) } ?? .named(namespace), pods: pods ?? .everything)
    }

    /// A short name derived from "NAMESPACE/NAME" ("p" + 12 hex digits),
    /// stable while the policy is changed: its chains are named after it.
    public var id: String { "p" + String(SHA256.hex(Array(qualifiedName.utf8)).prefix(12)) }
}

extension PolicySet {
    /// Every group the policies name, once each, in key order.
    public var groups: [PodGroup] {
        var all = Set<PodGroup>()
        for p in policies {
            all.insert(p.selectedGroup)
            for rule in p.ingress + p.egress {
                for peer in rule.peers { if let g = p.group(of: peer) { all.insert(g) } }
            }
        }
        return all.sorted()
    }

    /// The groups of `groups` that hold `pod`.
    public func groups(of pod: PolicyPod, among groups: [PodGroup]) -> [PodGroup] {
        let nsLabels = labels(ofNamespace: pod.namespace)
        return groups.filter { $0.contains(pod, namespaceLabels: nsLabels) }
    }

    /// Members of each group (by group id): the addresses of the pods it holds.
    public func members(of groups: [PodGroup], pods: [PolicyPod]) -> [String: [IPAddress]] {
        var out: [String: [IPAddress]] = [:]
        for g in groups { out[g.id] = [] }
        for pod in pods {
            for g in self.groups(of: pod, among: groups) { out[g.id, default: []].append(contentsOf: pod.addresses) }
        }
        return out.mapValues { Array(Set($0)).sorted() }
    }
}
