import BerthJSON

/// Policies written back as the documents they were read from: a `v1`
/// List of Namespace and NetworkPolicy documents in their Kubernetes form,
/// which `PolicyDocuments.read` reads again to the same `PolicySet` (how
/// Berth keeps what is applied, and what it stores in etcd).
extension PolicySet {
    public var json: JSON {
        var items: [JSON] = []
        for ns in namespaces.values.sorted(by: { $0.name < $1.name }) { items.append(ns.json) }
        for p in policies.sorted(by: { $0.qualifiedName < $1.qualifiedName }) { items.append(p.json) }
        return .object(["apiVersion": .string("v1"), "kind": .string("List"), "items": .array(items)])
    }

    /// The policies and namespaces of `other` replace those of the same name here.
    public mutating func merge(_ other: PolicySet) {
        for p in other.policies {
            if let i = policies.firstIndex(where: { $0.qualifiedName == p.qualifiedName }) { policies[i] = p } else { policies.append(p) }
        }
        for (name, ns) in other.namespaces { namespaces[name] = ns }
    }
}

extension PolicyNamespace {
    /// A `v1` Namespace document with the namespace's labels (its name label is implied).
    public var json: JSON {
        var own = labels
        own[PolicyNamespace.nameLabel] = nil
        return .object(["apiVersion": .string("v1"), "kind": .string("Namespace"),
                        "metadata": .object(["name": .string(name), "labels": labelsJSON(own)])])
    }
}

extension NetworkPolicy {
    public var json: JSON {
        var spec: JSONObject = ["podSelector": podSelector.json,
                                "policyTypes": .array(PolicyDirection.allCases.filter { policyTypes.contains($0) }.map { .string($0.rawValue) })]
        if !ingress.isEmpty { spec["ingress"] = .array(ingress.map { $0.json(peersKey: "from") }) }
        if !egress.isEmpty { spec["egress"] = .array(egress.map { $0.json(peersKey: "to") }) }
        return .object(["apiVersion": .string("networking.k8s.io/v1"), "kind": .string("NetworkPolicy"),
                        "metadata": .object(["name": .string(name), "namespace": .string(namespace)]),
                        "spec": .object(spec)])
    }
}

extension PolicyRule {
    func json(peersKey: String) -> JSON {
        var o = JSONObject()
        if !peers.isEmpty { o[peersKey] = .array(peers.map(\.json)) }
        if !ports.isEmpty {
            o["ports"] = .array(ports.map { p in
                var port: JSONObject = ["protocol": .string(p.proto.rawValue)]
                if let first = p.first { port["port"] = .int(Int(first)) }
                if let first = p.first, let last = p.last, last != first { port["endPort"] = .int(Int(last)) }
                return .object(port)
            })
        }
        return .object(o)
    }
}

extension PolicyPeer {
    var json: JSON {
        switch self {
        case .pods(let namespaces, let pods):
            var o = JSONObject()
            if let namespaces { o["namespaceSelector"] = namespaces.json }
            if let pods { o["podSelector"] = pods.json }
            return .object(o)
        case .ipBlock(let cidr, let except):
            var block: JSONObject = ["cidr": .string(cidr.description)]
            if !except.isEmpty { block["except"] = .array(except.map { .string($0.description) }) }
            return .object(["ipBlock": .object(block)])
        }
    }
}

extension LabelSelector {
    public var json: JSON {
        var o = JSONObject()
        if !matchLabels.isEmpty { o["matchLabels"] = labelsJSON(matchLabels) }
        if !matchExpressions.isEmpty {
            o["matchExpressions"] = .array(matchExpressions.map { e in
                var x: JSONObject = ["key": .string(e.key), "operator": .string(e.op.rawValue)]
                if !e.values.isEmpty { x["values"] = .array(e.values.map { .string($0) }) }
                return .object(x)
            })
        }
        return .object(o)
    }
}

