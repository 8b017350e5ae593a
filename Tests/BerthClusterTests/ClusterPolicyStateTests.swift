import Testing
import BerthCNI
import BerthEndpoints
import BerthJSON
import BerthNet
import BerthPolicy
@testable import BerthCluster

@Suite("cluster policy records (pure): what counts, what is refused")
struct ClusterPolicyStateTests {
    let config = try! ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, blockLength: 24, mode: .hostGateway)
    let owners: [IPPrefix: String] = [IPPrefix("10.244.1.0/24")!: "a", IPPrefix("10.244.2.0/24")!: "b"]

    func policy(_ name: String, _ namespace: String, port: Int = 80) -> [UInt8] {
        let p = NetworkPolicy(name: name, namespace: namespace, ingress: [PolicyRule(ports: [PortRange(proto: .tcp, first: UInt16(port))])])
        return Array(p.json.serialized().utf8)
    }

    func endpoint(_ node: String, _ name: String, _ address: String, labels: [String: String] = ["app": "web"], recordNode: String? = nil) -> (String, [UInt8]) {
        let e = Endpoint(attachment: CNIAttachmentKey(network: "pods", containerID: name, ifname: "eth0"),
                         identity: PodIdentity(namespace: "shop", name: name, labels: labels), addresses: [IPAddress(address)!])
        return (config.endpointsPrefix(node: node) + e.attachment.fileName, ClusterPolicyState.record(e, node: recordNode ?? node))
    }

    @Test("good policies, namespaces and other nodes' endpoints count; this node's own are left to its disk")
    func accepted() {
        var s = ClusterPolicyState(config: config, node: "a")
        #expect(s.put(config.policyKey(namespace: "shop", name: "db"), policy("db", "shop"), owners: owners) == nil)
        let ns = PolicyNamespace(name: "shop", labels: ["team": "blue"])
        #expect(s.put(config.namespaceKey("shop"), Array(ns.json.serialized().utf8), owners: owners) == nil)
        let (key, value) = endpoint("b", "web", "10.244.2.5")
        #expect(s.put(key, value, owners: owners) == nil)
        let (own, ownValue) = endpoint("a", "db", "10.244.1.5")
        #expect(s.put(own, ownValue, owners: owners) == nil)
        #expect(s.desired.policies.map(\.qualifiedName) == ["shop/db"])
        #expect(s.desired.labels(ofNamespace: "shop")["team"] == "blue")
        #expect(Array(s.remote.keys) == [key], "this node's own endpoint is not remote")
        #expect(s.seenPolicy)
        s.delete(config.policyKey(namespace: "shop", name: "db"))
        #expect(s.desired.policies.isEmpty && s.seenPolicy, "all deleted: nothing in force, but policy was seen (the table goes)")
    }

    @Test("a damaged or misplaced policy is refused and the last good one stays in force")
    func damagedPolicy() {
        var s = ClusterPolicyState(config: config, node: "a")
        let key = config.policyKey(namespace: "shop", name: "db")
        #expect(s.put(key, policy("db", "shop", port: 5432), owners: owners) == nil)
        let damaged = s.put(key, Array(#"{"kind":"#.utf8), owners: owners)
        #expect(damaged?.contains("not a NetworkPolicy") == true && damaged?.contains("last good value stays in force") == true)
        #expect(s.desired.policies.first?.ingress.first?.ports.first?.first == 5432)
        let misplaced = s.put(key, policy("other", "shop"), owners: owners)
        #expect(misplaced?.contains("belongs at \(config.policyKey(namespace: "shop", name: "other"))") == true)
        let unknownField = s.put(key, Array(#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"db","namespace":"shop"},"spec":{"podSelector":{},"ingres":[]}}"#.utf8), owners: owners)
        #expect(unknownField?.contains("spec.ingres") == true)
        #expect(s.desired.policies.count == 1)
    }

    @Test("hostile endpoint records: another node's addresses, a node without a block, a record naming another node, a bad label")
    func hostileEndpoints() {
        var s = ClusterPolicyState(config: config, node: "a")
        let (stolen, stolenValue) = endpoint("b", "x", "10.244.1.9")  // a's block
        #expect(s.put(stolen, stolenValue, owners: owners)?.contains("not in the block of node b") == true)
        let (outside, outsideValue) = endpoint("b", "y", "192.0.2.1")
        #expect(s.put(outside, outsideValue, owners: owners)?.contains("not in the block") == true)
        let (blockless, blocklessValue) = endpoint("c", "z", "10.244.3.4")
        #expect(s.put(blockless, blocklessValue, owners: owners)?.contains("node c holds no block") == true)
        let (lying, lyingValue) = endpoint("b", "w", "10.244.2.9", recordNode: "c")
        #expect(s.put(lying, lyingValue, owners: owners)?.contains("names node c, not b") == true)
        let (badLabel, badLabelValue) = endpoint("b", "v", "10.244.2.10", labels: ["app": "-x-"])
        #expect(s.put(badLabel, badLabelValue, owners: owners)?.contains("label app") == true)
        #expect(s.put(config.endpointsPrefix(node: "b") + "junk", Array("not json".utf8), owners: owners) == "not an endpoint record")
        #expect(s.remote.isEmpty)
        // Node c takes a block later: its pending record is taken then.
        var later = owners
        later[IPPrefix("10.244.3.0/24")!] = "c"
        let still = s.recheck(owners: later)
        #expect(s.remote[blockless] != nil)
        #expect(still[stolen] != nil)
    }

    @Test("a dual-stack pod's record counts when each address is in one of its node's blocks, IPv4 and IPv6; an IPv6 address of another node's block is refused")
    func dualStackEndpoints() {
        let dual = try! ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, blockLength: 24, mode: .vxlan,
                                      ipv6Network: IPPrefix("fd42::/48")!)
        let owners: [IPPrefix: String] = [IPPrefix("10.244.1.0/24")!: "a", IPPrefix("fd42:0:0:1::/64")!: "a",
                                          IPPrefix("10.244.2.0/24")!: "b", IPPrefix("fd42:0:0:2::/64")!: "b"]
        func record(_ name: String, _ addresses: [String]) -> (String, [UInt8]) {
            let e = Endpoint(attachment: CNIAttachmentKey(network: "pods", containerID: name, ifname: "eth0"),
                             identity: PodIdentity(namespace: "shop", name: name, labels: [:]), addresses: addresses.map { IPAddress($0)! })
            return (dual.endpointsPrefix(node: "b") + e.attachment.fileName, ClusterPolicyState.record(e, node: "b"))
        }
        var s = ClusterPolicyState(config: dual, node: "a")
        let (good, goodValue) = record("ok", ["10.244.2.5", "fd42:0:0:2::5"])
        #expect(s.put(good, goodValue, owners: owners) == nil && s.remote[good]?.addresses.count == 2)
        let (stolen, stolenValue) = record("bad", ["10.244.2.6", "fd42:0:0:1::6"])
        #expect(s.put(stolen, stolenValue, owners: owners)?.contains("address fd42:0:0:1::6 is not in the block of node b") == true)
    }
}
