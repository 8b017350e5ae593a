import BerthNames
import BerthCNI
import BerthEndpoints
import BerthEnforcement
import BerthJSON
import BerthNet
import BerthPolicy

/// Network policy across a cluster, as one node's agent sees it: the
/// policies and namespaces stored in etcd, and the other nodes' pods
/// (their endpoint records), each checked before it counts. Pure: what to
/// put in force and which remote pods to add to or take out of the sets;
/// the agent does the kernel's part.
///
/// Nothing read is trusted. A policy or namespace record must be one
/// document of its kind whose name (and namespace) are those of its key; a
/// bad one is reported and the last good value of that key stays in force
/// (a damaged record never opens what it closed). An endpoint record must
/// name the node its key names, that node must hold a block, and each of
/// its addresses must be inside that block (a node cannot claim another
/// node's pods, or addresses outside the cluster, to be let in as them).
public struct ClusterPolicyState: Sendable {
    public let config: ClusterConfig
    public let node: String
    /// Good policy and namespace records, by key.
    private(set) var policies: [String: NetworkPolicy] = [:]
    private(set) var namespaces: [String: PolicyNamespace] = [:]
    /// Good endpoint records of other nodes, by key.
    public private(set) var remote: [String: Endpoint] = [:]
    /// Endpoint records not (yet) accepted, by key, and why: checked again when blocks change.
    private var pendingEndpoints: [String: [UInt8]] = [:]
    /// Whether the cluster has ever held a policy (until then the agent leaves the node's policy alone).
    public private(set) var seenPolicy = false

    public init(config: ClusterConfig, node: String) {
        self.config = config
        self.node = node
    }

    /// What the records say should be in force.
    public var desired: PolicySet {
        PolicySet(policies: policies.values.sorted { $0.qualifiedName < $1.qualifiedName },
                  namespaces: Array(namespaces.values))
    }

    /// Whether `key` is one of policy's (policies, namespaces, endpoints).
    public func owns(_ key: String) -> Bool {
        key.hasPrefix(config.policiesPrefix) || key.hasPrefix(config.namespacesPrefix) || key.hasPrefix(config.endpointsPrefix)
    }

    /// Takes a put; returns a problem to report (nil: taken, or nothing to say).
    public mutating func put(_ key: String, _ value: [UInt8], owners: [IPPrefix: String]) -> String? {
        if key.hasPrefix(config.policiesPrefix) {
            seenPolicy = true
            switch policy(key, value) {
            case .success(let p): policies[key] = p; return nil
            case .failure(let why): return why.message + (policies[key] != nil ? "; its last good value stays in force" : "")
            }
        }
        if key.hasPrefix(config.namespacesPrefix) {
            switch namespace(key, value) {
            case .success(let n): namespaces[key] = n; return nil
            case .failure(let why): return why.message + (namespaces[key] != nil ? "; its last good labels stay" : "")
            }
        }
        if key.hasPrefix(config.endpointsPrefix) {
            if key.hasPrefix(config.endpointsPrefix(node: node)) { return nil }  // this node's own: read from disk
            switch endpoint(key, value, owners: owners) {
            case .success(let e):
                remote[key] = e
                pendingEndpoints[key] = nil
                return nil
            case .failure(let why):
                remote[key] = nil
                pendingEndpoints[key] = value
                return why.message
            }
        }
        return nil
    }

    /// Takes a delete.
    public mutating func delete(_ key: String) {
        if key.hasPrefix(config.policiesPrefix) { seenPolicy = true }
        policies[key] = nil
        namespaces[key] = nil
        remote[key] = nil
        pendingEndpoints[key] = nil
    }

    /// Forgets everything read (a new listing follows).
    public mutating func reset() {
        policies = [:]
        namespaces = [:]
        remote = [:]
        pendingEndpoints = [:]
    }

    /// Endpoint records refused because their node held no block yet are
    /// tried again (after blocks changed); returns the problems still there.
    public mutating func recheck(owners: [IPPrefix: String]) -> [String: String] {
        var problems: [String: String] = [:]
        for (key, value) in pendingEndpoints {
            if let p = put(key, value, owners: owners) { problems[key] = p }
        }
        return problems
    }

