import BerthNet
import BerthNetlink

/// What the agent needs of the cluster's store: etcd's key, lease and watch
/// operations, as `EtcdClient` speaks them over etcd's JSON gateway. Unit
/// tests of the agent's logic give it an in-memory store instead
/// (`BerthClusterFakes.MemoryStore`), with the same semantics.
public protocol ClusterStore: Sendable {
    /// Where the store is, for messages ("http://10.0.0.5:2379").
    var endpoint: String { get }
    /// Every key under `prefix`, and the store's revision when read.
    func list(prefix: String) async throws -> (items: [EtcdKeyValue], revision: Int64)
    func get(_ key: String) async throws -> EtcdKeyValue?
    /// Puts `value`, attached to `lease` when it is not 0.
    func put(_ key: String, _ value: [UInt8], lease: Int64) async throws
    func delete(_ key: String) async throws
    /// Puts and deletes keys in one transaction (one revision: watchers see
    /// one change), the puts attached to `lease` when it is not 0; at most
    /// `EtcdClient.maximumOperations` changes a call.
    func write(puts: [(key: String, value: [UInt8])], deletes: [String], lease: Int64) async throws
    /// Puts `value` only if `key` does not exist; whether this call did.
    func create(_ key: String, _ value: [UInt8], lease: Int64) async throws -> Bool
    /// Puts `value` only if `key` holds `expected`; whether this call did.
    func replace(_ key: String, ifValue expected: [UInt8], with value: [UInt8], lease: Int64) async throws -> Bool
    /// Deletes `key` only if it holds `expected`; whether this call did.
    func delete(_ key: String, ifValue expected: [UInt8]) async throws -> Bool
    func grantLease(ttl: Int) async throws -> Int64
    /// Renews `lease`; the seconds it has left (0: it has expired).
    func keepAlive(_ lease: Int64) async throws -> Int
    /// Ends `lease` now: every key attached to it goes.
    func revoke(_ lease: Int64) async throws
    /// The changes under `prefix` from `revision` on; ends with an error when the watch fails.
    func watch(prefix: String, from revision: Int64) -> AsyncThrowingStream<[EtcdEvent], Error>
    /// Throws when the store does not answer within `seconds`.
    func ping(seconds: Int64) async throws
    func shutdown() async
}

extension EtcdClient: ClusterStore {}

/// The kernel side of a node in one of the cluster's modes: it owns its
/// device (if the mode has one), programs its peers by difference and says
/// what MTU the node's pods should use: `HostGatewayBackend`, `VXLANBackend`
/// `WireGuardBackend` (made by `NodeNetwork.backend(for:)`); unit tests of the
/// agent give a fake.
public protocol NodeBackend: AnyObject {
    /// The MTU the node's pods should use (the underlay's, less the mode's encapsulation).
    var podMTU: Int { get }
    /// What the node publishes for its peers to reach it: vxlan's VTEP MAC,
    /// wireguard's public key.
    var vtepMAC: String? { get }
    var publicKey: String? { get }
    /// Takes this node's block (vxlan: the VTEP address on the device); no peer may touch it.
    func holdBlock(_ block: IPPrefix) throws
    /// Makes the kernel hold exactly what `peers` need; the peers that
    /// failed, by node, with the reason (`NodeNetwork.staleEntries` for removals).
    @discardableResult func sync(peers: [NodeRecord]) throws -> [String: String]
    /// Removes everything it programmed (the node leaving).
    func teardown()
    /// How many routes and entries it has added or removed so far.
    var changesMade: Int { get }
    /// Starts telling of changes others make to what it programs (a route
    /// deleted by hand, say), so that they are put right at once; nil when
    /// it cannot watch (test doubles). Stopped with `RouteMonitor.stop()`.
    func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor?
}

extension NodeBackend {
    public var changesMade: Int { 0 }
    public var publicKey: String? { nil }
    public func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor? { nil }
}
