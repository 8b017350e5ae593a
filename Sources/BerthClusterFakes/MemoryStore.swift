import BerthCluster
import Foundation
import BerthNet

/// An in-memory `ClusterStore` with etcd's semantics as the agent uses them:
/// revisions, transactions on create revision and value, leases whose keys
/// go with them, and watches from a revision (replayed from the store's
/// history). For unit tests of the agent's logic: `down` makes every call
/// fail as an unreachable etcd would, `hung` makes `ping` time out.
public final class MemoryStore: ClusterStore, @unchecked Sendable {
    public let endpoint = "memory://"
    private let lock = NSLock()
    private var keys: [String: EtcdKeyValue] = [:]
    private var leases: [Int64: Int] = [:]
    private var revision: Int64 = 1
    private var nextLease: Int64 = 100
    private var history: [(revision: Int64, event: EtcdEvent)] = []
    private var watchers: [UUID: (prefix: String, continuation: AsyncThrowingStream<[EtcdEvent], Error>.Continuation)] = [:]
    private var down = false
    private var hung = false
    /// How many leases were granted (a spinning agent grants many).
    public private(set) var leasesGranted = 0

    public init() {}

    /// Makes every call fail (etcd unreachable), ending open watches; or works again.
    public func setDown(_ value: Bool) {
        let ended: [AsyncThrowingStream<[EtcdEvent], Error>.Continuation] = lock.withLock {
            down = value
            guard value else { return [] }
            defer { watchers = [:] }
            return watchers.values.map(\.continuation)
        }
        for c in ended { c.finish(throwing: EtcdError("memory store is down")) }
    }

    /// Makes `ping` fail as a hung etcd's would (the rest still answers).
    public func setHung(_ value: Bool) { lock.withLock { hung = value } }

    /// Ends `lease` as if its TTL ran out.
    public func expire(_ lease: Int64) { try? revokeNow(lease) }

    /// The keys and values now, for the test's checks.
    public func snapshot(prefix: String = "") -> [String: String] {
        lock.withLock {
            Dictionary(uniqueKeysWithValues: keys.filter { $0.key.hasPrefix(prefix) }.map { ($0.key, String(decoding: $0.value.value, as: UTF8.self)) })
        }
    }

    private func check() throws {
        if lock.withLock({ down }) { throw EtcdError("memory store is down") }
    }

    /// Applies a change under the lock and returns the events to deliver.
    private func record(_ event: EtcdEvent) -> [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] {
        history.append((revision, event))
        return watchers.values.filter { event.keyValue.key.hasPrefix($0.prefix) }.map { ($0.continuation, event) }
    }

