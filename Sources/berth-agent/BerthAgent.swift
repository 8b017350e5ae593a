import ArgumentParser
import BerthCNI
import BerthCluster
import BerthJSON
import BerthSystem
import Foundation
import BerthNet
import CoreMetrics
import Prometheus

@main
struct BerthAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        // `berthctl cluster ...` hands over to this program and says so, so
        // that help and usage lines name the command the person typed.
        commandName: ProcessInfo.processInfo.environment["BERTH_AGENT_COMMAND_NAME"] ?? "berth-agent",
        abstract: "Berth across nodes: per-node blocks leased from etcd, routes or VXLAN between nodes.",
        version: BerthVersion.string,
        subcommands: [Run.self, Init.self, Show.self, Nodes.self, Leave.self, Release.self, Policy.self])
}

struct ClusterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("etcd's client URL, http:// or https:// (default \(EtcdAccess.defaultEndpoint)).", valueName: "url"))
    var etcd: String?
    @Option(name: .customLong("cluster"), help: "The cluster network's name.") var cluster: String
    @Option(name: .customLong("etcd-cafile"), help: ArgumentHelp("The CA certificates (PEM) that etcd's certificate must be signed by.", valueName: "file"))
    var etcdCAFile: String?
    @Option(name: .customLong("etcd-certfile"), help: ArgumentHelp("This client's certificate (PEM), for etcd's --client-cert-auth.", valueName: "file"))
    var etcdCertFile: String?
    @Option(name: .customLong("etcd-keyfile"), help: ArgumentHelp("The key (PEM) of --etcd-certfile.", valueName: "file"))
    var etcdKeyFile: String?
    @Option(name: .customLong("etcd-username"), help: ArgumentHelp("The etcd user to be (etcd's RBAC).", valueName: "user"))
    var etcdUsername: String?
    @Option(name: .customLong("etcd-password"), help: ArgumentHelp("That user's password (visible to ps: prefer --etcd-password-file).", valueName: "password"))
    var etcdPassword: String?
    @Option(name: .customLong("etcd-password-file"), help: ArgumentHelp("A file holding that user's password.", valueName: "file"))
    var etcdPasswordFile: String?

    /// How to reach etcd: these flags, else BERTH_ETCD_* in the environment,
    /// else the defaults file (/etc/default/berth-agent, or BERTH_AGENT_DEFAULTS).
    func access() throws -> EtcdAccess {
        var flags: [EtcdAccess.Setting: String] = [:]
        flags[.endpoint] = etcd
        flags[.caFile] = etcdCAFile
        flags[.certFile] = etcdCertFile
        flags[.keyFile] = etcdKeyFile
        flags[.user] = etcdUsername
        flags[.password] = etcdPassword
        flags[.passwordFile] = etcdPasswordFile
        let environment = ProcessInfo.processInfo.environment
        let path = environment["BERTH_AGENT_DEFAULTS"] ?? EtcdAccess.defaultsFile
        var defaults: String?
        if let data = FileManager.default.contents(atPath: path) {
            defaults = String(decoding: data, as: UTF8.self)
        } else if FileManager.default.fileExists(atPath: path) {
            throw AgentError("\(path): cannot read it")
        }
        do {
            return try EtcdAccess.resolve(flags: flags, environment: environment, defaults: defaults, defaultsPath: path)
        } catch {
            throw AgentError(error.description)
        }
    }

    /// A client of etcd as `access()` says, its TLS files read and checked.
    func client(log: @escaping @Sendable (String) -> Void = { _ in }) throws -> EtcdClient {
        do {
            return try EtcdClient(access: try access(), log: log)
        } catch let error as EtcdAccessError {
            throw AgentError(error.description)
        }
    }

    /// The cluster's declaration as etcd holds it.
    func declaration(_ client: EtcdClient) async throws -> ClusterConfig {
        guard let item = try await client.get(ClusterConfig.configKey(cluster)) else {
            throw AgentError("cluster \(cluster) is not declared in etcd at \(client.endpoint)")
        }
        return try ClusterConfig(json: try JSON.parse(item.value))
    }
}

