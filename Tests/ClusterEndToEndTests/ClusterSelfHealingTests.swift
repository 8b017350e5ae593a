import Foundation
import Testing
import BerthJSON
import BerthTestSupport

@Suite("self-healing agents", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd"),
                "needs root and etcd (scripts/setup.sh installs etcd-server)"))
struct ClusterSelfHealingTests {
    func node(_ c: SimulatedCluster, _ i: Int, _ command: [String]) -> String {
        shell(["ip", "netns", "exec", c.nodeNamespace(i)] + command).out
    }

    @Test("a route, a neighbour and an FDB entry deleted by hand come back, a route added by hand with the agent's protocol goes")
    func kernelChangedByHand() throws {
        let c = try SimulatedCluster(mode: "vxlan", nodes: 2)
        defer { c.cleanUp() }
        for i in 0..<2 { try c.startAgent(i, extra: ["--reconcile-interval", "1", "--metrics-address", "none"]) }
        try #require(c.wait(seconds: 20) { (0..<2).allSatisfy { c.routes($0).count == 1 } } != nil, "no convergence")
        let routes = c.routes(0)
        let neighbours = node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"])
        let fdb = node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]).split(separator: "\n").filter { $0.contains(" dst ") }
        try #require(!neighbours.isEmpty && fdb.count == 1, "vxlan entries: \(neighbours) \(fdb)")
        let peerBlock = String(routes[0].split(separator: " ")[0])
        node(c, 0, ["ip", "route", "del", peerBlock])
        node(c, 0, ["ip", "neigh", "flush", "dev", "berthvx1"])
        node(c, 0, ["sh", "-c", "bridge fdb show dev berthvx1 | grep ' dst ' | while read mac rest; do bridge fdb del $mac dev berthvx1 ${rest#*dev berthvx1 }; done"])
        node(c, 0, ["ip", "route", "add", "192.0.2.0/24", "via", c.nodeAddress(1), "proto", "77"])
        // (The kernel's notifications may have the route back before it can be seen missing.)
        let healed = c.wait(seconds: 10) {
            c.routes(0) == routes && node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"]) == neighbours
                && node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]).split(separator: "\n").filter { $0.contains(" dst ") } == fdb
        }
        #expect(healed != nil, "routes \(c.routes(0)) (want \(routes)); neighbours \(node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"])); fdb \(node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]))")
        let log = (try? String(contentsOfFile: c.agentLog(0), encoding: .utf8)) ?? ""
        #expect(log.contains("the kernel had been changed by hand: put"), "\(log)")
        #expect(log.contains("removed route 192.0.2.0/24"), "the route added by hand with proto 77 went: \(log)")
    }

    @Test("a change by hand is put right at once, on the kernel's notification, not at the next periodic check; the agent's own changes start no check")
    func repairedOnNotification() throws {
        let c = try SimulatedCluster(mode: "vxlan", nodes: 3)
        defer { c.cleanUp() }
        // The periodic check an hour away: only the notification can repair in time.
        for i in 0..<3 { try c.startAgent(i, extra: ["--reconcile-interval", "3600", "--metrics-address", "none"]) }
        try #require(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } } != nil, "no convergence")
        usleep(500_000)
        #expect(!c.log(0).contains("changed by hand"), "its own programming is not taken for a change by hand: \(c.log(0))")
        let routes = c.routes(0)
        let peerBlock = String(routes[0].split(separator: " ")[0])
        node(c, 0, ["ip", "route", "del", peerBlock])
        #expect(c.wait(seconds: 3) { c.routes(0) == routes } != nil, "route back: \(c.routes(0)); \(c.log(0))")
        let neighbours = node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"])
        let vtep = try #require(neighbours.split(separator: " ").first.map(String.init))
        node(c, 0, ["ip", "neigh", "del", vtep, "dev", "berthvx1"])
        #expect(c.wait(seconds: 3) { node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"]) == neighbours } != nil,
                "neighbours back: \(node(c, 0, ["ip", "neigh", "show", "dev", "berthvx1"]))")
        let fdb = node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]).split(separator: "\n").filter { $0.contains(" dst ") }
        let first = try #require(fdb.first?.split(separator: " ").first)
        node(c, 0, ["bridge", "fdb", "del", String(first), "dev", "berthvx1", "dst", String(fdb[0].components(separatedBy: " dst ")[1].split(separator: " ")[0])])
        #expect(c.wait(seconds: 3) { node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]).split(separator: "\n").filter { $0.contains(" dst ") } == fdb } != nil,
                "fdb back: \(node(c, 0, ["bridge", "fdb", "show", "dev", "berthvx1"]))")
        node(c, 0, ["ip", "route", "add", "192.0.2.0/24", "via", c.nodeAddress(1), "proto", "77"])
        #expect(c.wait(seconds: 3) { c.routes(0) == routes } != nil, "the route added with the agent's protocol goes: \(c.routes(0))")
        let log = c.log(0)
        #expect(log.contains("(noticed at once: route deleted)"), "\(log)")
        #expect(log.components(separatedBy: "put 1 routes and entries right (noticed at once").count - 1 >= 4, "four repairs, each noticed: \(log)")
        // A route of another protocol is none of the agent's business.
        node(c, 0, ["ip", "route", "add", "192.0.2.0/24", "via", c.nodeAddress(1)])
        usleep(500_000)
        #expect(node(c, 0, ["ip", "route", "show", "192.0.2.0/24"]).contains("via"), "left alone")
    }

    @Test("etcd wiped and restarted: every node's block, record and the declaration come back from the agents; no node changes its routes")
    func etcdWiped() throws {
        let c = try SimulatedCluster(mode: "host-gw", nodes: 2)
        defer { c.cleanUp() }
        for i in 0..<2 { try c.startAgent(i, extra: ["--metrics-address", "none"]) }
        try #require(c.wait(seconds: 20) { (0..<2).allSatisfy { c.routes($0).count == 1 } } != nil, "no convergence")
        let routes = (0..<2).map { c.routes($0) }
        let blocks = (0..<2).map { c.block($0) }
        func etcdctl(_ args: [String]) -> (status: Int32, out: String) {
            shell(["etcdctl", "--endpoints", c.etcdURL] + args, environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
        }
        let before = etcdctl(["get", "--prefix", "/berth/clusters/\(c.name)/blocks/", "--keys-only"]).out
        c.stopEtcd()
        try FileManager.default.removeItem(atPath: "\(c.work)/etcd")
        try c.startEtcd()
        let back = c.wait(seconds: 30) {
            etcdctl(["get", "--prefix", "/berth/clusters/\(c.name)/blocks/", "--keys-only"]).out == before
                && etcdctl(["get", "--prefix", "/berth/clusters/\(c.name)/nodes/", "--keys-only"]).out.split(separator: "\n").filter { !$0.isEmpty }.count == 2
                && !etcdctl(["get", "/berth/clusters/\(c.name)/config"]).out.isEmpty
        }
        #expect(back != nil, "blocks \(etcdctl(["get", "--prefix", "/berth/clusters/\(c.name)/", "--keys-only"]).out); logs: \(c.log(0))\n\(c.log(1))")
        #expect((0..<2).map { c.block($0) } == blocks, "the same blocks")
        #expect((0..<2).map { c.routes($0) } == routes, "no node changed its routes")
        let log = (try? String(contentsOfFile: c.agentLog(0), encoding: .utf8)) ?? ""
        #expect(!log.contains("removed route"), "a route went and came back: \(log)")
    }
}
