import Foundation
import Testing
import BerthJSON
@testable import BerthCluster
import BerthNet

@Suite("WireGuard mode (pure)")
struct WireGuardModelTests {
    let config = try! ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, mode: .wireguard)

    func record(_ node: String, _ block: String, _ address: String, key: String?) -> KeyedRecord {
        KeyedRecord(key: config.nodeKey(node),
                    record: NodeRecord(node: node, address: IPAddress(address)!, block: IPPrefix(block)!, publicKey: key, since: 1))
    }

    @Test("a wireguard declaration takes WireGuard's port by default and reads back")
    func declaration() throws {
        #expect(config.port == 51820)
        #expect(try ClusterConfig(json: JSON.parse(config.json.serialized())) == config)
        #expect(try ClusterConfig(name: "p", network: IPPrefix("10.244.0.0/16")!, mode: .vxlan).port == 8472)
    }

    @Test("peers need a public key of 32 bytes that no other peer, nor this node, has")
    func keysChecked() throws {
        let a = try WireGuardKey.generate().publicBase64, b = try WireGuardKey.generate().publicBase64, own = try WireGuardKey.generate().publicBase64
        let zeros = Data(repeating: 0, count: 32).base64EncodedString()
        let records = [record("n1", "10.244.1.0/24", "192.0.2.1", key: a), record("n2", "10.244.2.0/24", "192.0.2.2", key: nil),
                       record("n3", "10.244.3.0/24", "192.0.2.3", key: "c2hvcnQ="), record("n4", "10.244.4.0/24", "192.0.2.4", key: a),
                       record("n5", "10.244.5.0/24", "192.0.2.5", key: own), record("n6", "10.244.6.0/24", "192.0.2.6", key: zeros),
                       record("n7", "10.244.7.0/24", "192.0.2.7", key: b)]
        var owners: [IPPrefix: String] = [:]
        for r in records { owners[r.record.block] = r.record.node }
        let (peers, rejected) = acceptedPeers(records, owners: owners, config: config, node: "me", ownBlock: IPPrefix("10.244.0.0/24"),
                                              ownAddress: IPAddress("192.0.2.100"), ownVTEPMAC: nil, ownPublicKey: own)
        #expect(peers.map(\.record.node) == ["n1", "n7"])
        let reasons = Dictionary(uniqueKeysWithValues: rejected.map { ($0.key, $0.reason) })
        #expect(reasons[config.nodeKey("n2")] == "it has no WireGuard public key (wireguard mode)")
        #expect(reasons[config.nodeKey("n3")] == "its WireGuard public key is not 32 bytes of base64")
        #expect(reasons[config.nodeKey("n4")] == "its WireGuard public key is node n1's too")
        #expect(reasons[config.nodeKey("n5")] == "its WireGuard public key is this node's own")
        #expect(reasons[config.nodeKey("n6")] == "its WireGuard public key is all zeros")
        // A record with a key that is no string is no record.
        #expect(NodeRecord(json: try! JSON.parse(#"{"node":"n1","address":"192.0.2.1","block":"10.244.1.0/24","publicKey":7}"#)) == nil)
    }

    @Test("the key is made once, kept 0600, read back the same; one readable by others or not a key is refused")
    func keyFile() throws {
        let dir = NSTemporaryDirectory() + "berth-wgkey-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/wireguard/pods.key"
        let first = try WireGuardKey.loadOrCreate(path)
        let again = try WireGuardKey.loadOrCreate(path)
        #expect(first == again && first.publicKey.count == 32)
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
        chmod(path, 0o644)
        #expect(throws: ClusterError.self) { try WireGuardKey.loadOrCreate(path) }
        chmod(path, 0o600)
        try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        #expect(throws: ClusterError.self) { try WireGuardKey.loadOrCreate(path) }
        // RFC 7748's test vector: the public key of a known private key.
        let alice = try WireGuardKey(privateKey: hexBytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")!)
        #expect(hexString(alice.publicKey) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    }

    @Test("device names are one per cluster and node and fit an interface name")
    func deviceNames() {
        let a = WireGuardBackend.deviceName(cluster: "pods", node: "n1"), b = WireGuardBackend.deviceName(cluster: "pods", node: "n2")
        #expect(a != b && a.count <= 15 && a.hasPrefix("bwg"))
        #expect(a == WireGuardBackend.deviceName(cluster: "pods", node: "n1"))
    }
}
