import BerthIPAM
import BerthNames
import BerthEndpoints
import BerthEnforcement
import BerthFirewall
import BerthPolicy
import BerthJSON
import BerthSystem
import Foundation
import BerthNet
import BerthNetlink

/// What `berth-agent run` is told.
public struct AgentOptions: Sendable {
    public var etcd: String
    public var cluster: String
    public var node: String
    /// The node's underlay address, published for the other nodes.
    public var address: IPAddress
    /// The node's IPv6 underlay address beside an IPv4 `address`: host-gw
    /// routes a dual-stack cluster's IPv6 blocks via it (`--ipv6-address`).
    public var ipv6Address: IPAddress?
    /// Where the node's block is written for `berth-ipam` (`subnetFile`).
    public var subnetFile: String
    /// The lease's life in seconds: a node silent for longer loses its block.
    public var ttl: Int
    /// Where the node's plugin keeps its endpoints and the policies in force
    /// (`runDir` of the plugin's config): one per simulated node.
    public var runDirectory: String
    /// The NFLOG group the cluster's policy drops are logged to on this node; nil: not logged.
    public var policyLogGroup: Int?
    /// How often the kernel is checked against what the agent programmed
    /// (a route, neighbour or FDB entry deleted or added by hand is put right).
    public var reconcileInterval: Double = 10
    /// What the node keeps across restarts (wireguard: its private key).
    public var stateDirectory: String = AgentOptions.defaultStateDirectory

    public init(etcd: String, cluster: String, node: String, address: IPAddress, subnetFile: String? = nil, ttl: Int = 60,
                runDirectory: String = AgentOptions.defaultRunDirectory, policyLogGroup: Int? = nil) {
        self.etcd = etcd
        self.cluster = cluster
        self.node = node
        self.address = address
        self.subnetFile = subnetFile ?? AgentOptions.defaultSubnetFile(cluster: cluster)
        self.ttl = ttl
        self.runDirectory = runDirectory
        self.policyLogGroup = policyLogGroup
    }

    public static let defaultRunDirectory = "/run/berth"
    public static let defaultStateDirectory = "/var/lib/berth"
    public var endpointsDirectory: String { "\(runDirectory)/endpoints" }
    public var policyDirectory: String { "\(runDirectory)/policy" }

    public static func defaultSubnetFile(cluster: String) -> String { "/run/berth/cluster/\(cluster).json" }
}

/// The block search found every block held: waiting for one to be freed.
struct NoFreeBlock: Error, CustomStringConvertible {
    let description: String
    /// The store's revision when the blocks were read: a block freed after it ends the wait.
    let revision: Int64
}

