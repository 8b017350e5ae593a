#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BerthEndpoints
import BerthEnforcement
import BerthFirewall
import BerthJSON
import BerthPolicy
import BerthPolicyFiles
import BerthSystem

/// Reads a policy file (YAML or JSON), naming the file in every problem.
func readPolicyFile(_ file: String) throws -> PolicySet {
    let text: String
    do {
        text = String(decoding: try OwnedDescriptor(openingForReading: file).readAll(), as: UTF8.self)
    } catch {
        throw CLIError("cannot read policy file \(file): \(error)")
    }
    do { return try PolicyDocuments.read(text) } catch { throw CLIError("\(file): \(error)") }
}

/// What is in force on this node (nothing: an empty set).
func policiesInForce(_ state: PolicyStateStore = PolicyStateStore()) throws -> AppliedPolicies {
    do { return try state.read() ?? AppliedPolicies(policies: PolicySet()) } catch {
        throw CLIError(geteuid() == 0 ? "\(error)" : "reading the policies in force needs root: \(error)")
    }
}

/// The node's pods as policy sees them.
func nodePods(_ directory: String) throws -> [PolicyPod] {
    do { return try EndpointStore(directory: directory).all().map(\.pod) } catch {
        throw CLIError("cannot read the endpoints in \(directory): \(error)")
    }
}

func requireRootForPolicy() throws {
    if geteuid() != 0 { throw CLIError("changing network policy needs root: it writes nftables rules and /run/berth/policy") }
}

/// Puts `applied` in force and says what changed.
func enforce(_ applied: AppliedPolicies, endpoints: String, verb: String) throws {
    try requireRootForPolicy()
    let start = monotonicSeconds()
    let outcome: ApplyOutcome
    do {
        outcome = try PolicyEnforcement.apply(applied, pods: { try nodePods(endpoints) })
    } catch let error as FirewallError {
        throw CLIError("nothing was changed: \(error)")
    } catch {
        throw CLIError("\(error)")
    }
    let ms = (monotonicSeconds() - start) * 1000
    print("\(verb): \(outcome.policies) \(outcome.policies == 1 ? "policy" : "policies") in force "
          + "(\(outcome.groups) pod groups, \(outcome.rules) rules), in \(String(format: "%.1f", ms)) ms")
}

/// `--cluster NAME --etcd URL`: the cluster's policies in etcd (through
/// berth-agent, which links the etcd client) instead of this node's.
struct ClusterPolicyOptions: ParsableArguments {
    @Option(help: "Work on this cluster's policies in etcd (every node's agent enforces them) instead of this node's.")
    var cluster: String?
    @Option(help: "etcd's client URL, with --cluster (default: BERTH_ETCD_ENDPOINT, /etc/default/berth-agent, http://127.0.0.1:2379).")
    var etcd: String?
    @Option(name: .customLong("etcd-cafile"), help: ArgumentHelp("With --cluster: the CA etcd's certificate is signed by.", valueName: "file"))
    var etcdCAFile: String?
    @Option(name: .customLong("etcd-certfile"), help: ArgumentHelp("With --cluster: a client certificate for etcd.", valueName: "file"))
    var etcdCertFile: String?
    @Option(name: .customLong("etcd-keyfile"), help: ArgumentHelp("With --cluster: its key.", valueName: "file"))
    var etcdKeyFile: String?
    @Option(name: .customLong("etcd-username"), help: ArgumentHelp("With --cluster: the etcd user.", valueName: "user"))
    var etcdUsername: String?
    @Option(name: .customLong("etcd-password"), help: ArgumentHelp("With --cluster: its password.", valueName: "password"))
    var etcdPassword: String?
    @Option(name: .customLong("etcd-password-file"), help: ArgumentHelp("With --cluster: a file holding its password.", valueName: "file"))
    var etcdPasswordFile: String?

    /// Hands `arguments` of `berth-agent policy` over when --cluster is given; returns otherwise.
    func handOverIfCluster(_ subcommand: String, _ arguments: [String]) throws {
        guard let cluster else {
            if etcd != nil || etcdCAFile != nil || etcdCertFile != nil || etcdKeyFile != nil || etcdUsername != nil
                || etcdPassword != nil || etcdPasswordFile != nil {
                throw CLIError("the --etcd options work on a cluster's policies: give --cluster NAME too")
            }
            return
        }
        var etcdArguments: [String] = []
        for (flag, value) in [("--etcd", etcd), ("--etcd-cafile", etcdCAFile.map(absolutePath)),
                              ("--etcd-certfile", etcdCertFile.map(absolutePath)), ("--etcd-keyfile", etcdKeyFile.map(absolutePath)),
                              ("--etcd-username", etcdUsername), ("--etcd-password", etcdPassword),
                              ("--etcd-password-file", etcdPasswordFile.map(absolutePath))] {
            if let value { etcdArguments += [flag, value] }
        }
        try ClusterCommand.handOver(["policy", subcommand, "--cluster", cluster] + etcdArguments + arguments,
                                    commandName: "berthctl")
    }
}

