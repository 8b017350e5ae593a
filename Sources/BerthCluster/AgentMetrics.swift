import CoreMetrics
import Foundation

/// What the agent counts and measures, through swift-metrics (berth-agent
/// bootstraps it with swift-prometheus and serves `/metrics`; without a
/// bootstrap, as in unit tests, every handle does nothing). Names follow
/// Prometheus' conventions: `berth_agent_` and a unit or `_total`.
public struct AgentMetrics: Sendable {
    public let peers = Gauge(label: "berth_agent_peers")
    public let ready = Gauge(label: "berth_agent_ready")
    public let leaseRenewals = Counter(label: "berth_agent_lease_renewals_total")
    public let leaseLosses = Counter(label: "berth_agent_lease_losses_total")
    public let watchRestarts = Counter(label: "berth_agent_watch_restarts_total")
    public let reconcileRuns = Counter(label: "berth_agent_reconcile_runs_total")
    public let rejectedRecords = Counter(label: "berth_agent_rejected_records_total")
    public let repairs = Counter(label: "berth_agent_reconcile_repairs_total")
    public let policies = Gauge(label: "berth_agent_policies")
    public let policyRules = Gauge(label: "berth_agent_policy_rules")
    public let policyDrops = Gauge(label: "berth_agent_policy_dropped_packets")

    public init() {}

    /// Each metric's help text (`# HELP`).
    public static let help: [String: String] = [
        "berth_agent_peers": "Other nodes whose records were accepted and are programmed or being programmed.",
        "berth_agent_ready": "1 when the node holds a block, has written its node file and programmed every peer (as /readyz).",
        "berth_agent_lease_renewals_total": "Lease keep-alives etcd answered.",
        "berth_agent_lease_losses_total": "Times this node's lease expired or its record was removed.",
        "berth_agent_watch_restarts_total": "Times the agent connected to etcd again and re-read the cluster.",
        "berth_agent_reconcile_runs_total": "Times the agent compared the kernel with the accepted peers and programmed the difference.",
        "berth_agent_reconcile_repairs_total": "Routes and entries the periodic check found wrong in the kernel (deleted or added by hand) and put right.",
        "berth_agent_rejected_records_total": "Node records refused (each time a record's reason to be refused changed).",
        "berth_agent_policies": "Network policies in force on this node from the cluster.",
        "berth_agent_policy_rules": "Rules of the network policies in force on this node.",
        "berth_agent_policy_dropped_packets": "Packets the network policies dropped on this node (their drop counters).",
        "berth_agent_programmed_entries": "Routes, neighbour and FDB entries of peers in the kernel, by kind.",
        "berth_agent_kernel_changes_total": "Routes, neighbour and FDB entries the agent added or removed, by kind and action.",
        "berth_agent_etcd_request_duration_seconds": "Durations of etcd requests that succeeded, by operation.",
        "berth_agent_etcd_errors_total": "etcd requests that failed, by operation (a watch counts when it ends in an error).",
    ]

    /// Entries programmed now, by kind ("route", "neighbour", "fdb").
    public func programmed(_ kind: String) -> Gauge {
        Gauge(label: "berth_agent_programmed_entries", dimensions: [("kind", kind)])
    }

    /// Changes made to the kernel, by kind and what was done ("added", "removed").
    public func kernelChanges(_ kind: String, _ action: String) -> Counter {
        Counter(label: "berth_agent_kernel_changes_total", dimensions: [("kind", kind), ("action", action)])
    }

    /// etcd requests' durations and failures, by operation.
    public func etcdDuration(_ operation: String) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: "berth_agent_etcd_request_duration_seconds", dimensions: [("op", operation)], preferredDisplayUnit: .seconds)
    }

    public func etcdErrors(_ operation: String) -> Counter {
        Counter(label: "berth_agent_etcd_errors_total", dimensions: [("op", operation)])
    }
}

/// A `ClusterStore` whose requests are timed and whose failures are
/// counted, by operation (a failed watch is counted by the agent).
public struct MeasuredStore: ClusterStore {
    let base: any ClusterStore
    let metrics: AgentMetrics

    public init(_ base: any ClusterStore, metrics: AgentMetrics) {
        self.base = base
        self.metrics = metrics
    }

    public var endpoint: String { base.endpoint }

    func measured<T>(_ op: String, _ body: () async throws -> T) async throws -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let value = try await body()
            metrics.etcdDuration(op).recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
            return value
        } catch {
            metrics.etcdErrors(op).increment()
            throw error
        }
    }

    public func list(prefix: String) async throws -> (items: [EtcdKeyValue], revision: Int64) {
        try await measured("range") { try await base.list(prefix: prefix) }
    }
    public func get(_ key: String) async throws -> EtcdKeyValue? { try await measured("range") { try await base.get(key) } }
    public func put(_ key: String, _ value: [UInt8], lease: Int64) async throws {
        try await measured("put") { try await base.put(key, value, lease: lease) }
    }
    public func delete(_ key: String) async throws { try await measured("delete") { try await base.delete(key) } }
    public func write(puts: [(key: String, value: [UInt8])], deletes: [String], lease: Int64) async throws {
        try await measured("txn") { try await base.write(puts: puts, deletes: deletes, lease: lease) }
    }
    public func create(_ key: String, _ value: [UInt8], lease: Int64) async throws -> Bool {
        try await measured("txn") { try await base.create(key, value, lease: lease) }
    }
    public func replace(_ key: String, ifValue expected: [UInt8], with value: [UInt8], lease: Int64) async throws -> Bool {
        try await measured("txn") { try await base.replace(key, ifValue: expected, with: value, lease: lease) }
    }
    public func delete(_ key: String, ifValue expected: [UInt8]) async throws -> Bool {
        try await measured("txn") { try await base.delete(key, ifValue: expected) }
    }
    public func grantLease(ttl: Int) async throws -> Int64 { try await measured("lease_grant") { try await base.grantLease(ttl: ttl) } }
    public func keepAlive(_ lease: Int64) async throws -> Int { try await measured("lease_keepalive") { try await base.keepAlive(lease) } }
    public func revoke(_ lease: Int64) async throws { try await measured("lease_revoke") { try await base.revoke(lease) } }
    /// The store's own stream, untouched (an extra task between it and the
    /// agent would delay its events); the agent counts a watch that fails.
    public func watch(prefix: String, from revision: Int64) -> AsyncThrowingStream<[EtcdEvent], Error> {
        base.watch(prefix: prefix, from: revision)
    }
    public func ping(seconds: Int64) async throws { try await measured("status") { try await base.ping(seconds: seconds) } }
    public func shutdown() async { await base.shutdown() }
}