/// The node agent: holds a block of the cluster's range for its node under an
/// etcd lease (the same block again after a restart), publishes the node's
/// address (and VTEP MAC), and keeps the kernel's routes to every other node's
/// block in step with etcd through a watch. When etcd is out of reach it
/// leaves everything as it is and tries again with backoff; once back, it
/// renews or retakes its lease and resynchronises by difference.
///
/// Nothing read from etcd is trusted: a node record counts only when the
/// block key of its block names that node, with a usable underlay address,
/// and never for this node's own block (`acceptedPeers`). Each peer is
/// applied on its own; one the kernel refuses is logged with its etcd key
/// and retried every few seconds without holding back the others.
public actor Agent {
    public let options: AgentOptions
    let etcd: any ClusterStore
    let log: @Sendable (String) -> Void
    /// Makes the node's backend for the cluster's mode once its config is known.
    let makeBackend: @Sendable (ClusterConfig) throws -> any NodeBackend

    private var config: ClusterConfig?
    private var network: (any NodeBackend)?
    private var lease: Int64 = 0
    private var block: IPPrefix?
    /// Dual stack: the block of the cluster's IPv6 range this node holds beside `block`.
    private var ipv6Block: IPPrefix?
    /// Every block this node holds.
    private var blocks: [IPPrefix] { [block, ipv6Block].compactMap { $0 } }
    /// Node records by etcd key, as read (checked when applied).
    private var records: [String: NodeRecord] = [:]
    /// Who each block key names.
    private var owners: [IPPrefix: String] = [:]
    /// The value this node last wrote to its record.
    private var published: [UInt8] = []
    /// Set when someone else changed this node's record or block key: written again.
    private var tampered = false
    /// What was last logged about each rejected record and failing peer, so a retry does not repeat it.
    private var rejectedLogged: [String: String] = [:]
    private var failing: [String: String] = [:]
    /// Network policy: what etcd holds, what this node put in force, the
    /// remote pods in its sets, its own pods as published, problems logged once.
    private var policy: ClusterPolicyState?
    private var appliedPolicies: AppliedPolicies?
    private var admitted: [String: Endpoint] = [:]
    private var publishedEndpoints: [String: [UInt8]] = [:]
    private var endpointsSeen: (seconds: Int, nanoseconds: Int)?
    private var policyProblems: [String: String] = [:]
    /// Other nodes' names as written for this node's DNS servers, by network (nil: not looked at yet).
    private var remoteNamesWritten: [String: [String: [UInt8]]] = [:]
    private var remoteNamesSignature: [String: [String: [UInt8]]] = [:]
    private var policyFailing = false
    /// What readiness needs: the node file written and peers programmed in this stretch.
    private var nodeFileWritten = false
    private var peersProgrammed = false
    private var stretches = 0
    let metrics = AgentMetrics()
    /// The highest etcd revision seen: a listing below it means etcd lost its
    /// data (wiped and restarted), and routes to nodes that are not back yet
    /// are kept for a lease's life rather than flapped.
    private var lastRevision: Int64 = 0
    private var holdRemovalsUntil: Date?
    private var programmedPeers: [NodeRecord] = []

    /// How often etcd is asked whether it answers (a hung etcd is noticed within about twice this).
    public static let probeInterval: Double = 2
    /// How often peers the kernel refused are tried again.
    public static let retryInterval: Double = 2

    /// An agent on etcd at `options.etcd` with the kernel's backend for the
    /// cluster's mode; `store` and `backend` replace them (unit tests).
    public init(options: AgentOptions, store: (any ClusterStore)? = nil,
                backend: (@Sendable (ClusterConfig) throws -> any NodeBackend)? = nil,
                log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
        etcd = MeasuredStore(store ?? EtcdClient(endpoint: options.etcd), metrics: metrics)
        let (address, address6, node, state) = (options.address, options.ipv6Address, options.node, options.stateDirectory)
        makeBackend = backend ?? { config in
            try NodeNetwork.backend(for: config, address: address, ipv6Address: address6, node: node, stateDirectory: state, log: log)
        }
    }

    /// The lock an agent holds for its node and cluster while it runs: a
    /// second agent for the same node is refused, and `leave` finds it.
    public static func lockName(cluster: String, node: String) -> String {
        DerivedName.fit("agent:\(cluster):\(node)", limit: 255)
    }

    /// Runs until cancelled.
    public func run() async {
        var delay = 0.25
        while !Task.isCancelled {
            do {
                try await serve()
            } catch is CancellationError {
                break
            } catch let wait as NoFreeBlock {
                if Task.isCancelled { break }
                log("\(wait); trying again in \(String(format: "%.2g", delay)) s, or as soon as a block is freed")
                await waitForFreedBlock(after: wait.revision, seconds: delay)
                delay = min(delay * 2, 5)
                continue
            } catch {
                if Task.isCancelled { break }
                log("\(error); trying again in \(String(format: "%.2g", delay)) s")
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, 5)
                continue
            }
            // serve() returns only when cancelled; never loop without a pause.
            try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            delay = 0.25
        }
        await etcd.shutdown()
    }

    /// Whether the node is ready (`/readyz`): it holds a block, has written
    /// the node file and has programmed every peer; else why not.
    public func readiness() -> (ready: Bool, reason: String) {
        guard block != nil else { return (false, "no block held yet") }
        guard nodeFileWritten else { return (false, "the node file \(options.subnetFile) is not written yet") }
        guard peersProgrammed else { return (false, "peers not programmed yet") }
        let failingPeers = failing.keys.filter { $0 != NodeNetwork.staleEntries }
        if !failingPeers.isEmpty { return (false, "\(failingPeers.count) peers not programmed: \(failingPeers.sorted().joined(separator: ", "))") }
        return (true, "holds \(blocks.map(\.description).joined(separator: " and ")), \(records.count) peers programmed")
    }

    /// Reads the policy drop counters into the metrics (before a scrape).
    public func refreshPolicyMetrics() {
        guard let applied = appliedPolicies else { return }
        metrics.policies.record(applied.policies.policies.count)
        let drops = (try? PolicyTable.dropCounts()) ?? [:]
        metrics.policyDrops.record(drops.values.reduce(0, +))
    }

    private func noteReadiness() { metrics.ready.record(readiness().ready ? 1 : 0) }

    /// One connected stretch: lease, block, record, then the watch until it fails.
    private func serve() async throws {
        stretches += 1
        if let config, try await etcd.get(config.configKey) == nil {
            // etcd lost its data (wiped and restarted): the declaration this
            // agent has comes back, as do its block and record below.
            if try await etcd.create(config.configKey, Array(config.json.serialized().utf8), lease: 0) {
                log("the declaration of cluster \(config.name) was missing from etcd: written back")
            }
        }
        if stretches > 1 { metrics.watchRestarts.increment() }
        peersProgrammed = false
        defer { noteReadiness() }
        let config = try await clusterConfig()
        let network = try self.network ?? makeBackend(config)
        self.network = network
        if lease != 0, try await etcd.keepAlive(lease) == 0 {
            log("lease \(lease) expired while etcd was out of reach: taking a block again")
            metrics.leaseLosses.increment()
            lease = 0
        }
        if lease == 0 {
            lease = try await etcd.grantLease(ttl: options.ttl)
            block = nil
            ipv6Block = nil
        }
        if block == nil {
            do {
                // One block of each range: the IPv4 and the IPv6 one of a dual-stack cluster.
                let previous = previousBlocks()
                block = try await claimBlock(config, in: config.primary, previous: previous)
                if let secondary = config.secondary {
                    ipv6Block = try await claimBlock(config, in: secondary, previous: previous)
                }
            } catch let e as NoFreeBlock {
                // No lease is kept while waiting (the next try grants a new
                // one): a block of the other range taken meanwhile goes with it.
                try? await etcd.revoke(lease)
                lease = 0
                block = nil
                ipv6Block = nil
                throw e
            }
            for b in blocks { try network.holdBlock(b) }
            try writeNodeFile(NodeFile(cluster: config.name, network: config.network, block: block!,
                                       ipv6Network: config.ipv6Network, ipv6Block: ipv6Block, mtu: network.podMTU))
            nodeFileWritten = true
        }
        guard let block else { throw ClusterError("no block is held") }
        try await publish(config, block, network)

        let lease = self.lease, etcd = self.etcd, ttl = options.ttl, log = self.log, metrics = self.metrics
        let keeper = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(Double(ttl) / 3 * 1e9))
                do {
                    if try await etcd.keepAlive(lease) == 0 {
                        log("lease \(lease) has expired")
                        metrics.leaseLosses.increment()
                    } else {
                        metrics.leaseRenewals.increment()
                    }
                } catch {
                    if !Task.isCancelled { log("renewing lease \(lease): \(error)") }
                }
            }
        }
        defer { keeper.cancel() }

        let prefix = "\(ClusterConfig.root)\(config.name)/"
        let (items, revision) = try await etcd.list(prefix: prefix)
        if revision < lastRevision {
            log("etcd's revision went back from \(lastRevision) to \(revision) (its data was lost?): keeping the routes to nodes not back yet for \(options.ttl) s")
            holdRemovalsUntil = Date().addingTimeInterval(Double(options.ttl))
        }
        lastRevision = revision
        records = [:]
        owners = [:]
        policy = ClusterPolicyState(config: config, node: options.node)
        publishedEndpoints = [:]
        endpointsSeen = nil
        for item in items { take(item, config: config) }
        tampered = false
        try resync()
        peersProgrammed = true
        noteReadiness()
        policyResync()
        log("node \(options.node) holds \(blocks.map(\.description).joined(separator: " and ")) in cluster \(config.name) (\(config.mode.rawValue)); \(records.count) other node records")
        // The watch, a probe that notices a hung etcd within seconds (the
        // watch itself would wait for ever), and the retries of refused peers:
        // the first to fail ends this stretch.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.follow(config, prefix: prefix, from: revision + 1) }
            group.addTask { try await Agent.probe(etcd, log: log) }
            group.addTask {
                while true {
                    try await Task.sleep(nanoseconds: UInt64(Agent.retryInterval * 1e9))
                    try await self.retryFailing()
                }
            }
            group.addTask {
                while true {
                    try await self.publishEndpoints()
                    // A network's server may have started since (its first local pod): it gets the other nodes' names.
                    await self.syncRemoteNames()
                    try await Task.sleep(nanoseconds: UInt64(Agent.endpointInterval * 1e9))
                }
            }
            let interval = self.options.reconcileInterval
            group.addTask {
                while true {
                    try await Task.sleep(nanoseconds: UInt64(interval * 1e9))
                    try await self.reconcile()
                }
            }
            // And at once when the kernel says someone else changed the
            // agent's routes or entries (a burst of changes is one check).
            let (changes, changed) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
            var monitor: RouteMonitor?
            do {
                monitor = try network.monitor({ changed.yield($0) })
            } catch {
                log("cannot watch the kernel for changes to the agent's routes (\(error)): checking every \(interval) s only")
            }
            if let monitor {
                group.addTask {
                    defer { monitor.stop() }
                    for await what in changes {
                        try await Task.sleep(nanoseconds: 50_000_000)
                        try await self.reconcile(noticed: what)
                    }
                    throw CancellationError()
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Writes this node's record under the lease.
    private func publish(_ config: ClusterConfig, _ block: IPPrefix, _ network: any NodeBackend) async throws {
        let record = NodeRecord(node: options.node, address: options.address, block: block, ipv6Block: ipv6Block,
                                ipv6Address: options.ipv6Address, vtepMAC: network.vtepMAC, publicKey: network.publicKey,
                                since: Int(Date().timeIntervalSince1970))
        published = Array(record.json.serialized().utf8)
        try await etcd.put(config.nodeKey(options.node), published, lease: lease)
    }

    /// Follows the watch, applying each batch of changes.
    private func follow(_ config: ClusterConfig, prefix: String, from revision: Int64) async throws {
        do {
            try await followEvents(config, prefix: prefix, from: revision)
        } catch let error as ClusterError {
            throw error
        } catch {
            if !Task.isCancelled { metrics.etcdErrors("watch").increment() }
            throw error
        }
    }

    private func followEvents(_ config: ClusterConfig, prefix: String, from revision: Int64) async throws {
        for try await events in etcd.watch(prefix: prefix, from: revision) {
            for event in events {
                let key = event.keyValue.key
                lastRevision = max(lastRevision, event.keyValue.modRevision)
                switch event.kind {
                case .put: take(event.keyValue, config: config)
                case .delete:
                    if key == config.nodeKey(options.node) {
                        self.lease = 0
                        metrics.leaseLosses.increment()
                        throw ClusterError("this node's record was removed (its lease expired, or it was deleted): taking a block again")
                    }
                    if let b = config.block(fromKey: key) {
                        if blocks.contains(b) {
                            // Both are claimed again: the other is still this node's, so it is taken back as it is.
                            block = nil
                            ipv6Block = nil
                            throw ClusterError("this node's block key \(key) was removed: claiming the block again")
                        }
                        owners.removeValue(forKey: b)
                    } else if let gone = records.removeValue(forKey: key) {
                        log("node \(gone.node) left")
                        rejectedLogged.removeValue(forKey: key)
                    } else if policy?.owns(key) == true {
                        policy?.delete(key)
                        policyProblems[key] = nil
                        if key.hasPrefix(config.endpointsPrefix(node: options.node)) { publishedEndpoints[key] = nil }
                    }
                }
            }
            if tampered, let block, let network {
                tampered = false
                log("this node's record or block key was changed by someone else: writing them again")
                try await publish(config, block, network)
                let me = Array(options.node.utf8)
                for b in blocks { try await etcd.put(config.blockKey(b), me, lease: lease) }
            }
            try resync()
            policyResync()
            syncRemoteNames()
        }
    }

    /// Asks etcd every `probeInterval` whether it answers; throws when it does not.
    private static func probe(_ etcd: any ClusterStore, log: @Sendable (String) -> Void) async throws {
        while true {
            try await Task.sleep(nanoseconds: UInt64(probeInterval * 1e9))
            do {
                try await etcd.ping(seconds: Int64(probeInterval))
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw ClusterError("etcd at \(etcd.endpoint) did not answer within \(Int(probeInterval)) s (stopped or hung?)")
            }
        }
    }

    /// Reads a key of the cluster from etcd: a block key into `owners`, a
    /// node record into `records`. A corrupt record is logged with its key
    /// (its value escaped and cut short) and ignored.
    private func take(_ item: EtcdKeyValue, config: ClusterConfig) {
        if let b = config.block(fromKey: item.key) {
            let owner = String(decoding: item.value, as: UTF8.self)
            if blocks.contains(b) && owner != options.node { tampered = true }
            owners[b] = owner
            return
        }
        if let p = policy, p.owns(item.key) {
            if item.key.hasPrefix(config.endpointsPrefix(node: options.node)) {
                // What this node published before (a restart): kept, or deleted by the next publish.
                if publishedEndpoints[item.key] == nil { publishedEndpoints[item.key] = item.value }
                return
            }
            let problem = policy!.put(item.key, item.value, owners: owners)
            notePolicyProblem(item.key, problem)
            return
        }
        guard item.key.hasPrefix(config.nodesPrefix) else { return }
        if item.key == config.nodeKey(options.node) {
            if !published.isEmpty && item.value != published { tampered = true }
            return
        }
        guard let json = try? JSON.parse(item.value), let record = NodeRecord(json: json) else {
            records.removeValue(forKey: item.key)
            log("ignoring a corrupt record at \(item.key): \(escapedForLog(item.value))")
            return
        }
        if records[item.key] == nil { log("node \(escapedForLog(Array(record.node.utf8))) at \(record.address) says it holds \(record.block) (\(item.key))") }
        records[item.key] = record
    }

    /// Programs the accepted peers; logs rejected records and refused peers (each once until it changes).
    private func resync() throws {
        guard let config, let network else { return }
        let (peers, rejected) = acceptedPeers(records.map { KeyedRecord(key: $0.key, record: $0.value) }, owners: owners,
                                              config: config, node: options.node, ownBlock: block,
                                              ownAddress: options.address, ownVTEPMAC: network.vtepMAC,
                                              ownPublicKey: network.publicKey, ownIPv6Block: ipv6Block,
                                              ownIPv6Address: options.ipv6Address)
        var seen: [String: String] = [:]
        for (key, reason) in rejected {
            seen[key] = reason
            if rejectedLogged[key] != reason { log("ignoring the node record at \(key): \(reason)") }
        }
        for key in seen.keys where rejectedLogged[key] != seen[key] { metrics.rejectedRecords.increment() }
        rejectedLogged = seen
        metrics.reconcileRuns.increment()
        metrics.peers.record(peers.count)
        var program = peers.map(\.record)
        if let hold = holdRemovalsUntil {
            if Date() < hold {
                let present = Set(program.map(\.node))
                program += programmedPeers.filter { !present.contains($0.node) }
            } else {
                holdRemovalsUntil = nil
            }
        }
        let failures = try network.sync(peers: program)
        programmedPeers = program
        defer { noteReadiness() }
        for (node, reason) in failures.sorted(by: { $0.key < $1.key }) where failing[node] != reason {
            let what = node == NodeNetwork.staleEntries ? "what no peer needs any more" : "node \(node) (\(config.nodeKey(node)))"
            log("\(what): \(reason); trying again in \(Int(Agent.retryInterval)) s")
        }
        for node in failing.keys where failures[node] == nil && node != NodeNetwork.staleEntries {
            log("node \(node) is programmed now")
        }
        failing = failures
    }

    /// The periodic check: programs the difference between the kernel and
    /// the accepted peers (what someone changed by hand), and counts it.
    private func reconcile(noticed: String? = nil) throws {
        guard let network else { return }
        // The policy table gone (deleted by hand): built again from what is in force.
        if appliedPolicies != nil, (try? PolicyTable.isInPlace()) == false {
            log("the network policy table was missing from the kernel: building it again")
            appliedPolicies = nil
            policyResync()
        }
        let before = network.changesMade
        try resync()
        let repaired = network.changesMade - before
        if repaired > 0 {
            metrics.repairs.increment(by: Int64(repaired))
            log("the kernel had been changed by hand: put \(repaired) routes and entries right\(noticed.map { " (noticed at once: \($0))" } ?? "")")
        }
    }

    private func retryFailing() throws {
        if !failing.isEmpty { try resync() }
        if policyFailing { policyResync() }
    }

    /// How often the node's endpoint records are looked at (a new pod is published within about this).
    public static let endpointInterval: Double = 0.2

    /// Logs a problem with a policy record once (until it changes), with its key.
    private func notePolicyProblem(_ key: String, _ problem: String?) {
        guard let problem else {
            policyProblems[key] = nil
            return
        }
        if policyProblems[key] != problem { log("ignoring \(key): \(problem)") }
        policyProblems[key] = problem
    }

    /// Puts the cluster's policies in force on this node (one transaction,
    /// by difference) and the other nodes' pods in the sets by difference.
    /// A failure is logged and tried again; nothing is undone meanwhile.
    private func policyResync() {
        guard var state = policy else { return }
        for (key, problem) in state.recheck(owners: owners) { notePolicyProblem(key, problem) }
        for key in state.remote.keys { notePolicyProblem(key, nil) }
        policy = state
        let store = PolicyStateStore(directory: options.policyDirectory)
        let desired = AppliedPolicies(policies: state.desired, logGroup: options.policyLogGroup)
        policyFailing = false
        do {
            if state.seenPolicy && desired != appliedPolicies {
                let local = try EndpointStore(directory: options.endpointsDirectory).all()
                let remote = Array(state.remote.values)
                let outcome = try PolicyEnforcement.apply(desired, pods: { local.map(\.pod) + remote.map(\.pod) }, state: store)
                metrics.policyRules.record(outcome.rules)
                if appliedPolicies == nil || outcome.policies != appliedPolicies?.policies.policies.count {
                    log("\(outcome.policies) network policies in force (\(outcome.groups) pod groups, \(outcome.rules) rules)")
                }
                appliedPolicies = desired
            }
            for (key, e) in state.remote where admitted[key] != e {
                if let old = admitted[key] { try PolicyEnforcement.release(old.pod, state: store) }
                try PolicyEnforcement.admit(e.pod, state: store)
                admitted[key] = e
            }
            for (key, old) in admitted where state.remote[key] == nil {
                try PolicyEnforcement.release(old.pod, state: store)
                admitted[key] = nil
            }
        } catch {
            policyFailing = true
            log("network policy: \(error); trying again in \(Int(Agent.retryInterval)) s")
        }
    }

    /// Feeds other nodes' pods' names to this node's DNS servers: for each
    /// network with names whose server this node has run (its domain is
    /// recorded), a hosts file per remote pod in its remote.d, by difference.
    /// Only names the endpoint checks accepted (DNS labels, addresses in the
    /// publishing node's block) get here.
    private func syncRemoteNames() {
        guard let state = policy else { return }
        var domains: [String: String?] = [:]
        func domain(_ network: String) -> String? {
            if let known = domains[network] { return known }
            let found = NetworkNames.recordedDomain(network: network, runDirectory: options.runDirectory)
            domains[network] = found
            return found
        }
        // What each network's remote.d should say, "since" left out (it is when this node first wrote a name).
        var signatures: [String: [String: (entry: NameEntry, text: [UInt8])]] = [:]
        for (key, e) in state.remote where !e.names.isEmpty {
            let rest = key.dropFirst(state.config.endpointsPrefix.count)
            guard let slash = rest.firstIndex(of: "/"), let domain = domain(e.attachment.network) else { continue }
            let node = String(rest[..<slash])
            let entry = NameEntry(attachment: e.attachment.description, names: e.names, addresses: e.addresses, since: 0, node: node)
            signatures[e.attachment.network, default: [:]]["\(node)--\(e.attachment.fileName)"] = (entry, entry.hostsFile(domain: domain))
        }
        let now = Int(Date().timeIntervalSince1970)
        for network in Set(signatures.keys).union(remoteNamesWritten.keys) {
            guard let domain = domain(network) else { continue }
            let wanted = signatures[network] ?? [:]
            let before = remoteNamesSignature[network]
            if let before, remoteNamesWritten[network] != nil, before.count == wanted.count,
               wanted.allSatisfy({ before[$0.key] == $0.value.text }) { continue }
            var desired: [String: [UInt8]] = [:]
            for (file, item) in wanted {
                if before?[file] == item.text, let old = remoteNamesWritten[network]?[file] {
                    desired[file] = old
                } else {
                    var entry = item.entry
                    entry.since = now
                    desired[file] = entry.hostsFile(domain: domain)
                }
            }
            let names = NetworkNames(network: network, bridge: "", runDirectory: options.runDirectory, config: NamesConfig(domain: domain))
            do {
                remoteNamesWritten[network] = try names.syncRemote(desired, written: remoteNamesWritten[network])
                remoteNamesSignature[network] = wanted.mapValues(\.text)
            } catch {
                log("names of other nodes on network \(network): \(error)")
            }
        }
    }

    /// Publishes this node's pods (those of its block) under its lease, by
    /// difference, when the endpoint directory changed.
    private func publishEndpoints() async throws {
        guard let config, !blocks.isEmpty else { return }
        let blocks = self.blocks
        let directory = options.endpointsDirectory
        var st = stat()
        let changed: (seconds: Int, nanoseconds: Int)? = stat(directory, &st) == 0 ? (st.st_mtim.tv_sec, st.st_mtim.tv_nsec) : nil
        if let changed, let seen = endpointsSeen, changed == seen { return }
        let mine = ((try? EndpointStore(directory: directory).all()) ?? [])
            .filter { !$0.addresses.isEmpty && $0.addresses.allSatisfy { a in blocks.contains { $0.contains(a) } } }
        var desired: [String: [UInt8]] = [:]
        for e in mine { desired[config.endpointsPrefix(node: options.node) + e.attachment.fileName] = ClusterPolicyState.record(e, node: options.node) }
        var puts = desired.filter { publishedEndpoints[$0.key] != $0.value }.map { (key: $0.key, value: $0.value) }
        var deletes = publishedEndpoints.keys.filter { desired[$0] == nil }
        while !puts.isEmpty || !deletes.isEmpty {
            let p = Array(puts.prefix(EtcdClient.maximumOperations))
            puts.removeFirst(p.count)
            let d = Array(deletes.prefix(EtcdClient.maximumOperations - p.count))
            deletes.removeFirst(d.count)
            try await etcd.write(puts: p, deletes: d, lease: lease)
            for item in p { publishedEndpoints[item.key] = item.value }
            for key in d { publishedEndpoints[key] = nil }
        }
        endpointsSeen = changed
    }

    private func clusterConfig() async throws -> ClusterConfig {
        if let config { return config }
        guard let item = try await etcd.get(ClusterConfig.configKey(options.cluster)) else {
            throw ClusterError("cluster \(options.cluster) is not declared in etcd at \(options.etcd) (berth-agent init)")
        }
        guard let json = try? JSON.parse(item.value) else {
            throw ClusterError("the config of cluster \(options.cluster) at \(item.key) is not JSON: \(escapedForLog(item.value))")
        }
        let config = try ClusterConfig(json: json)
        self.config = config
        return config
    }

    /// Takes a block of `range` under `lease`: one transaction per try, so two nodes never hold the same one.
    private func claimBlock(_ config: ClusterConfig, in range: BlockRange, previous: [IPPrefix]) async throws -> IPPrefix {
        let (items, revision) = try await etcd.list(prefix: config.blocksPrefix)
        var held: [IPPrefix: String] = [:]
        for item in items {
            if let b = config.block(fromKey: item.key) { held[b] = String(decoding: item.value, as: UTF8.self) }
        }
        let me = Array(options.node.utf8)
        for candidate in blockCandidates(config: config, node: options.node, held: held,
                                         previous: previous.first(where: range.isBlock), range: range) {
            let key = config.blockKey(candidate)
            let taken = held[candidate] == options.node
                ? try await etcd.replace(key, ifValue: me, with: me, lease: lease)
                : try await etcd.create(key, me, lease: lease)
            if taken { return candidate }
        }
        throw NoFreeBlock(description: "cluster \(config.name): its range \(range.network) has no free /\(range.blockLength) block (all \(range.blockCount) are held)",
                          revision: revision)
    }

    /// Waits `seconds`, or less if a block key is deleted (a block freed) after `revision`.
    private func waitForFreedBlock(after revision: Int64, seconds: Double) async {
        guard let config else { return }
        let etcd = self.etcd
        // Whichever ends the wait first, a block freed meanwhile is what it
        // was for: the watch may be scheduled after the pause on a loaded
        // machine, so the blocks are looked at once more at the end.
        let freed = await withTaskGroup(of: Bool.self) { group -> Bool in
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return false
            }
            group.addTask {
                do {
                    for try await events in etcd.watch(prefix: config.blocksPrefix, from: revision + 1)
                    where events.contains(where: { $0.kind == .delete }) {
                        return true
                    }
                } catch {}
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        var freeNow = false
        if !freed, let held = try? await etcd.list(prefix: config.blocksPrefix).items {
            let blocks = held.compactMap { config.block(fromKey: $0.key) }
            freeNow = config.ranges.allSatisfy { range in blocks.filter(range.isBlock).count < range.blockCount }
        }
        if freed || freeNow { log("a block of cluster \(config.name) was freed: claiming it") }
    }

    /// The blocks this node last wrote to its node file, if any.
    private func previousBlocks() -> [IPPrefix] {
        guard let data = FileManager.default.contents(atPath: options.subnetFile),
              case .success(let file) = NodeFile.parse(Array(data)) else { return [] }
        return file.blocks
    }

    /// Writes the node file where `berth-ipam` reads it (whole or not at all).
    private func writeNodeFile(_ file: NodeFile) throws {
        let directory = (options.subnetFile as NSString).deletingLastPathComponent
        try DirectoryHandle.makeDirectories(directory)
        let dir = try DirectoryHandle(path: directory, create: false)
        let scratch = try dir.writeScratch(file.bytes)
        try dir.publish(scratch, as: (options.subnetFile as NSString).lastPathComponent, in: dir)
    }

    /// Leaves the cluster at once: revokes the lease (the record and block
    /// key go with it, so every other node drops its routes now rather than
    /// when the lease would expire), removes this node's routes, VXLAN device
    /// and node file. For a node shut down for good; a plain stop keeps the
    /// lease so that a restart takes the same block back without a flap.
    public func leave() async throws {
        defer { Task { await etcd.shutdown() } }
        let config = try await clusterConfig()
        var leases = Set<Int64>()
        if lease != 0 { leases.insert(lease) }
        let me = Array(options.node.utf8)
        if let record = try await etcd.get(config.nodeKey(options.node)) { leases.insert(record.lease) }
        for item in try await etcd.list(prefix: config.blocksPrefix).items where item.value == me { leases.insert(item.lease) }
        for id in leases where id != 0 { try await etcd.revoke(id) }
        // Keys without a lease (written by hand) go too.
        try await etcd.delete(config.nodeKey(options.node))
        for item in try await etcd.list(prefix: config.blocksPrefix).items where item.value == me {
            _ = try await etcd.delete(item.key, ifValue: me)
        }
        lease = 0
        block = nil
        ipv6Block = nil
        let network = try self.network ?? makeBackend(config)
        network.teardown()
        unlink(options.subnetFile)
        log("node \(options.node) left cluster \(config.name)")
    }
}