/// A path as berth-agent (started in the same directory) will find it.
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
}

/// "NAMESPACE/NAME" from NAME and a default namespace.
func qualifiedPolicyName(_ name: String, namespace: String) -> String {
    name.contains("/") ? name : "\(namespace)/\(name)"
}

func noSuchPolicy(_ names: [String], _ applied: AppliedPolicies) -> CLIError {
    let known = applied.policies.policies.map(\.qualifiedName).sorted()
    return CLIError("no such policy in force: \(names.joined(separator: ", "))"
                    + (known.isEmpty ? " (none is)" : " (in force: \(known.joined(separator: ", ")))"))
}

struct PolicyApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Put the policies and namespaces of a file in force on this node, as kubectl apply does.",
        discussion: "A policy or namespace of the same name is replaced; the others in force stay. The change is one "
            + "nftables transaction: the old rules hold until the new ones do. With --log GROUP, drops are logged "
            + "to NFLOG group GROUP with the policy's name (tcpdump -i nflog:GROUP shows them); --no-log stops that.")

    @Option(name: [.short, .customLong("file")], help: "Policies and namespaces: YAML (one or many documents) or JSON.", completion: .file(extensions: ["yaml", "yml", "json"])) var file: String
    @Option(help: "Log drops to this NFLOG group (1-65535).") var log: Int?
    @Flag(help: "Stop logging drops.") var noLog = false
    @OptionGroup var clusterOptions: ClusterPolicyOptions
    @Option(help: ArgumentHelp("Where the plugin records the node's endpoints.", visibility: .hidden))
    var endpoints: String = EndpointStore.defaultDirectory

    func validate() throws {
        if let log, !(1...65535).contains(log) { throw ValidationError("--log \(log): an NFLOG group is 1-65535") }
        if log != nil && noLog { throw ValidationError("--log and --no-log: give one") }
        if clusterOptions.cluster != nil && (log != nil || noLog) {
            throw ValidationError("--log and --no-log are a node's: give them to berth-agent run (--policy-log)")
        }
    }

    func run() throws {
        let given = try readPolicyFile(file)
        try clusterOptions.handOverIfCluster("apply", ["-f", absolutePath(file)])
        try requireRootForPolicy()
        var applied = try policiesInForce()
        applied.policies.merge(given)
        if let log { applied.logGroup = log }
        if noLog { applied.logGroup = nil }
        try enforce(applied, endpoints: endpoints, verb: "applied \(file)")
    }
}

struct PolicyDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Take policies out of force: those of a file, or by name.",
        discussion: "NAME is NAMESPACE/NAME, or NAME of --namespace (default: default). The namespaces of a file are forgotten too.")

    @Option(name: [.short, .customLong("file")], help: "The policies (and namespaces) to delete.", completion: .file(extensions: ["yaml", "yml", "json"])) var file: String?
    @Option(help: "The namespace of bare names.") var namespace: String = "default"
    @Argument(help: "Policies to delete.") var names: [String] = []
    @Flag(help: "Delete every policy and namespace in force (the table goes).") var all = false
    @OptionGroup var clusterOptions: ClusterPolicyOptions
    @Option(help: ArgumentHelp("Where the plugin records the node's endpoints.", visibility: .hidden))
    var endpoints: String = EndpointStore.defaultDirectory

    func validate() throws {
        if file == nil && names.isEmpty && !all { throw ValidationError("give -f FILE, a policy's NAME or --all") }
        if all && (file != nil || !names.isEmpty) { throw ValidationError("--all deletes everything: give no file or name with it") }
    }

    func run() throws {
        if let file { _ = try readPolicyFile(file) }
        try clusterOptions.handOverIfCluster("delete", (file.map { ["-f", absolutePath($0)] } ?? []) + ["--namespace", namespace]
                                             + (all ? ["--all"] : []) + names)
        try requireRootForPolicy()
        var applied = try policiesInForce()
        if all {
            let count = applied.policies.policies.count
            applied.policies = PolicySet()
            try enforce(applied, endpoints: endpoints, verb: "deleted \(count)")
            return
        }
        var wanted = names.map { qualifiedPolicyName($0, namespace: namespace) }
        var namespaces: [String] = []
        if let file {
            let given = try readPolicyFile(file)
            wanted += given.policies.map(\.qualifiedName)
            namespaces = Array(given.namespaces.keys)
        }
        let inForce = Set(applied.policies.policies.map(\.qualifiedName))
        let missing = wanted.filter { !inForce.contains($0) }
        if !missing.isEmpty { throw noSuchPolicy(missing, applied) }
        applied.policies.policies.removeAll { wanted.contains($0.qualifiedName) }
        for ns in namespaces { applied.policies.namespaces[ns] = nil }
        try enforce(applied, endpoints: endpoints, verb: "deleted \(wanted.count)")
    }
}

