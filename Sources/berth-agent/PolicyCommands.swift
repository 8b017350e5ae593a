import ArgumentParser
import BerthCluster
import BerthJSON
import BerthPolicy
import BerthPolicyFiles
import BerthNet
import Foundation

/// `berthctl policy ... --cluster NAME`: the cluster's policies in etcd,
/// which every node's agent puts in force.
struct Policy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A cluster's network policies in etcd (every node's agent enforces them).",
        subcommands: [PolicyApply.self, PolicyDelete.self, PolicyList.self])
}

/// Reads a policy file, naming it in every problem.
func readPolicies(_ file: String) throws -> PolicySet {
    guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read policy file \(file)") }
    do { return try PolicyDocuments.read(String(decoding: data, as: UTF8.self)) } catch { throw ValidationError("\(file): \(error)") }
}

/// Writes `puts` and `deletes` in transactions of at most etcd's limit (one when they fit).
func writeAll(_ etcd: EtcdClient, puts: [(key: String, value: [UInt8])], deletes: [String]) async throws {
    var puts = puts, deletes = deletes
    repeat {
        let p = Array(puts.prefix(EtcdClient.maximumOperations))
        puts.removeFirst(p.count)
        let d = Array(deletes.prefix(EtcdClient.maximumOperations - p.count))
        deletes.removeFirst(d.count)
        try await etcd.write(puts: p, deletes: d, lease: 0)
    } while !puts.isEmpty || !deletes.isEmpty
}

struct PolicyApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Store the policies and namespaces of a file in etcd (one transaction when they are at most 128).")
    @OptionGroup var options: ClusterOptions
    @Option(name: [.short, .customLong("file")], help: "Policies and namespaces: YAML or JSON.") var file: String

    func run() async throws {
        let set = try readPolicies(file)
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        var puts: [(key: String, value: [UInt8])] = []
        for ns in set.namespaces.values.sorted(by: { $0.name < $1.name }) {
            puts.append((config.namespaceKey(ns.name), Array(ns.json.serialized().utf8)))
        }
        for p in set.policies {
            puts.append((config.policyKey(namespace: p.namespace, name: p.name), Array(p.json.serialized().utf8)))
        }
        guard !puts.isEmpty else { throw ValidationError("\(file) holds no policy or namespace") }
        try await writeAll(etcd, puts: puts, deletes: [])
        print("stored \(set.policies.count) policies and \(set.namespaces.count) namespaces of \(file) in cluster \(config.name)")
    }
}

struct PolicyDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete policies from etcd: by NAMESPACE/NAME, those of a file, or --all (namespaces too).")
    @OptionGroup var options: ClusterOptions
    @Option(name: [.short, .customLong("file")], help: "The policies (and namespaces) to delete.") var file: String?
    @Option(help: "The namespace of bare names.") var namespace: String = "default"
    @Argument(help: "Policies to delete.") var names: [String] = []
    @Flag(help: "Delete every policy and namespace of the cluster.") var all = false

    func validate() throws {
        if file == nil && names.isEmpty && !all { throw ValidationError("give -f FILE, a policy's NAME or --all") }
    }

    func run() async throws {
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        let stored = Set(try await etcd.list(prefix: config.policiesPrefix).items.map(\.key))
        var keys: [String] = []
        if all {
            keys = Array(stored) + (try await etcd.list(prefix: config.namespacesPrefix).items.map(\.key))
        } else {
            var wanted = names.map { name -> (String, String) in
                let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
                return parts.count == 2 ? (parts[0], parts[1]) : (namespace, name)
            }
            if let file {
                let set = try readPolicies(file)
                wanted += set.policies.map { ($0.namespace, $0.name) }
                keys += set.namespaces.keys.map(config.namespaceKey)
            }
            let missing = wanted.filter { !stored.contains(config.policyKey(namespace: $0.0, name: $0.1)) }
            if !missing.isEmpty {
                throw ValidationError("no such policy in cluster \(config.name): \(missing.map { "\($0.0)/\($0.1)" }.joined(separator: ", "))")
            }
            keys += wanted.map { config.policyKey(namespace: $0.0, name: $0.1) }
        }
        if !keys.isEmpty { try await writeAll(etcd, puts: [], deletes: keys) }
        print("deleted \(keys.filter { $0.hasPrefix(config.policiesPrefix) }.count) policies from cluster \(config.name)")
    }
}

struct PolicyList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the cluster's policies and the pods (of every node) each selects.")
    @OptionGroup var options: ClusterOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        var state = ClusterPolicyState(config: config, node: "")
        var owners: [IPPrefix: String] = [:]
        for item in try await etcd.list(prefix: config.blocksPrefix).items {
            if let b = config.block(fromKey: item.key) { owners[b] = String(decoding: item.value, as: UTF8.self) }
        }
        var problems: [String] = []
        for prefix in [config.namespacesPrefix, config.policiesPrefix, config.endpointsPrefix] {
            for item in try await etcd.list(prefix: prefix).items {
                if let p = state.put(item.key, item.value, owners: owners) { problems.append("\(item.key): \(p)") }
            }
        }
        let set = state.desired
        let pods = state.remote.values.map(\.pod)
        var rows = [["POLICY", "NAMESPACE", "TYPES", "PODS"]]
        var items: [JSON] = []
        for p in set.policies {
            let selected = pods.filter { $0.namespace == p.namespace && p.podSelector.matches($0.labels) }.count
            let types = PolicyDirection.allCases.filter { p.policyTypes.contains($0) }.map(\.rawValue)
            rows.append([p.name, p.namespace, types.joined(separator: ","), String(selected)])
            items.append(.object(["policy": .string(p.name), "namespace": .string(p.namespace),
                                  "policyTypes": .array(types.map { .string($0) }), "pods": .int(selected)]))
        }
        if json {
            print(JSON.object(["policies": .array(items), "problems": .array(problems.map { .string($0) })]).serialized(pretty: true))
            return
        }
        if items.isEmpty { print("no policy in cluster \(config.name)") } else {
            let widths = (0..<4).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { c, cell in c == 3 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        }
        for p in problems { print("ignored: \(p)") }
    }
}