    struct Refusal: Error { let message: String }

    func policy(_ key: String, _ value: [UInt8]) -> Result<NetworkPolicy, Refusal> {
        let set: PolicySet
        do { set = try PolicyDocuments.read(json: String(decoding: value, as: UTF8.self)) } catch {
            return .failure(Refusal(message: "not a NetworkPolicy: \(error)"))
        }
        guard set.policies.count == 1, set.namespaces.isEmpty, let p = set.policies.first else {
            return .failure(Refusal(message: "expected one NetworkPolicy document"))
        }
        guard key == config.policyKey(namespace: p.namespace, name: p.name) else {
            return .failure(Refusal(message: "holds policy \(p.qualifiedName), which belongs at \(config.policyKey(namespace: p.namespace, name: p.name))"))
        }
        return .success(p)
    }

    func namespace(_ key: String, _ value: [UInt8]) -> Result<PolicyNamespace, Refusal> {
        let set: PolicySet
        do { set = try PolicyDocuments.read(json: String(decoding: value, as: UTF8.self)) } catch {
            return .failure(Refusal(message: "not a Namespace: \(error)"))
        }
        guard set.policies.isEmpty, set.namespaces.count == 1, let n = set.namespaces.values.first else {
            return .failure(Refusal(message: "expected one Namespace document"))
        }
        guard key == config.namespaceKey(n.name) else {
            return .failure(Refusal(message: "holds namespace \(n.name), which belongs at \(config.namespaceKey(n.name))"))
        }
        return .success(n)
    }

    func endpoint(_ key: String, _ value: [UInt8], owners: [IPPrefix: String]) -> Result<Endpoint, Refusal> {
        let rest = key.dropFirst(config.endpointsPrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return .failure(Refusal(message: "names no node")) }
        let keyNode = String(rest[..<slash])
        guard let json = try? JSON.parse(value), let e = Endpoint(json: json), let recordNode = json["node"]?.stringValue else {
            return .failure(Refusal(message: "not an endpoint record"))
        }
        guard recordNode == keyNode else { return .failure(Refusal(message: "names node \(escapedForLog(Array(recordNode.utf8))), not \(keyNode)")) }
        guard String(rest[rest.index(after: slash)...]) == e.attachment.fileName else {
            return .failure(Refusal(message: "is not at its attachment's key \(config.endpointsPrefix(node: keyNode))\(e.attachment.fileName)"))
        }
        if let problem = KubernetesNames.nameProblem(e.identity.namespace, subdomain: false) {
            return .failure(Refusal(message: "namespace \"\(e.identity.namespace)\" \(problem)"))
        }
        for (k, v) in e.identity.labels {
            if let problem = KubernetesNames.labelProblem(key: k, value: v) { return .failure(Refusal(message: "label \(k): \(problem)")) }
        }
        // Names other nodes' servers will answer: DNS labels only (none can claim a name outside the network's domain).
        for name in e.names {
            guard case .success(let canonical) = DNSName.canonical(name), canonical == name else {
                return .failure(Refusal(message: "name \"\(escapedForLog(Array(name.utf8), limit: 70))\" is not a DNS label"))
            }
        }
        let blocks = owners.filter { $0.value == keyNode }.map(\.key)
        guard !blocks.isEmpty else { return .failure(Refusal(message: "node \(keyNode) holds no block")) }
        guard !e.addresses.isEmpty else { return .failure(Refusal(message: "has no address")) }
        for a in e.addresses where !blocks.contains(where: { $0.contains(a) }) {
            return .failure(Refusal(message: "address \(a) is not in the block of node \(keyNode) (\(blocks.map(\.description).sorted().joined(separator: ", ")))"))
        }
        return .success(e)
    }

    /// An endpoint record as this node publishes it: the endpoint and the node.
    public static func record(_ e: Endpoint, node: String) -> [UInt8] {
        guard case .object(var o) = e.json else { return [] }
        o["node"] = .string(node)
        return Array(JSON.object(o).serialized().utf8)
    }
}
