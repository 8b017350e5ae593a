import Foundation
import Testing
import BerthCNI
import BerthIPAM
import BerthJSON
@testable import BerthCluster
import BerthClusterFakes
import BerthNet

/// An agent on a `MemoryStore` with a `RecordingBackend`: its logic without etcd or the kernel.
final class AgentHarness: @unchecked Sendable {
    let store = MemoryStore()
    let backend = RecordingBackend(podMTU: 1450, vtepMAC: "0a:00:00:00:00:01")
    let config: ClusterConfig
    let dir = NSTemporaryDirectory() + "berthtest-agent-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    private let lock = NSLock()
    private var lines: [String] = []

    init(network: String = "10.244.0.0/16", mode: ClusterMode = .hostGateway, ipv6Network: String? = nil) async throws {
        config = try ClusterConfig(name: "pods", network: IPPrefix(network)!, mode: mode, ipv6Network: ipv6Network.flatMap(IPPrefix.init))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        AgentHarness.removeAtExit
        let dir = self.dir
        AgentHarness.liveLock.withLock { AgentHarness.live.append(dir) }
        try await store.put(config.configKey, Array(config.json.serialized().utf8), lease: 0)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// Directories of harnesses still alive when the test process ends (an
    /// agent's task cancelled by a test's `defer` may not have let go of its
    /// harness yet): removed at exit, so that no run leaves one behind.
    nonisolated(unsafe) private static var live: [String] = []
    private static let liveLock = NSLock()
    private static let removeAtExit: Void = { atexit { AgentHarness.liveLock.withLock { for d in AgentHarness.live { try? FileManager.default.removeItem(atPath: d) } } } }()

    var log: String { lock.withLock { lines.joined(separator: "\n") } }

    func agent(_ node: String = "me", address: String = "192.168.1.1") -> Agent {
        let backend = self.backend
        return Agent(options: AgentOptions(etcd: "memory://", cluster: "pods", node: node, address: IPAddress(address)!,
                                           subnetFile: "\(dir)/\(node).json", ttl: 30),
                     store: store, backend: { _ in backend }, log: { [weak self] line in self?.lock.withLock { self?.lines.append(line) } })
    }

    /// Another node, written into the store as its agent would: block key and record under one lease.
    func addPeer(_ node: String, _ address: String, block: String, ipv6Block: String? = nil) async throws {
        let lease = try await store.grantLease(ttl: 30)
        let b = IPPrefix(block)!, b6 = ipv6Block.flatMap(IPPrefix.init)
        for key in [b] + (b6.map { [$0] } ?? []) { _ = try await store.create(config.blockKey(key), Array(node.utf8), lease: lease) }
        // vxlan: a unicast MAC of the peer's own.
        let mac = config.mode == .vxlan ? String(format: "0a:00:00:00:%02x:%02x", node.utf8.count, Int(node.utf8.last ?? 0)) : nil
        let record = NodeRecord(node: node, address: IPAddress(address)!, block: b, ipv6Block: b6, vtepMAC: mac, since: 0)
        try await store.put(config.nodeKey(node), Array(record.json.serialized().utf8), lease: lease)
    }

    func nodeFile(_ node: String = "me") -> NodeFile? {
        guard let data = FileManager.default.contents(atPath: "\(dir)/\(node).json") else { return nil }
        return try? NodeFile.parse(Array(data)).get()
    }

    /// Polls `condition` every 10 ms for up to `seconds`.
    func until(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return condition()
    }
}

@Suite("the agent's logic, on an in-memory store")
struct AgentTests {
    @Test("an agent claims a free block, publishes its record, writes the node file with its backend's MTU, and programs only the peers it accepts")
    func claimsAndPrograms() async throws {
        let h = try await AgentHarness()
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.0.0/24")
        // A record for n2's block that no block key backs, and one with a loopback address.
        try await h.store.put(h.config.nodeKey("evil"), Array(#"{"node":"evil","address":"192.168.1.66","block":"10.244.0.0/24"}"#.utf8), lease: 0)
        try await h.addPeer("lo", "127.0.0.1", block: "10.244.9.0/24")
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.nodeFile() != nil && h.backend.peers == ["n2"] }, "\(h.log)")
        let file = try #require(h.nodeFile())
        #expect(file.block.description == "10.244.1.0/24" && file.mtu == 1450 && file.cluster == "pods")
        #expect(h.store.snapshot(prefix: h.config.nodesPrefix)[h.config.nodeKey("me")]?.contains("192.168.1.1") == true)
        #expect(h.log.contains("ignoring the node record at \(h.config.nodeKey("evil")): block 10.244.0.0/24 is held by node n2"), "\(h.log)")
        #expect(h.log.contains("127.0.0.1 is a loopback address"), "\(h.log)")
        // A peer joining later is programmed.
        try await h.addPeer("n3", "192.168.1.3", block: "10.244.2.0/24")
        #expect(await h.until(30) { h.backend.peers == ["n2", "n3"] }, "\(h.backend.peers)")
    }

