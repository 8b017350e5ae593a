import ArgumentParser
import BerthCNI
import BerthCluster
import BerthJSON
import Foundation

@main
struct BerthAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth-agent",
        abstract: "Berth across nodes: per-node blocks leased from etcd, routes or VXLAN between nodes.",
        subcommands: [Run.self, Init.self, Show.self, Nodes.self])
}

struct ClusterOptions: ParsableArguments {
    @Option(help: "etcd's client URL (http://ADDRESS:PORT).") var etcd: String = "http://127.0.0.1:2379"
    @Option(name: .customLong("cluster"), help: "The cluster network's name.") var cluster: String

    /// The cluster's declaration as etcd holds it.
    func declaration(_ client: EtcdClient) async throws -> ClusterConfig {
        guard let item = try await client.get(ClusterConfig.configKey(cluster)) else {
            throw ValidationError("cluster \(cluster) is not declared in etcd at \(etcd)")
        }
        return try ClusterConfig(json: try JSON.parse(item.value))
    }
}

/// A line on stderr with the time, for the agent's log.
@Sendable func logLine(_ text: String) {
    let stamp = ISO8601DateFormatter().string(from: Date())
    FileHandle.standardError.write(Data("\(stamp) berth-agent: \(text)\n".utf8))
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Hold a block for this node and keep routes to the others (runs until stopped).")
    @OptionGroup var options: ClusterOptions
    @Option(help: "This node's name (default: the host name).") var node: String?
    @Option(help: "This node's underlay address, where other nodes reach it.") var address: String
    @Option(help: "Where the node's block is written for berth-ipam's subnetFile.") var subnetFile: String?
    @Option(help: "The lease's life in seconds: a node silent for longer loses its block.") var ttl: Int = 60

    func validate() throws {
        guard IPAddress(address)?.family == .v4 else { throw ValidationError("--address \(address) is not an IPv4 address") }
        guard ttl >= 2 else { throw ValidationError("--ttl must be at least 2 seconds") }
    }

    func run() async throws {
        let name = node ?? ProcessInfo.processInfo.hostName
        if let problem = NetworkConfig.networkNameProblem(name) { throw ValidationError("node name \"\(name)\": \(problem)") }
        let agent = Agent(options: AgentOptions(etcd: options.etcd, cluster: options.cluster, node: name,
                                                address: IPAddress(address)!, subnetFile: subnetFile, ttl: ttl),
                          log: logLine)
        let task = Task { await agent.run() }
        // SIGTERM and SIGINT end the agent, its lease left to expire (a restart takes the block back).
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig)
            source.setEventHandler { task.cancel() }
            source.resume()
            Self.signalSources.append(source)
        }
        await task.value
    }

    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Declare a cluster network in etcd.")
    @OptionGroup var options: ClusterOptions
    @Option(help: "The cluster's range, for example 10.244.0.0/16.") var network: String
    @Option(help: "The prefix length of a node's block.") var blockLength: Int = ClusterConfig.defaultBlockLength
    @Option(help: "host-gw (nodes share an L2 segment) or vxlan.") var mode: String = ClusterMode.hostGateway.rawValue
    @Option(help: "VXLAN network identifier.") var vni: Int = 1
    @Option(help: "VXLAN UDP port.") var port: Int = ClusterConfig.defaultPort
    @Flag(help: "Replace an existing declaration that differs.") var force = false

    func run() async throws {
        guard let prefix = IPPrefix(network) else { throw ValidationError("--network \(network) is not a prefix") }
        guard let mode = ClusterMode(rawValue: mode) else { throw ValidationError("--mode must be host-gw or vxlan") }
        let config = try ClusterConfig(name: options.cluster, network: prefix, blockLength: blockLength, mode: mode, vni: vni, port: port)
        let etcd = EtcdClient(endpoint: options.etcd)
        defer { Task { await etcd.shutdown() } }
        let bytes = Array(config.json.serialized().utf8)
        if try await etcd.create(config.configKey, bytes, lease: 0) {
            print("cluster \(config.name) declared: \(config.network), /\(config.blockLength) blocks, \(mode.rawValue)")
            return
        }
        let existing = try await etcd.get(config.configKey).flatMap { try? ClusterConfig(json: JSON.parse($0.value)) }
        if existing == config { print("cluster \(config.name) is declared already, the same"); return }
        guard force else {
            throw ValidationError("cluster \(config.name) is declared already, differently: \(existing?.json.serialized() ?? "unreadable") (--force replaces it)")
        }
        try await etcd.put(config.configKey, bytes)
        print("cluster \(config.name) replaced")
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a cluster network's declaration.")
    @OptionGroup var options: ClusterOptions
    func run() async throws {
        let etcd = EtcdClient(endpoint: options.etcd)
        defer { Task { await etcd.shutdown() } }
        print(try await options.declaration(etcd).json.serialized(pretty: true))
    }
}

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the nodes holding blocks: node, address, block, mode, lease age.")
    @OptionGroup var options: ClusterOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        let etcd = EtcdClient(endpoint: options.etcd)
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        let now = Int(Date().timeIntervalSince1970)
        let records = try await etcd.list(prefix: config.nodesPrefix).items
            .compactMap { (try? JSON.parse($0.value)).flatMap(NodeRecord.init(json:)) }
            .sorted { $0.block.address < $1.block.address }
        if json {
            print(JSON.array(records.map { r in
                var o = r.json.objectValue ?? [:]
                o["mode"] = .string(config.mode.rawValue)
                o["leaseAge"] = .int(now - r.since)
                return .object(o)
            }).serialized(pretty: true))
            return
        }
        let rows = [["NODE", "ADDRESS", "BLOCK", "MODE", "LEASE AGE"]] + records.map {
            [$0.node, $0.address.description, $0.block.description, config.mode.rawValue, "\(now - $0.since)s"]
        }
        let widths = (0..<5).map { i in rows.map { $0[i].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { i, cell in i == 4 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined())
        }
    }
}