/// A failure of a command that is not a misuse of it: said in one line, no usage text.
struct AgentError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
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
    @Option(help: "This node's IPv6 underlay address beside an IPv4 --address (host-gw: the next hop of its IPv6 block in a dual-stack cluster).")
    var ipv6Address: String?
    @Option(help: "Where the node's block is written for berth-ipam's subnetFile.") var subnetFile: String?
    @Option(help: "The lease's life in seconds: a node silent for longer loses its block.") var ttl: Int = 60
    @Option(help: "Where the node's plugin keeps endpoints and the policies in force (the plugin's runDir).")
    var runDir: String = AgentOptions.defaultRunDirectory
    @Option(help: "Log the cluster's policy drops on this node to this NFLOG group.") var policyLog: Int?
    @Option(help: "What the node keeps across restarts (wireguard: its private key, 0600).")
    var stateDir: String = AgentOptions.defaultStateDirectory
    @Option(help: "Seconds between checks of the kernel against what the agent programmed.") var reconcileInterval: Double = 10
    @Option(help: "Serve /healthz, /readyz and /metrics (Prometheus) on ADDR:PORT; none: do not.")
    var metricsAddress: String = "127.0.0.1:9641"

    func validate() throws {
        guard IPAddress(address) != nil else { throw ValidationError("--address \(address) is not an IP address") }
        if let ipv6Address {
            guard let ip = IPAddress(ipv6Address), ip.family == .v6 else { throw ValidationError("--ipv6-address \(ipv6Address) is not an IPv6 address") }
            guard IPAddress(address)?.family == .v4 else { throw ValidationError("--ipv6-address goes beside an IPv4 --address; \(address) is IPv6 already") }
        }
        guard ttl >= 2 else { throw ValidationError("--ttl must be at least 2 seconds") }
        guard runDir.hasPrefix("/") else { throw ValidationError("--run-dir \(runDir) is not an absolute path") }
        guard stateDir.hasPrefix("/") else { throw ValidationError("--state-dir \(stateDir) is not an absolute path") }
        if let policyLog, !(1...65535).contains(policyLog) { throw ValidationError("--policy-log \(policyLog): an NFLOG group is 1-65535") }
        guard reconcileInterval >= 0.1 && reconcileInterval <= 3600 else {
            throw ValidationError("--reconcile-interval \(reconcileInterval): give 0.1 to 3600 seconds")
        }
        if metricsAddress != "none" && hostAndPort(metricsAddress) == nil {
            throw ValidationError("--metrics-address \(metricsAddress): expected ADDR:PORT (an IP address and a port), or none")
        }
    }

    func run() async throws {
        let name = try nodeName(node)
        let lock: LockFile
        do {
            lock = try LockFile(name: Agent.lockName(cluster: options.cluster, node: name), timeout: 0)
        } catch let busy as LockFile.TimedOut {
            throw ValidationError("another agent runs for node \(name) of cluster \(options.cluster): \(busy.holders.joined(separator: ", "))")
        }
        defer { lock.release() }
        let client = try options.client(log: logLine)
        var agentOptions = AgentOptions(etcd: client.endpoint, cluster: options.cluster, node: name,
                                        address: IPAddress(address)!, subnetFile: subnetFile, ttl: ttl,
                                        runDirectory: runDir, policyLogGroup: policyLog)
        agentOptions.ipv6Address = ipv6Address.flatMap(IPAddress.init)
        agentOptions.reconcileInterval = reconcileInterval
        agentOptions.stateDirectory = stateDir
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(DescribedMetricsFactory(registry: registry, help: AgentMetrics.help))
        let agent = Agent(options: agentOptions, store: client, log: logLine)
        if client.access.usesTLS { logLine("etcd at \(client.endpoint) over TLS") }
        if let user = client.access.user { logLine("etcd user \(user) (\(client.access.origin(.user)))") }
        var server: MetricsServer?
        if let (host, port) = hostAndPort(metricsAddress) {
            do {
                server = try MetricsServer(host: host, port: port, registry: registry, agent: agent)
                logLine("serving /healthz, /readyz and /metrics on \(metricsAddress)")
            } catch {
                throw ValidationError("--metrics-address \(metricsAddress): cannot listen there: \(error)")
            }
        }
        defer { server?.close() }
        let task = Task { await agent.run() }
        // SIGTERM and SIGINT end the agent, its lease left to expire, so a
        // restart takes the block back without a flap. SIGUSR1 (`leave`)
        // ends it leaving the cluster at once. SIGHUP reads the TLS files
        // again (they are also looked at once a second before a request).
        let leaving = LeaveFlag()
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP)
        hangup.setEventHandler {
            do {
                if let summary = try client.reloadTLS(force: true) {
                    logLine("SIGHUP: etcd TLS material read again, now in use: \(summary)")
                } else {
                    logLine("SIGHUP: no TLS files to read again")
                }
            } catch {
                logLine("SIGHUP: etcd TLS material does not load, the previous stays in use: \(error)")
            }
        }
        hangup.resume()
        Self.signalSources.append(hangup)
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig)
            source.setEventHandler {
                if sig == SIGUSR1 { leaving.set() }
                task.cancel()
            }
            source.resume()
            Self.signalSources.append(source)
        }
        await task.value
        if leaving.isSet {
            let leaver = Agent(options: agentOptions, store: try options.client(log: logLine), log: logLine)
            do {
                try await leaver.leave()
            } catch {
                logLine("leaving cluster \(options.cluster): \(error)")
                throw ExitCode(1)
            }
        }
    }

    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []
}

