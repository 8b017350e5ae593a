import BerthJSON

/// Policies written back as the documents they were read from: a `v1`
/// List of Namespace and NetworkPolicy documents in their Kubernetes form,
/// which `PolicyDocuments.read` reads again to the same `PolicySet` (how
/// Berth keeps what is applied, and what it stores in etcd).
extension PolicySet {
    public var json: JSON {
        var items: [JSON] = []
        for ns in namespaces.values.sorted(by: { $0.name < $1.name }) {
            var labels = ns.labels
            labels[PolicyNamespace.nameLabel] = nil
            items.append(.object(["apiVersion": .string("v1"), "kind": .string("Namespace"),
                                  "metadata": .object(["name": .string(ns.name), "labels": labelsJSON(labels)])]))
        }
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
