import BerthJSON
import BerthCNI
import BerthNet

/// A problem in a policy file: where (the document, the policy's name when
/// it has one, the field and, for YAML, the line) and what is wrong.
public struct PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    public var location: String
    public var message: String
    public var description: String { "\(location): \(message)" }

    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
}

/// Reading policy files: the YAML (one document or many) or JSON a user
/// would give kubectl: `networking.k8s.io/v1` NetworkPolicy and `v1`
/// Namespace documents, or a `v1` List of them. Everything is checked
/// before anything is returned; a field Berth does not enforce is refused,
/// never ignored.
public enum PolicyDocuments {
    /// The policies and namespaces of `documents` (a file's, read by the
    /// YAML reader or `LocatedDocument.readJSON`).
    public static func read(documents: [LocatedDocument]) throws(PolicyError) -> PolicySet {
        var set = PolicySet()
        // An empty document (a trailing `---`) holds nothing.
        for (i, document) in documents.enumerated() where document.value != .null && document.value != .string("") {
            var reader = Reader(document: document, index: i, documents: documents.count)
            try reader.read(document.value, path: "", into: &set)
        }
        for (i, p) in set.policies.enumerated() where set.policies[..<i].contains(where: { $0.qualifiedName == p.qualifiedName }) {
            throw PolicyError(location: "policy \(p.qualifiedName)", message: "is given twice")
        }
        return set
    }

    /// JSON text only (what Berth writes itself: the policies in force, etcd's records).
    public static func read(json text: String) throws(PolicyError) -> PolicySet {
        let document: LocatedDocument?
        do { document = try LocatedDocument.readJSON(text) } catch {
            throw PolicyError(location: error.location, message: error.message)
        }
        guard let document else { throw PolicyError(location: "file", message: "expected a JSON object or list") }
        return try read(documents: [document])
    }
}

/// Reads one document, naming every problem with its place.
struct Reader {
    let document: LocatedDocument
    let index: Int
    let documents: Int
    /// The policy being read, for messages ("policy default/deny-all").
    var policy: String?

    init(document: LocatedDocument, index: Int, documents: Int) {
        self.document = document
        self.index = index
        self.documents = documents
    }

    func fail(_ path: String, _ message: String) -> PolicyError {
        var at: [String] = []
        if documents > 1 { at.append("document \(index + 1)") }
        if let policy { at.append("policy \(policy)") }
        if !path.isEmpty { at.append(document.located(path)) }
        return PolicyError(location: at.isEmpty ? "file" : at.joined(separator: ", "), message: message)
    }

    func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func object(_ value: JSON, _ path: String, known: [String]) throws(PolicyError) -> JSONObject {
        guard let o = value.objectValue else { throw fail(path, "expected a mapping, got \(value.typeName)") }
        for key in o.keys where !known.contains(key) {
            throw fail(join(path, key), "is not a field Berth enforces here (known: \(known.joined(separator: ", ")))")
        }
        return o
    }

    func string(_ value: JSON?, _ path: String) throws(PolicyError) -> String? {
        guard let value, value != .null else { return nil }
        guard let s = value.stringValue else { throw fail(path, "expected a string, got \(value.typeName)") }
        return s
    }

    func array(_ value: JSON?, _ path: String) throws(PolicyError) -> [JSON] {
        guard let value, value != .null else { return [] }
        guard let a = value.arrayValue else { throw fail(path, "expected a list, got \(value.typeName)") }
        return a
    }

    mutating func read(_ value: JSON, path: String, into set: inout PolicySet) throws(PolicyError) {
        guard let o = value.objectValue else { throw fail(path, "expected a mapping (a NetworkPolicy, Namespace or List), got \(value.typeName)") }
        let apiVersion = try string(o["apiVersion"], join(path, "apiVersion")) ?? ""
        let kind = try string(o["kind"], join(path, "kind")) ?? ""
        switch (apiVersion, kind) {
        case ("networking.k8s.io/v1", "NetworkPolicy"):
            set.policies.append(try networkPolicy(o, path))
        case ("v1", "Namespace"):
            let ns = try namespace(o, path)
            set.namespaces[ns.name] = ns
        case ("v1", "List"):
            _ = try object(value, path, known: ["apiVersion", "kind", "items", "metadata"])
            for (i, item) in try array(o["items"], join(path, "items")).enumerated() {
                try read(item, path: "\(join(path, "items"))[\(i)]", into: &set)
            }
        default:
            throw fail(path.isEmpty ? "kind" : join(path, "kind"),
                       "\(apiVersion.isEmpty ? "(no apiVersion)" : apiVersion) \(kind.isEmpty ? "(no kind)" : kind) is not a document Berth reads (networking.k8s.io/v1 NetworkPolicy, v1 Namespace, v1 List)")
        }
    }