    private func deliver(_ batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)]) {
        for (c, e) in batch { c.yield([e]) }
    }

    private func putLocked(_ key: String, _ value: [UInt8], lease: Int64) -> [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] {
        revision += 1
        let created = keys[key]?.createRevision ?? revision
        let kv = EtcdKeyValue(key: key, value: value, createRevision: created, modRevision: revision, lease: lease)
        keys[key] = kv
        return record(EtcdEvent(kind: .put, keyValue: kv))
    }

    private func deleteLocked(_ key: String) -> [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] {
        guard let old = keys.removeValue(forKey: key) else { return [] }
        revision += 1
        var kv = old
        kv.value = []
        kv.modRevision = revision
        return record(EtcdEvent(kind: .delete, keyValue: kv))
    }

    public func list(prefix: String) async throws -> (items: [EtcdKeyValue], revision: Int64) {
        try check()
        return lock.withLock { (keys.values.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }, revision) }
    }

    public func get(_ key: String) async throws -> EtcdKeyValue? {
        try check()
        return lock.withLock { keys[key] }
    }

    public func put(_ key: String, _ value: [UInt8], lease: Int64) async throws {
        try check()
        let batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] = try lock.withLock {
            if lease != 0 && leases[lease] == nil { throw EtcdError("requested lease not found") }
            return putLocked(key, value, lease: lease)
        }
        deliver(batch)
    }

    public func delete(_ key: String) async throws {
        try check()
        let batch = lock.withLock { deleteLocked(key) }
        deliver(batch)
    }

    public func write(puts: [(key: String, value: [UInt8])], deletes: [String], lease: Int64) async throws {
        try check()
        let batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] = try lock.withLock {
            if lease != 0 && leases[lease] == nil { throw EtcdError("requested lease not found") }
            return puts.flatMap { putLocked($0.key, $0.value, lease: lease) } + deletes.flatMap { deleteLocked($0) }
        }
        deliver(batch)
    }

    public func create(_ key: String, _ value: [UInt8], lease: Int64) async throws -> Bool {
        try check()
        let batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)]? = try lock.withLock {
            if keys[key] != nil { return nil }
            if lease != 0 && leases[lease] == nil { throw EtcdError("requested lease not found") }
            return putLocked(key, value, lease: lease)
        }
        if let batch { deliver(batch) }
        return batch != nil
    }

    public func replace(_ key: String, ifValue expected: [UInt8], with value: [UInt8], lease: Int64) async throws -> Bool {
        try check()
        let batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)]? = try lock.withLock {
            guard keys[key]?.value == expected else { return nil }
            if lease != 0 && leases[lease] == nil { throw EtcdError("requested lease not found") }
            return putLocked(key, value, lease: lease)
        }
        if let batch { deliver(batch) }
        return batch != nil
    }

    public func delete(_ key: String, ifValue expected: [UInt8]) async throws -> Bool {
        try check()
        let batch: [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)]? = lock.withLock {
            guard keys[key]?.value == expected else { return nil }
            return deleteLocked(key)
        }
        if let batch { deliver(batch) }
        return batch != nil
    }

    public func grantLease(ttl: Int) async throws -> Int64 {
        try check()
        return lock.withLock {
            nextLease += 1
            leases[nextLease] = ttl
            leasesGranted += 1
            return nextLease
        }
    }

    public func keepAlive(_ lease: Int64) async throws -> Int {
        try check()
        return lock.withLock { leases[lease] ?? 0 }
    }

    public func revoke(_ lease: Int64) async throws {
        try check()
        try revokeNow(lease)
    }

    private func revokeNow(_ lease: Int64) throws {
        let batch = lock.withLock { () -> [(AsyncThrowingStream<[EtcdEvent], Error>.Continuation, EtcdEvent)] in
            leases.removeValue(forKey: lease)
            return keys.values.filter { $0.lease == lease }.map(\.key).sorted().flatMap { deleteLocked($0) }
        }
        deliver(batch)
    }

    public func watch(prefix: String, from start: Int64) -> AsyncThrowingStream<[EtcdEvent], Error> {
        AsyncThrowingStream { continuation in
            let id = UUID()
            let replay: [EtcdEvent]? = lock.withLock {
                if down { return nil }
                watchers[id] = (prefix, continuation)
                return history.filter { $0.revision >= start && $0.event.keyValue.key.hasPrefix(prefix) }.map(\.event)
            }
            guard let replay else {
                continuation.finish(throwing: EtcdError("memory store is down"))
                return
            }
            if !replay.isEmpty { continuation.yield(replay) }
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                self.lock.withLock { _ = self.watchers.removeValue(forKey: id) }
            }
        }
    }

    public func ping(seconds: Int64) async throws {
        try check()
        if lock.withLock({ hung }) {
            try await Task.sleep(nanoseconds: UInt64(seconds) * 1_000_000_000)
            throw EtcdError("memory store did not answer within \(seconds) s")
        }
    }

    public func shutdown() async {}
}

/// A `NodeBackend` that remembers what it was asked to program instead of
/// touching the kernel; `refuse` makes it fail for some nodes.
public final class RecordingBackend: NodeBackend, @unchecked Sendable {
    private let lock = NSLock()
    public let podMTU: Int
    public let vtepMAC: String?
    private var refused: Set<String> = []
    private var programmed: [String] = []
    private var held: [IPPrefix] = []
    public private(set) var tornDown = false

    public init(podMTU: Int = 1450, vtepMAC: String? = nil) {
        self.podMTU = podMTU
        self.vtepMAC = vtepMAC
    }

    /// Nodes whose peers the "kernel" refuses from now on.
    public func refuse(_ nodes: Set<String>) { lock.withLock { refused = nodes } }
    /// The nodes programmed by the last sync, sorted.
    public var peers: [String] { lock.withLock { programmed } }
    /// The block held last.
    public var block: IPPrefix? { lock.withLock { held.last } }
    /// The blocks held, one per family (dual stack: two).
    public var blocks: [IPPrefix] { lock.withLock { held } }

    public func holdBlock(_ block: IPPrefix) throws {
        lock.withLock {
            held.removeAll { $0.family == block.family }
            held.append(block)
        }
    }

    public func sync(peers: [NodeRecord]) throws -> [String: String] {
        lock.withLock {
            var failures: [String: String] = [:]
            for p in peers where refused.contains(p.node) { failures[p.node] = "refused by the test" }
            programmed = peers.map(\.node).filter { failures[$0] == nil }.sorted()
            return failures
        }
    }

    public func teardown() { lock.withLock { tornDown = true; programmed = []; held = [] } }
}
