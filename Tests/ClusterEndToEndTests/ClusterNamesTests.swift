import Foundation
import Testing
import BerthJSON
import BerthTestSupport

@Suite("names across a cluster", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd") && FileManager.default.fileExists(atPath: "/usr/sbin/dnsmasq"),
                "needs root, etcd and dnsmasq (scripts/setup.sh installs them)"))
struct ClusterNamesTests {
    @Test("three nodes: a pod on node 0 resolves pods on nodes 1 and 2 by name, also one added later; a forged endpoint record with a name outside the domain is refused; a pod's DEL takes its name from the other nodes")
    func acrossNodes() throws {
        let c = try SimulatedCluster(mode: "host-gw", nodes: 3)
        defer { c.cleanUp() }
        c.names = true
        try c.converge(3)
        try c.addPod(node: 0, name: "alpha")
        try c.addPod(node: 2, name: "gamma")
        let (alpha, gamma) = (c.pods[0], c.pods[1])
        let gateway0 = try #require(c.block(0)).split(separator: "/")[0].split(separator: ".").prefix(3).joined(separator: ".") + ".1"
        func lookup(_ pod: (node: Int, netns: String, id: String, address: String), _ name: String, server: String) -> String {
            c.inPod(pod.netns, ["busybox", "nslookup", name, server]).out
        }
        #expect(c.wait(seconds: 10) { lookup(alpha, "gamma.berth.internal", server: gateway0).contains(gamma.address) } != nil,
                "node 0's server does not know gamma: \(lookup(alpha, "gamma.berth.internal", server: gateway0)) \(c.log(0))")
        // A pod added later on node 1 is known on node 0 within a second or so.
        try c.addPod(node: 1, name: "beta")
        let beta = c.pods[2]
        #expect(c.wait(seconds: 5) { lookup(alpha, "beta", server: gateway0).contains(beta.address) } != nil)
        // And the other way: node 2's server knows alpha.
        let gateway2 = try #require(c.block(2)).split(separator: "/")[0].split(separator: ".").prefix(3).joined(separator: ".") + ".1"
        #expect(c.wait(seconds: 5) { lookup(gamma, "alpha", server: gateway2).contains(alpha.address) } != nil)
        // A forged record of node 1: its address is node 1's, its name is someone else's domain.
        let key = "/berth/clusters/\(c.name)/endpoints/n1/\(c.name):forged:eth0"
        let forged = #"{"network":"\#(c.name)","containerID":"forged","ifname":"eth0","namespace":"default","name":"forged","labels":{},"addresses":["\#(beta.address)"],"names":["www.example.com"],"node":"n1"}"#
        #expect(c.etcdctl(["put", key, forged]).status == 0)
        #expect(c.wait(seconds: 5) { c.log(0).contains("ignoring \(key)") && c.log(0).contains("is not a DNS label") } != nil, "\(c.log(0))")
        // (Not asked of the server: a name outside its domain would be forwarded to the host's resolvers.)
        let remote = (try? FileManager.default.contentsOfDirectory(atPath: "\(c.runDir(0))/dns/\(c.name)/remote.d")) ?? []
        #expect(!remote.contains { $0.contains("forged") }, "\(remote)")
        // gamma's DEL: gone from node 0's server.
        _ = c.berth("DEL", node: 2, netns: "/run/netns/\(gamma.netns)", id: gamma.id)
        #expect(c.wait(seconds: 5) { lookup(alpha, "gamma.berth.internal", server: gateway0).contains("NXDOMAIN") } != nil)
    }
}