    /// metadata: a name (and for a policy its namespace); labels and
    /// annotations; what `kubectl get -o yaml` adds (uid, resourceVersion,
    /// generation, creationTimestamp, managedFields) carries no rule and is taken as it is.
    func metadata(_ o: JSONObject, _ path: String, policy: Bool) throws(PolicyError) -> (name: String, namespace: String, labels: [String: String]) {
        let at = join(path, "metadata")
        guard let value = o["metadata"] else { throw fail(at, "is required (with a name)") }
        var known = ["name", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"]
        if policy { known.append("namespace") }
        let m = try object(value, at, known: known)
        guard let name = try string(m["name"], join(at, "name")) else { throw fail(join(at, "name"), "is required") }
        if let problem = KubernetesNames.nameProblem(name, subdomain: policy) { throw fail(join(at, "name"), "\"\(name)\" \(problem)") }
        let namespace = try string(m["namespace"], join(at, "namespace")) ?? "default"
        if let problem = KubernetesNames.nameProblem(namespace, subdomain: false) {
            throw fail(join(at, "namespace"), "\"\(namespace)\" \(problem)")
        }
        return (name, namespace, try labels(m["labels"], join(at, "labels")))
    }

    func labels(_ value: JSON?, _ path: String) throws(PolicyError) -> [String: String] {
        guard let value, value != .null else { return [:] }
        guard let o = value.objectValue else { throw fail(path, "expected a mapping of label keys to values, got \(value.typeName)") }
        var out: [String: String] = [:]
        for (key, v) in o.entries {
            guard let s = v.stringValue else { throw fail(join(path, key), "a label's value must be a string, got \(v.typeName)") }
            if let problem = KubernetesNames.labelProblem(key: key, value: s) { throw fail(join(path, key), problem) }
            out[key] = s
        }
        return out
    }

    func namespace(_ o: JSONObject, _ path: String) throws(PolicyError) -> PolicyNamespace {
        _ = try object(.object(o), path, known: ["apiVersion", "kind", "metadata", "spec", "status"])
        if let spec = o["spec"], spec != .object([:]) {
            _ = try object(spec, join(path, "spec"), known: ["finalizers"])
        }
        let m = try metadata(o, path, policy: false)
        return PolicyNamespace(name: m.name, labels: m.labels)
    }

    mutating func networkPolicy(_ o: JSONObject, _ path: String) throws(PolicyError) -> NetworkPolicy {
        _ = try object(.object(o), path, known: ["apiVersion", "kind", "metadata", "spec"])
        let m = try metadata(o, path, policy: true)
        policy = "\(m.namespace)/\(m.name)"
        let at = join(path, "spec")
        guard let specValue = o["spec"] else { throw fail(at, "is required") }
        let spec = try object(specValue, at, known: ["podSelector", "policyTypes", "ingress", "egress"])
        guard let selectorValue = spec["podSelector"] else { throw fail(join(at, "podSelector"), "is required ({} selects every pod of the namespace)") }
        let podSelector = try selector(selectorValue, join(at, "podSelector"))
        var types: Set<PolicyDirection>?
        if let given = spec["policyTypes"], given != .null {
            var t = Set<PolicyDirection>()
            for (i, v) in try array(given, join(at, "policyTypes")).enumerated() {
                guard let s = v.stringValue, let d = PolicyDirection(rawValue: s) else {
                    throw fail("\(join(at, "policyTypes"))[\(i)]", "\(v.serialized()) is not Ingress or Egress")
                }
                t.insert(d)
            }
            if t.isEmpty { throw fail(join(at, "policyTypes"), "is empty: give Ingress, Egress or both, or leave it out") }
            types = t
        }
        let ingress = try rules(spec["ingress"], join(at, "ingress"), peersKey: "from")
        let egress = try rules(spec["egress"], join(at, "egress"), peersKey: "to")
        return NetworkPolicy(name: m.name, namespace: m.namespace, podSelector: podSelector, policyTypes: types,
                             ingress: ingress, egress: egress)
    }

    func rules(_ value: JSON?, _ path: String, peersKey: String) throws(PolicyError) -> [PolicyRule] {
        var out: [PolicyRule] = []
        for (i, item) in try array(value, path).enumerated() {
            let at = "\(path)[\(i)]"
            let r = try object(item, at, known: [peersKey, "ports"])
            var peers: [PolicyPeer] = []
            for (j, p) in try array(r[peersKey], join(at, peersKey)).enumerated() {
                peers.append(try peer(p, "\(join(at, peersKey))[\(j)]"))
            }
            var ports: [PortRange] = []
            for (j, p) in try array(r["ports"], join(at, "ports")).enumerated() {
                ports.append(try port(p, "\(join(at, "ports"))[\(j)]"))
            }
            out.append(PolicyRule(peers: peers, ports: ports))
        }
        return out
    }

    func peer(_ value: JSON, _ path: String) throws(PolicyError) -> PolicyPeer {
        let p = try object(value, path, known: ["podSelector", "namespaceSelector", "ipBlock"])
        if let block = p["ipBlock"], block != .null {
            if p["podSelector"] != nil || p["namespaceSelector"] != nil {
                throw fail(path, "ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
            }
            let b = try object(block, join(path, "ipBlock"), known: ["cidr", "except"])
            let cidr = try prefix(b["cidr"], join(join(path, "ipBlock"), "cidr"), required: true)!
            var except: [IPPrefix] = []
            for (i, e) in try array(b["except"], join(join(path, "ipBlock"), "except")).enumerated() {
                let at = "\(join(join(path, "ipBlock"), "except"))[\(i)]"
                let x = try prefix(e, at, required: true)!
                guard x.family == cidr.family, cidr.contains(x.address), x.prefixLength >= cidr.prefixLength else {
                    throw fail(at, "\(x) is not inside the block's cidr \(cidr)")
                }
                except.append(x)
            }
            return .ipBlock(cidr: cidr, except: except)
        }
        let namespaces = try p["namespaceSelector"].map { (v) throws(PolicyError) in try selector(v, join(path, "namespaceSelector")) }
        let pods = try p["podSelector"].map { (v) throws(PolicyError) in try selector(v, join(path, "podSelector")) }
        if namespaces == nil && pods == nil {
            throw fail(path, "a peer needs podSelector, namespaceSelector or ipBlock")
        }
        return .pods(namespaces: namespaces, pods: pods)
    }

    func prefix(_ value: JSON?, _ path: String, required: Bool) throws(PolicyError) -> IPPrefix? {
        guard let text = try string(value, path) else {
            if required { throw fail(path, "is required (a CIDR such as 10.0.0.0/8)") }
            return nil
        }
        guard let p = IPPrefix(text) else { throw fail(path, "\"\(text)\" is not a CIDR (such as 10.0.0.0/8)") }
        return p.network
    }

    func port(_ value: JSON, _ path: String) throws(PolicyError) -> PortRange {
        let p = try object(value, path, known: ["protocol", "port", "endPort"])
        let protoText = try string(p["protocol"], join(path, "protocol")) ?? "TCP"
        guard let proto = TransportProtocol(rawValue: protoText) else {
            throw fail(join(path, "protocol"), "\"\(protoText)\" is not TCP, UDP or SCTP")
        }
        var first: UInt16?
        switch p["port"] {
        case nil, .null?: first = nil
        case .number?:
            guard let n = p["port"]?.intValue, (1...65535).contains(n) else { throw fail(join(path, "port"), "must be 1-65535") }
            first = UInt16(n)
        case .string(let name)?:
            throw fail(join(path, "port"), "the named port \"\(name)\" is not supported: give the port's number")
        case let other?:
            throw fail(join(path, "port"), "expected a port number, got \(other.typeName)")
        }
        var last = first
        if let endValue = p["endPort"], endValue != .null {
            guard let start = first else { throw fail(join(path, "endPort"), "needs a numeric port to start the range") }
            guard let n = endValue.intValue, (1...65535).contains(n), n >= Int(start) else {
                throw fail(join(path, "endPort"), "must be a port number from port (\(start)) to 65535")
            }
            last = UInt16(n)
        }
        return PortRange(proto: proto, first: first, last: last)
    }

    func selector(_ value: JSON, _ path: String) throws(PolicyError) -> LabelSelector {
        if value == .null { return .everything }
        let s = try object(value, path, known: ["matchLabels", "matchExpressions"])
        let matchLabels = try labels(s["matchLabels"], join(path, "matchLabels"))
        var expressions: [LabelSelector.Requirement] = []
        for (i, item) in try array(s["matchExpressions"], join(path, "matchExpressions")).enumerated() {
            let at = "\(join(path, "matchExpressions"))[\(i)]"
            let e = try object(item, at, known: ["key", "operator", "values"])
            guard let key = try string(e["key"], join(at, "key")) else { throw fail(join(at, "key"), "is required") }
            if let problem = KubernetesNames.labelKeyProblem(key) { throw fail(join(at, "key"), "label key \"\(key)\" \(problem)") }
            let opText = try string(e["operator"], join(at, "operator")) ?? ""
            guard let op = LabelSelector.Requirement.Operator(rawValue: opText) else {
                throw fail(join(at, "operator"), "\"\(opText)\" is not In, NotIn, Exists or DoesNotExist")
            }
            var values: [String] = []
            for (j, v) in try array(e["values"], join(at, "values")).enumerated() {
                guard let s = v.stringValue else { throw fail("\(join(at, "values"))[\(j)]", "expected a string, got \(v.typeName)") }
                if let problem = KubernetesNames.labelValueProblem(s) { throw fail("\(join(at, "values"))[\(j)]", "label value \"\(s)\" \(problem)") }
                values.append(s)
            }
            let takesValues = op == .in || op == .notIn
            if takesValues && values.isEmpty { throw fail(join(at, "values"), "\(opText) needs at least one value") }
            if !takesValues && !values.isEmpty { throw fail(join(at, "values"), "\(opText) takes no values") }
            expressions.append(LabelSelector.Requirement(key: key, op: op, values: values))
        }
        return LabelSelector(matchLabels: matchLabels, matchExpressions: expressions)
    }
}