func labelsJSON(_ labels: [String: String]) -> JSON {
    var o = JSONObject()
    for (k, v) in labels.sorted(by: { $0.key < $1.key }) { o[k] = .string(v) }
    return .object(o)
}

/// What an ADD needs of the policies in force, and nothing else: the groups
/// (with their ids) and the namespaces' labels. Written when policies are
/// applied, so that a pod's groups are found without reading and checking
/// every policy document again.
public struct GroupIndex: Equatable, Sendable {
    public var groups: [PodGroup]
    /// Each group's id (as `PodGroup.id` derives it), kept so that an ADD need not derive them again.
    public var ids: [String]
    public var namespaceLabels: [String: [String: String]]

    public init(_ set: PolicySet) {
        groups = set.groups
        ids = groups.map(\.id)
        namespaceLabels = set.namespaces.mapValues(\.labels)
    }

    /// The ids of the groups that hold `pod`.
    public func groups(of pod: PolicyPod) -> [String] {
        let labels = namespaceLabels[pod.namespace] ?? PolicyNamespace(name: pod.namespace).labels
        var out: [String] = []
        for (group, id) in zip(groups, ids) where group.contains(pod, namespaceLabels: labels) { out.append(id) }
        return out
    }

    public var json: JSON {
        var namespaces = JSONObject()
        for (name, labels) in namespaceLabels.sorted(by: { $0.key < $1.key }) { namespaces[name] = labelsJSON(labels) }
        return .object(["namespaces": .object(namespaces), "groups": .array(zip(groups, ids).map { g, id in
            var o: JSONObject = ["id": .string(id), "podSelector": g.pods.json]
            switch g.namespaces {
            case .named(let name): o["namespace"] = .string(name)
            case .matching(let selector): o["namespaceSelector"] = selector.json
            }
            return .object(o)
        })])
    }

    /// Read back; nil when `json` is not an index (a damaged file). Ids are
    /// taken as written (the file is Berth's own, replaced whole).
    public init?(json: JSON) {
        guard let namespaces = json["namespaces"]?.objectValue, let groups = json["groups"]?.arrayValue else { return nil }
        var labels: [String: [String: String]] = [:]
        for (name, value) in namespaces.entries {
            guard let l = GroupIndex.labels(value) else { return nil }
            labels[name] = l
        }
        var out: [PodGroup] = [], ids: [String] = []
        for g in groups {
            guard let id = g["id"]?.stringValue, id.hasPrefix("g"), let pods = g["podSelector"].flatMap(GroupIndex.selector) else { return nil }
            if let name = g["namespace"]?.stringValue {
                out.append(PodGroup(namespaces: .named(name), pods: pods))
            } else if let selector = g["namespaceSelector"].flatMap(GroupIndex.selector) {
                out.append(PodGroup(namespaces: .matching(selector), pods: pods))
            } else {
                return nil
            }
            ids.append(id)
        }
        self.groups = out
        self.ids = ids
        self.namespaceLabels = labels
    }

    static func labels(_ value: JSON) -> [String: String]? {
        guard let o = value.objectValue else { return nil }
        var out: [String: String] = [:]
        for (k, v) in o.entries {
            guard let s = v.stringValue else { return nil }
            out[k] = s
        }
        return out
    }

    static func selector(_ value: JSON) -> LabelSelector? {
        guard value.objectValue != nil else { return nil }
        let matchLabels = value["matchLabels"].map(labels) ?? [:]
        guard let matchLabels else { return nil }
        var expressions: [LabelSelector.Requirement] = []
        for e in value["matchExpressions"]?.arrayValue ?? [] {
            guard let key = e["key"]?.stringValue, let op = e["operator"]?.stringValue.flatMap(LabelSelector.Requirement.Operator.init) else { return nil }
            let values = (e["values"]?.arrayValue ?? []).compactMap(\.stringValue)
            expressions.append(.init(key: key, op: op, values: values))
        }
        return LabelSelector(matchLabels: matchLabels, matchExpressions: expressions)
    }
}
