import ArgumentParser
import BerthCNI
import BerthEndpoints
import BerthNet
import BerthPolicy
import BerthPolicyFiles
import BerthSystem

/// Who a pod is, for policy: `--namespace` and `--label KEY=VALUE` (passed to
/// the plugins as `args.cni.namespace` and `args.cni.labels`).
struct PodIdentityOptions: ParsableArguments {
    @Option(help: "The pod's namespace, for network policy (default: default).") var namespace: String?
    @Option(name: .customLong("label"), help: "A label of the pod, KEY=VALUE, for network policy (repeatable).") var labels: [String] = []

    func validate() throws {
        if let namespace, let problem = KubernetesNames.nameProblem(namespace, subdomain: false) {
            throw ValidationError("--namespace \"\(namespace)\" \(problem)")
        }
        _ = try labelMap()
    }

    func labelMap() throws -> [String: String] {
        var out: [String: String] = [:]
        for item in labels {
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--label \(item): expected KEY=VALUE") }
            let key = String(item[..<eq]), value = String(item[item.index(after: eq)...])
            if let problem = KubernetesNames.labelProblem(key: key, value: value) { throw ValidationError("--label \(item): \(problem)") }
            out[key] = value
        }
        return out
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Network policy (Kubernetes NetworkPolicy semantics).",
        subcommands: [PolicyApply.self, PolicyDelete.self, PolicyList.self, PolicyShow.self, PolicyCheck.self])
}

struct PolicyCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Say whether policies would let a new connection through, and which policy decides.",
        discussion: """
            FROM and TO are pods this node has attached (NAMESPACE/NAME, or one of their addresses), \
            another address, or `node` (the pod's own node, FROM only). PORT is NUMBER[/tcp|udp|sctp]. \
            Exits 0 when the connection would pass, 1 when not.
            """)

    @Option(name: [.short, .customLong("file")], help: "Policies and namespaces: YAML or JSON (default: those in force).", completion: .file(extensions: ["yaml", "yml", "json"])) var file: String?
    @Argument var from: String
    @Argument var to: String
    @Argument var port: String
    @Option(help: ArgumentHelp("Where the plugin records the node's endpoints.", visibility: .hidden))
    var endpoints: String = EndpointStore.defaultDirectory

    func run() throws {
        let set = try file.map(readPolicyFile) ?? policiesInForce().policies
        let pods = try knownPods()
        let (number, proto) = try parsePort()
        let verdict = set.verdict(from: try endpoint(from, pods, role: "FROM"), to: try endpoint(to, pods, role: "TO"),
                                  port: number, proto: proto)
        print(verdict.description)
        if !verdict.allowed { throw ExitCode(1) }
    }

    /// The node's recorded endpoints as pods, one per namespace and name (its addresses on every network).
    func knownPods() throws -> [String: PolicyPod] {
        var pods: [String: PolicyPod] = [:]
        let recorded: [Endpoint]
        do { recorded = try EndpointStore(directory: endpoints).all() } catch { throw CLIError("cannot read the endpoints in \(endpoints): \(error)") }
        for e in recorded {
            let key = "\(e.identity.namespace)/\(e.identity.name)"
            var pod = pods[key] ?? PolicyPod(name: e.identity.name, namespace: e.identity.namespace, labels: e.identity.labels, addresses: [])
            pod.addresses += e.addresses
            pods[key] = pod
        }
        return pods
    }

    func endpoint(_ text: String, _ pods: [String: PolicyPod], role: String) throws -> PolicyEndpoint {
        if text == "node" {
            guard role == "FROM" else { throw CLIError("TO \(text): node is a source only (what reaches a node is not policy's)") }
            return .node
        }
        if let address = IPAddress(text) {
            if let pod = pods.values.first(where: { $0.addresses.contains(address) }) { return .pod(pod) }
            return .external(address)
        }
        guard let pod = pods[text] else {
            let known = pods.keys.sorted()
            throw CLIError("\(role) \(text): no pod of that NAMESPACE/NAME is attached on this node"
                           + (known.isEmpty ? "" : " (attached: \(known.joined(separator: ", ")))"))
        }
        return .pod(pod)
    }

    func parsePort() throws -> (UInt16, TransportProtocol) {
        let parts = port.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let n = UInt16(parts[0]), n > 0 else { throw CLIError("PORT \(port): expected NUMBER[/tcp|udp|sctp]") }
        guard let proto = parts.count == 2 ? TransportProtocol(rawValue: parts[1].uppercased()) : .tcp else {
            throw CLIError("PORT \(port): the protocol is tcp, udp or sctp")
        }
        return (n, proto)
    }
}
