/// Names and labels as Kubernetes allows them: a pod's namespace and
/// labels arrive in CNI_ARGS and `args.cni`, and policies select by them.
public enum KubernetesNames {
    /// Label keys and values as Kubernetes allows them: a value of at most
    /// 63 characters, alphanumeric at both ends, `-_.` between; a key the
    /// same, with an optional DNS-subdomain prefix and '/'.
    public static func labelValueProblem(_ value: String) -> String? {
        if value.isEmpty { return nil }
        if value.utf8.count > 63 { return "is longer than 63 characters" }
        let bytes = Array(value.utf8)
        func alnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
        guard alnum(bytes.first!), alnum(bytes.last!), bytes.allSatisfy({ alnum($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }) else {
            return "must be letters, digits, '-', '_' or '.', and begin and end with a letter or digit"
        }
        return nil
    }

    /// What is wrong with the label `key: value`, as one message, or nil.
    public static func labelProblem(key: String, value: String) -> String? {
        if let problem = labelKeyProblem(key) { return "label key \"\(key)\" \(problem)" }
        if let problem = labelValueProblem(value) { return "label value \"\(value)\" \(problem)" }
        return nil
    }

    public static func labelKeyProblem(_ key: String) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let name = parts.last, !name.isEmpty else { return "is not a label key (PREFIX/NAME or NAME)" }
        if let problem = labelValueProblem(String(name)) { return "its name \(problem)" }
        if parts.count == 2 {
            let prefix = parts[0]
            if prefix.isEmpty || prefix.utf8.count > 253 { return "its prefix must be a DNS subdomain of at most 253 characters" }
            for label in prefix.split(separator: ".", omittingEmptySubsequences: false) {
                let b = Array(label.utf8)
                guard !b.isEmpty, b.count <= 63, b.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }),
                      b.first != 0x2D, b.last != 0x2D else { return "its prefix \(prefix) is not a DNS subdomain" }
            }
        }
        return nil
    }

    /// A name as podman passes it (`K8S_POD_NAME` and `K8S_POD_NAMESPACE` are
    /// the container's name, which may hold capitals and '_') folded into
    /// Kubernetes' form: lower case, '_' as '-'. A Kubernetes name is unchanged.
    public static func folded(_ text: String) -> String {
        String(text.lowercased().map { $0 == "_" ? "-" : $0 })
    }

    /// A name of a namespace or policy: a DNS label (namespaces) or subdomain (policies), lower case.
    public static func nameProblem(_ name: String, subdomain: Bool) -> String? {
        let limit = subdomain ? 253 : 63
        if name.isEmpty { return "is empty" }
        if name.utf8.count > limit { return "is longer than \(limit) characters" }
        let labels = subdomain ? name.split(separator: ".", omittingEmptySubsequences: false) : [Substring(name)]
        for label in labels {
            let b = Array(label.utf8)
            guard !b.isEmpty, b.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }),
                  b.first != 0x2D, b.last != 0x2D else {
                return "must be lower-case letters, digits and '-'\(subdomain ? " (and '.' between such parts)" : ""), not begin or end with '-'"
            }
        }
        return nil
    }
}

/// Who a pod is, as policy sees it: its namespace (`K8S_POD_NAMESPACE` in
/// CNI_ARGS, as kubelet, CRI-O and podman pass it, or `args.cni.namespace`;
/// "default" otherwise), its name (`K8S_POD_NAME`, or `args.cni.podName`;
/// the container ID otherwise) and its labels (`args.cni.labels`, a map of
/// strings, which libcni passes through).
public struct PodIdentity: Equatable, Sendable {
    public var namespace: String
    public var name: String
    public var labels: [String: String]

    public init(namespace: String = "default", name: String, labels: [String: String] = [:]) {
        self.namespace = namespace
        self.name = name
        self.labels = labels
    }

    /// Reads the identity from a config (`top`) and CNI_ARGS; every value is
    /// checked, and a bad one is an error naming where it came from (4 for
    /// CNI_ARGS, 7 for the config).
    public static func read(top: FieldReader, cniArgs: [(key: String, value: String)], containerID: String) throws(CNIError) -> PodIdentity {
        var namespace = "default"
        if let given = try RuntimeInput.values("namespace", cniArgsKey: "K8S_POD_NAMESPACE", in: top, cniArgs: cniArgs, list: false).first {
            let text = KubernetesNames.folded(given.text)
            if let problem = KubernetesNames.nameProblem(text, subdomain: false) { throw given.error(problem) }
            namespace = text
        }
        var name = containerID
        if let given = try RuntimeInput.values("podName", cniArgsKey: "K8S_POD_NAME", in: top, cniArgs: cniArgs, list: false).first {
            let text = KubernetesNames.folded(given.text)
            if let problem = KubernetesNames.nameProblem(text, subdomain: true) { throw given.error(problem) }
            name = text
        }
        var labels: [String: String] = [:]
        if let reader = try top.object("args")?.object("cni")?.object("labels") {
            for (key, value) in reader.object.entries {
                guard let text = value.stringValue else { throw reader.error(key, "a label's value must be a string, got \(value.typeName)") }
                if let problem = KubernetesNames.labelProblem(key: key, value: text) { throw reader.error(key, problem) }
                labels[key] = text
            }
        }
        return PodIdentity(namespace: namespace, name: name, labels: labels)
    }
}