struct PolicyList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the policies in force: what they select on this node and what they dropped.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var clusterOptions: ClusterPolicyOptions
    @Option(help: ArgumentHelp("Where the plugin records the node's endpoints.", visibility: .hidden))
    var endpoints: String = EndpointStore.defaultDirectory

    func run() throws {
        try clusterOptions.handOverIfCluster("ls", json ? ["--json"] : [])
        let applied = try policiesInForce()
        let pods = try nodePods(endpoints)
        let drops = (try? PolicyTable.dropCounts()) ?? [:]
        var rows: [[String]] = [["POLICY", "NAMESPACE", "TYPES", "PODS", "DROPS"]]
        var items: [JSON] = []
        for p in applied.policies.policies.sorted(by: { $0.qualifiedName < $1.qualifiedName }) {
            let selected = pods.filter { $0.namespace == p.namespace && p.podSelector.matches($0.labels) }.count
            let types = PolicyDirection.allCases.filter { p.policyTypes.contains($0) }
            let dropped = types.reduce(0) { $0 + (drops[PolicyRuleset.counterName(p, $1)] ?? 0) }
            rows.append([p.name, p.namespace, types.map(\.rawValue).joined(separator: ","), String(selected), String(dropped)])
            items.append(.object(["policy": .string(p.name), "namespace": .string(p.namespace),
                                  "policyTypes": .array(types.map { .string($0.rawValue) }),
                                  "pods": .int(selected), "drops": .int(dropped)]))
        }
        if json {
            print(JSON.object(["policies": .array(items), "logGroup": applied.logGroup.map { .int($0) } ?? .null]).serialized(pretty: true))
        } else if items.isEmpty {
            print("no policy in force")
        } else {
            printTable(rows)
        }
    }
}

struct PolicyShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a policy in force: its rules in words, what each accepted and what it dropped.")

    @Argument(help: "NAMESPACE/NAME, or NAME of --namespace.") var name: String
    @Option(help: "The namespace of a bare name.") var namespace: String = "default"
    @Option(help: ArgumentHelp("Where the plugin records the node's endpoints.", visibility: .hidden))
    var endpoints: String = EndpointStore.defaultDirectory

    func run() throws {
        let applied = try policiesInForce()
        let qualified = qualifiedPolicyName(name, namespace: namespace)
        guard let p = applied.policies.policies.first(where: { $0.qualifiedName == qualified }) else {
            throw noSuchPolicy([qualified], applied)
        }
        let pods = try nodePods(endpoints).filter { $0.namespace == p.namespace && p.podSelector.matches($0.labels) }
        let drops = (try? PolicyTable.dropCounts()) ?? [:]
        print("policy \(qualified)")
        let names = pods.map(\.name).sorted().joined(separator: ", ")
        print("  applies to: \(p.selectedGroup.words) (\(pods.count) on this node\(pods.isEmpty ? "" : ": \(names)"))")
        for direction in PolicyDirection.allCases where p.policyTypes.contains(direction) {
            let counts = (try? PolicyTable.ruleCounts(chain: PolicyRuleset.chainName(p, direction))) ?? [:]
            let label = direction == .ingress ? "ingress" : "egress"
            for (comment, words) in p.ruleWords where comment.hasPrefix(label) {
                let accepted = counts[comment].map { " [\($0) packets accepted]" } ?? ""
                print("  \(comment): \(words)\(accepted)")
            }
            print("  \(label) drops: \(drops[PolicyRuleset.counterName(p, direction)] ?? 0) packets")
        }
        if let group = applied.logGroup { print("  drops are logged to NFLOG group \(group)") }
    }
}