/// Set from a signal handler, read once the agent has stopped.
final class LeaveFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// The node's name: given, or the host name; checked either way.
func nodeName(_ given: String?) throws -> String {
    let name = given ?? ProcessInfo.processInfo.hostName
    if let problem = NetworkConfig.networkNameProblem(name) { throw ValidationError("node name \"\(name)\": \(problem)") }
    return name
}

struct Leave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take this node out of the cluster now (on the node): its lease, record and block go, every other node drops its routes at once, its own routes and VXLAN device go.",
        discussion: "A running agent for the node is told to leave (SIGUSR1) and this waits for it to end; without one, this does the same itself. A plain stop of the agent keeps the lease instead, so that a restart takes the same block back without a flap.")
    @OptionGroup var options: ClusterOptions
    @Option(help: "This node's name (default: the host name).") var node: String?
    @Option(help: "This node's underlay address (needed only when no agent runs, to find the VXLAN device's underlay).") var address: String?
    @Option(help: "The node file the agent writes.") var subnetFile: String?
    @Option(help: "What the node keeps across restarts (wireguard: its key).") var stateDir: String = AgentOptions.defaultStateDirectory

    func run() async throws {
        let name = try nodeName(node)
        let lockName = Agent.lockName(cluster: options.cluster, node: name)
        do {
            let lock = try LockFile(name: lockName, timeout: 0)
            lock.release()
        } catch let busy as LockFile.TimedOut {
            // An agent runs: it leaves itself, and its lock goes when it ends.
            let pids = busy.holders.compactMap { h in h.split(separator: " ").dropFirst().first.flatMap { pid_t($0) } }
            for pid in pids { kill(pid, SIGUSR1) }
            for _ in 0..<150 {
                if (try? LockFile(name: lockName, timeout: 0))?.release() != nil {
                    print("node \(name) left cluster \(options.cluster)")
                    return
                }
                usleep(100_000)
            }
            throw ValidationError("the agent of node \(name) (\(busy.holders.joined(separator: ", "))) did not end within 15 s")
        }
        guard let text = address, let ip = IPAddress(text) else {
            throw ValidationError("no agent runs for node \(name): give --address (its underlay address) to leave without one")
        }
        let client = try options.client(log: logLine)
        var leaving = AgentOptions(etcd: client.endpoint, cluster: options.cluster, node: name, address: ip, subnetFile: subnetFile)
        leaving.stateDirectory = stateDir
        let agent = Agent(options: leaving, store: client, log: logLine)
        try await agent.leave()
        print("node \(name) left cluster \(options.cluster)")
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Free a dead node's block and record (from anywhere), so that another node may take the block.")
    @OptionGroup var options: ClusterOptions
    @Argument(help: "The node.") var node: String
    @Flag(help: "Release it even though its record is still there (the node may be alive).") var force = false

    func run() async throws {
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        let me = Array(node.utf8)
        if try await etcd.get(config.nodeKey(node)) != nil && !force {
            throw ValidationError("node \(node) still has a record at \(config.nodeKey(node)), so it may be alive (berthctl cluster leave on the node, or --force)")
        }
        try await etcd.delete(config.nodeKey(node))
        var freed: [String] = []
        for item in try await etcd.list(prefix: config.blocksPrefix).items where item.value == me {
            if try await etcd.delete(item.key, ifValue: me), let b = config.block(fromKey: item.key) { freed.append(b.description) }
        }
        print(freed.isEmpty ? "node \(node) held no block" : "released \(freed.joined(separator: ", ")) of node \(node)")
    }
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Declare a cluster network in etcd.")
    @OptionGroup var options: ClusterOptions
    @Option(help: "The cluster's range, for example 10.244.0.0/16.") var network: String
    @Option(help: "The prefix length of a node's block (default /\(ClusterConfig.defaultBlockLength) of an IPv4 range, /\(ClusterConfig.defaultBlockLength6) of an IPv6 one).")
    var blockLength: Int?
    @Option(help: "Dual stack: an IPv6 range beside an IPv4 --network, for example fd00:10:244::/48; each node holds a block of each.")
    var ipv6Network: String?
    @Option(help: "The prefix length of a node's block of --ipv6-network (default /\(ClusterConfig.defaultBlockLength6)).")
    var ipv6BlockLength: Int = ClusterConfig.defaultBlockLength6
    @Option(help: "host-gw (nodes share an L2 segment), vxlan or wireguard (encrypted).") var mode: String = ClusterMode.hostGateway.rawValue
    @Option(help: "VXLAN network identifier.") var vni: Int = 1
    @Option(help: "UDP port: VXLAN's (default \(ClusterConfig.defaultPort)) or WireGuard's (default \(ClusterConfig.defaultWireGuardPort)).")
    var port: Int?
    @Flag(help: "Replace an existing declaration that differs.") var force = false

    func run() async throws {
        guard let prefix = IPPrefix(network) else { throw ValidationError("--network \(network) is not a prefix") }
        guard let mode = ClusterMode(rawValue: mode) else { throw ValidationError("--mode must be host-gw, vxlan or wireguard") }
        var prefix6: IPPrefix?
        if let ipv6Network {
            guard let p = IPPrefix(ipv6Network) else { throw ValidationError("--ipv6-network \(ipv6Network) is not a prefix") }
            prefix6 = p
        }
        let config = try ClusterConfig(name: options.cluster, network: prefix, blockLength: blockLength ?? ClusterConfig.defaultBlockLength(for: prefix.family),
                                       mode: mode, vni: vni, port: port, ipv6Network: prefix6, ipv6BlockLength: ipv6BlockLength)
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let bytes = Array(config.json.serialized().utf8)
        if try await etcd.create(config.configKey, bytes, lease: 0) {
            print("cluster \(config.name) declared: \(config.ranges.map { "\($0.network), /\($0.blockLength) blocks" }.joined(separator: "; ")), \(mode.rawValue)")
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
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        print(try await options.declaration(etcd).json.serialized(pretty: true))
    }
}

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the nodes holding blocks: node, address, block, mode, lease age.")
    @OptionGroup var options: ClusterOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        let etcd = try options.client()
        defer { Task { await etcd.shutdown() } }
        let config = try await options.declaration(etcd)
        let now = Int(Date().timeIntervalSince1970)
        let records = try await etcd.list(prefix: config.nodesPrefix).items
            .compactMap { item -> NodeRecord? in
                guard let r = (try? JSON.parse(item.value)).flatMap(NodeRecord.init(json:)), item.key == config.nodeKey(r.node) else { return nil }
                return r
            }
        var owners: [IPPrefix: String] = [:]
        for item in try await etcd.list(prefix: config.blocksPrefix).items {
            if let b = config.block(fromKey: item.key) { owners[b] = String(decoding: item.value, as: UTF8.self) }
        }
        // A row per node record, marked when no block key backs it, and a row
        // per block held without a live record (a node gone, or a leak).
        // A dual-stack node's row names both its blocks and both its addresses.
        var rows: [(node: String, address: String, block: IPPrefix, blocks: String, age: String, state: String, record: NodeRecord?)] = []
        for r in records {
            let unkeyed = r.blocks.filter { owners[$0] != r.node }
            let state = unkeyed.isEmpty ? "ok" : "no block key for \(unkeyed.map(\.description).joined(separator: ", ")): ignored by the nodes"
            let addresses = ([r.address] + (r.ipv6Address.map { [$0] } ?? [])).map(\.description).joined(separator: ",")
            rows.append((r.node, addresses, r.block, r.blocks.map(\.description).joined(separator: ","), "\(now - r.since)s", state, r))
        }
        for (b, owner) in owners where !records.contains(where: { $0.node == owner && $0.blocks.contains(b) }) {
            rows.append((escapedForLog(Array(owner.utf8), limit: 40), "-", b, b.description, "-", "no record: held without a live node (berthctl cluster release \(owner))", nil))
        }
        rows.sort { $0.block.address < $1.block.address }
        if json {
            print(JSON.array(rows.map { row in
                var o: JSONObject = row.record?.json.objectValue ?? ["node": .string(row.node), "block": .string(row.block.description)]
                o["mode"] = .string(config.mode.rawValue)
                if let r = row.record { o["leaseAge"] = .int(now - r.since) }
                o["record"] = .bool(row.record != nil)
                o["blockKey"] = .bool((row.record?.blocks ?? [row.block]).allSatisfy { owners[$0] == row.node })
                o["state"] = .string(row.state)
                return .object(o)
            }).serialized(pretty: true))
            return
        }
        let table = [["NODE", "ADDRESS", "BLOCK", "MODE", "LEASE AGE", "STATE"]] + rows.map {
            [$0.node, $0.address, $0.blocks, config.mode.rawValue, $0.age, $0.state]
        }
        let widths = (0..<6).map { i in table.map { $0[i].count }.max() ?? 0 }
        for row in table {
            print(row.enumerated().map { i, cell in i == 5 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined())
        }
    }
}