    @Test("dual stack: the agent takes a block of each range, writes both to its record and node file, programs dual-stack peers, ")
    func dualStack() async throws {
        let h = try await AgentHarness(mode: .vxlan, ipv6Network: "fd42:1:2::/48")
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.0.0/24", ipv6Block: "fd42:1:2::/64")
        // A peer of the dual-stack cluster without an IPv6 block is no peer.
        try await h.addPeer("old", "192.168.1.9", block: "10.244.9.0/24")
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.nodeFile() != nil && h.backend.peers == ["n2"] }, "\(h.log)")
        let file = try #require(h.nodeFile())
        #expect(file.block.description == "10.244.1.0/24" && file.ipv6Block?.description == "fd42:1:2:1::/64"
                && file.ipv6Network?.description == "fd42:1:2::/48")
        #expect(h.backend.blocks.map(\.description) == ["10.244.1.0/24", "fd42:1:2:1::/64"])
        let record = try #require(h.store.snapshot(prefix: h.config.nodesPrefix)[h.config.nodeKey("me")])
        #expect(record.contains(#""ipv6Block":"fd42:1:2:1::/64""#), "\(record)")
        #expect(h.log.contains("ignoring the node record at \(h.config.nodeKey("old")): it has no IPv6 block"), "\(h.log)")
    }

    @Test("dual stack: with the IPv6 range full the agent holds no IPv4 block either while it waits")
    func dualStackWaitsWhole() async throws {
        let h = try await AgentHarness(ipv6Network: "fd42:1:2::/63")
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.0.0/24", ipv6Block: "fd42:1:2::/64")
        try await h.addPeer("n3", "192.168.1.3", block: "10.244.1.0/24", ipv6Block: "fd42:1:2:1::/64")
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.log.contains("its range fd42:1:2::/63 has no free /64 block (all 2 are held)") }, "\(h.log)")
        #expect(!h.store.snapshot(prefix: h.config.blocksPrefix).values.contains("me") && h.nodeFile() == nil)
    }

    @Test("a restarted agent takes the same block back through its held key")
    func restartKeepsBlock() async throws {
        let h = try await AgentHarness()
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.0.0/24")
        let first = Task { await h.agent().run() }
        #expect(await h.until(30) { h.nodeFile() != nil })
        first.cancel()
        await first.value
        let block = h.nodeFile()?.block
        try await h.addPeer("n4", "192.168.1.4", block: "10.244.2.0/24")
        let second = Task { await h.agent().run() }
        defer { second.cancel() }
        #expect(await h.until(30) { h.backend.peers == ["n2", "n4"] }, "\(h.log)")
        #expect(h.nodeFile()?.block == block && block?.description == "10.244.1.0/24")
    }

    @Test("with every block held the agent waits without spinning and takes a block the moment one is freed")
    func waitsForAFreeBlock() async throws {
        let h = try await AgentHarness(network: "10.244.0.0/23")
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.0.0/24")
        try await h.addPeer("n3", "192.168.1.3", block: "10.244.1.0/24")
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.log.contains("has no free /24 block") }, "\(h.log)")
        let granted = h.store.leasesGranted
        try await Task.sleep(nanoseconds: 1_500_000_000)
        // A spinning agent granted about a thousand a second.
        #expect(h.store.leasesGranted - granted < 6, "\(h.store.leasesGranted - granted) leases granted in 1.5 s while waiting")
        #expect(h.nodeFile() == nil)
        // n3 leaves: its block key goes with its lease.
        let n3 = try #require(try await h.store.get(h.config.blockKey(IPPrefix("10.244.1.0/24")!)))
        h.store.expire(n3.lease)
        #expect(await h.until(30) { h.nodeFile()?.block.description == "10.244.1.0/24" }, "\(h.log)")
        // Taken because the freed block ended the wait, not at the end of a backoff (times are not tested: the suite shares 2 cores).
        #expect(h.log.contains("a block of cluster pods was freed: claiming it"), "\(h.log)")
    }

    @Test("a peer the kernel refuses is logged with its key and retried, and holds back no other peer")
    func refusedPeerRetried() async throws {
        let h = try await AgentHarness()
        h.backend.refuse(["bad"])
        try await h.addPeer("bad", "192.168.1.9", block: "10.244.9.0/24")
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.log.contains("node bad (\(h.config.nodeKey("bad"))): refused by the test") }, "\(h.log)")
        try await h.addPeer("n2", "192.168.1.2", block: "10.244.5.0/24")
        #expect(await h.until(30) { h.backend.peers == ["n2"] }, "\(h.backend.peers)")
        h.backend.refuse([])
        #expect(await h.until(30) { h.backend.peers == ["bad", "n2"] && h.log.contains("node bad is programmed now") }, "\(h.log)")
    }

    @Test("this node's record rewritten by someone else is written again")
    func tamperedRecordRewritten() async throws {
        let h = try await AgentHarness()
        let task = Task { await h.agent().run() }
        defer { task.cancel() }
        #expect(await h.until(30) { h.nodeFile() != nil })
        try await Task.sleep(nanoseconds: 100_000_000)
        let key = h.config.nodeKey("me")
        try await h.store.put(key, Array(#"{"node":"me","address":"192.168.1.66","block":"10.244.0.0/24"}"#.utf8), lease: 0)
        #expect(await h.until(30) { h.store.snapshot()[key]?.contains("192.168.1.1") == true }, "\(h.log)")
        #expect(h.log.contains("changed by someone else"))
    }

    @Test("leave revokes the lease: record and block key go, the backend tears down, the node file goes")
    func leave() async throws {
        let h = try await AgentHarness()
        let task = Task { await h.agent().run() }
        #expect(await h.until(30) { h.nodeFile() != nil })
        task.cancel()
        await task.value
        try await h.agent().leave()
        #expect(h.store.snapshot(prefix: h.config.nodesPrefix).isEmpty && h.store.snapshot(prefix: h.config.blocksPrefix).isEmpty)
        #expect(h.backend.tornDown && h.nodeFile() == nil)
    }
}
