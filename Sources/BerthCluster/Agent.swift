import BerthCNI
import BerthJSON
import BerthSystem
import Foundation

/// What `berth-agent run` is told.
public struct AgentOptions: Sendable {
    public var etcd: String
    public var cluster: String
    public var node: String
    /// The node's underlay address, published for the other nodes.
    public var address: IPAddress
    /// Where the node's block is written for `berth-ipam` (`subnetFile`).
    public var subnetFile: String
    /// The lease's life in seconds: a node silent for longer loses its block.
    public var ttl: Int

    public init(etcd: String, cluster: String, node: String, address: IPAddress, subnetFile: String? = nil, ttl: Int = 60) {
        self.etcd = etcd
        self.cluster = cluster
        self.node = node
        self.address = address
        self.subnetFile = subnetFile ?? AgentOptions.defaultSubnetFile(cluster: cluster)
        self.ttl = ttl
    }

    public static func defaultSubnetFile(cluster: String) -> String { "/run/berth/cluster/\(cluster).json" }
}

/// The node agent: holds a block of the cluster's range for its node under an
/// etcd lease (the same block again after a restart), publishes the node's
/// address (and VTEP MAC), and keeps the kernel's routes to every other node's
/// block in step with etcd through a watch. When etcd is out of reach it
/// leaves everything as it is and tries again with backoff; once back, it
/// renews or retakes its lease and resynchronises by difference.
public actor Agent {
    public let options: AgentOptions
    let etcd: EtcdClient
    let log: @Sendable (String) -> Void

    private var config: ClusterConfig?
    private var network: NodeNetwork?
    private var lease: Int64 = 0
    private var block: IPPrefix?
    private var peers: [String: NodeRecord] = [:]

    public init(options: AgentOptions, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
        etcd = EtcdClient(endpoint: options.etcd)
    }

    /// Runs until cancelled.
    public func run() async {
        var delay = 0.25
        while !Task.isCancelled {
            do {
                try await serve()
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                log("\(error); trying again in \(String(format: "%.2g", delay)) s")
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, 5)
                continue
            }
            delay = 0.25
        }
        await etcd.shutdown()
    }

    /// One connected stretch: lease, block, record, then the watch until it fails.
    private func serve() async throws {
        let config = try await clusterConfig()
        let network = try self.network ?? NodeNetwork(config: config, address: options.address, log: log)
        self.network = network
        if lease != 0, try await etcd.keepAlive(lease) == 0 {
            log("lease \(lease) expired while etcd was out of reach: taking a block again")
            lease = 0
        }
        if lease == 0 {
            lease = try await etcd.grantLease(ttl: options.ttl)
            block = try await claimBlock(config)
            try network.holdBlock(block!)
            try writeSubnetFile(config, block!, mtu: network.podMTU)
        }
        guard let block else { return }
        let record = NodeRecord(node: options.node, address: options.address, block: block, vtepMAC: network.vtepMAC,
                                since: Int(Date().timeIntervalSince1970))
        try await etcd.put(config.nodeKey(options.node), Array(record.json.serialized().utf8), lease: lease)

        let lease = self.lease, etcd = self.etcd, ttl = options.ttl, log = self.log
        let keeper = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(Double(ttl) / 3 * 1e9))
                do {
                    if try await etcd.keepAlive(lease) == 0 { log("lease \(lease) has expired") }
                } catch {
                    if !Task.isCancelled { log("renewing lease \(lease): \(error)") }
                }
            }
        }
        defer { keeper.cancel() }

        let (items, revision) = try await etcd.list(prefix: config.nodesPrefix)
        peers = [:]
        for item in items { take(item, config: config) }
        try resync()
        log("node \(options.node) holds \(block) in cluster \(config.name) (\(config.mode.rawValue)); \(peers.count - 1) other nodes")
        for try await events in etcd.watch(prefix: config.nodesPrefix, from: revision + 1) {
            for event in events {
                switch event.kind {
                case .put: take(event.keyValue, config: config)
                case .delete:
                    let node = String(event.keyValue.key.dropFirst(config.nodesPrefix.count))
                    if node == options.node {
                        self.lease = 0
                        throw ClusterError("this node's record was removed (its lease expired): taking a block again")
                    }
                    if peers.removeValue(forKey: node) != nil { log("node \(node) left") }
                }
            }
            try resync()
        }
    }

    /// Reads a node record from etcd into `peers`; a corrupt one is logged with its key and ignored.
    private func take(_ item: EtcdKeyValue, config: ClusterConfig) {
        guard let json = try? JSON.parse(item.value), let record = NodeRecord(json: json), config.isBlock(record.block),
              item.key == config.nodeKey(record.node) else {
            log("ignoring a corrupt record at \(item.key): \(String(decoding: item.value.prefix(200), as: UTF8.self))")
            return
        }
        if peers[record.node] == nil && record.node != options.node { log("node \(record.node) at \(record.address) holds \(record.block)") }
        peers[record.node] = record
    }

    private func resync() throws {
        try network?.sync(peers: peers.values.filter { $0.node != options.node })
    }

    private func clusterConfig() async throws -> ClusterConfig {
        if let config { return config }
        guard let item = try await etcd.get(ClusterConfig.configKey(options.cluster)) else {
            throw ClusterError("cluster \(options.cluster) is not declared in etcd at \(options.etcd) (berth-agent init)")
        }
        guard let json = try? JSON.parse(item.value) else { throw ClusterError("the config of cluster \(options.cluster) is not JSON") }
        let config = try ClusterConfig(json: json)
        self.config = config
        return config
    }

    /// Takes a block under `lease`: one transaction per try, so two nodes never hold the same one.
    private func claimBlock(_ config: ClusterConfig) async throws -> IPPrefix {
        let (items, _) = try await etcd.list(prefix: config.blocksPrefix)
        var held: [IPPrefix: String] = [:]
        for item in items {
            if let b = config.block(fromKey: item.key) { held[b] = String(decoding: item.value, as: UTF8.self) }
        }
        let me = Array(options.node.utf8)
        for candidate in blockCandidates(config: config, node: options.node, held: held, previous: previousBlock()) {
            let key = config.blockKey(candidate)
            let taken = held[candidate] == options.node
                ? try await etcd.replace(key, ifValue: me, with: me, lease: lease)
                : try await etcd.create(key, me, lease: lease)
            if taken { return candidate }
        }
        throw ClusterError("cluster \(config.name): its range \(config.network) has no free /\(config.blockLength) block (all \(config.blockCount) are held)")
    }

    /// The block this node last wrote to its subnet file, if any.
    private func previousBlock() -> IPPrefix? {
        guard let data = FileManager.default.contents(atPath: options.subnetFile), let json = try? JSON.parse(Array(data)) else { return nil }
        return json["block"]?.stringValue.flatMap(IPPrefix.init)
    }

    /// Writes the node's block where `berth-ipam` reads it (whole or not at all).
    private func writeSubnetFile(_ config: ClusterConfig, _ block: IPPrefix, mtu: Int) throws {
        let json = JSON.object(["cluster": .string(config.name), "network": .string(config.network.description),
                                "block": .string(block.description), "mtu": .int(mtu)])
        let directory = (options.subnetFile as NSString).deletingLastPathComponent
        try DirectoryHandle.makeDirectories(directory)
        let dir = try DirectoryHandle(path: directory, create: false)
        let scratch = try dir.writeScratch(Array((json.serialized(pretty: true) + "\n").utf8))
        try dir.publish(scratch, as: (options.subnetFile as NSString).lastPathComponent, in: dir)
    }
}
