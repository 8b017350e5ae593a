import Foundation
import Testing
import BerthTestSupport
import BerthNet

@Suite("IPv6 clusters", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd") && FileManager.default.fileExists(atPath: "/usr/bin/wireguard-go"),
                "needs root, etcd and wireguard-go (scripts/setup.sh installs them)"))
struct ClusterIPv6Tests {
    @Test("an IPv6 range: /64 blocks, every pod reaches every other (host-gw, vxlan and wireguard over an IPv6 underlay, vxlan and wireguard over IPv4); the pods' MTU fits the mode",
          arguments: [("host-gw", true), ("wireguard", true), ("vxlan", true), ("vxlan", false), ("wireguard", false)])
    func ipv6Only(mode: String, ipv6Underlay: Bool) throws {
        let range = String(format: "fd%02x:%x:%x::/48", Int.random(in: 0...255), Int.random(in: 0...0xFFFF), Int.random(in: 0...0xFFFF))
        let c = try SimulatedCluster(mode: mode, nodes: 3, network: range, blockLength: nil, ipv6Underlay: ipv6Underlay)
        defer { c.cleanUp() }
        for i in 0..<3 { try c.startAgent(i, extra: ["--state-dir", "\(c.work)/state\(i)", "--metrics-address", "none"]) }
        try #require(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } } != nil,
                     "routes \((0..<3).map(c.routes)); \(c.log(0))")
        if mode == "vxlan" {
            let details = shell(["ip", "-n", c.nodeNamespace(0), "-d", "link", "show", "berthvx1"]).out
            #expect(details.contains("local \(c.nodeAddress(0))"), "VXLAN over the \(ipv6Underlay ? "IPv6" : "IPv4") underlay: \(details)")
        }
        let blocks = (0..<3).compactMap(c.block)
        #expect(blocks.count == 3 && Set(blocks).count == 3 && blocks.allSatisfy { $0.hasSuffix("/64") && $0.hasPrefix(String(range.prefix(4))) }, "\(blocks)")
        for i in 0..<3 { try c.addPod(node: i) }
        #expect(c.pods.allSatisfy { $0.address.contains(":") }, "\(c.pods.map(\.address))")
        // Neighbour discovery on the way (pod, bridge, underlay, far bridge) may cost the very first echo.
        _ = c.inPod(c.pods[0].netns, ["ping", "-6", "-c", "2", "-i", "0.5", "-W", "1", c.pods[1].address])
        for a in c.pods {
            for b in c.pods where a.id != b.id {
                let ping = c.inPod(a.netns, ["ping", "-6", "-c", "1", "-W", "2", b.address])
                #expect(ping.status == 0, "\(mode): pod \(a.address) on node \(a.node) cannot reach \(b.address) on node \(b.node)")
            }
        }
        // The MTU the node file gives: the underlay's (1500) for host-gw, less 80 for WireGuard over IPv6
        // and 60 over IPv4, less 70 for VXLAN over IPv6 and 50 over IPv4.
        let mtu = mode == "host-gw" ? 1500 : mode == "vxlan" ? (ipv6Underlay ? 1430 : 1450) : ipv6Underlay ? 1420 : 1440
        let full = c.inPod(c.pods[0].netns, ["ping", "-6", "-c", "1", "-W", "2", "-M", "do", "-s", "\(mtu - 48)", c.pods[1].address])
        #expect(full.status == 0, "\(mode): a \(mtu)-byte packet with DF: \(full.out)")
        if mode != "host-gw" {
            let over = c.inPod(c.pods[0].netns, ["ping", "-6", "-c", "1", "-W", "2", "-M", "do", "-s", "\(mtu - 47)", c.pods[1].address])
            #expect(over.status != 0, "one byte more does not fit")
        }
    }

    @Test("dual stack: each node holds an IPv4 /24 and an IPv6 /64, pods get both and reach every other pod over both families (host-gw with IPv6 underlay addresses beside IPv4, vxlan over IPv4 and IPv6, wireguard over IPv6 and IPv4)",
          arguments: [("host-gw", false), ("vxlan", false), ("vxlan", true), ("wireguard", true), ("wireguard", false)])
    func dualStack(mode: String, ipv6Underlay: Bool) throws {
        let range6 = String(format: "fd%02x:%x:%x::/48", Int.random(in: 0...255), Int.random(in: 0...0xFFFF), Int.random(in: 0...0xFFFF))
        let c = try SimulatedCluster(mode: mode, nodes: 3, ipv6Underlay: ipv6Underlay, ipv6Addresses: mode == "host-gw", ipv6Network: range6)
        defer { c.cleanUp() }
        if mode == "host-gw" {
            // Without its IPv6 underlay address a host-gw node cannot route its IPv6 block: it says so, naming the flag.
            let bare = shellMerged(["timeout", "3", "ip", "netns", "exec", c.nodeNamespace(0), "\(productsDirectory)/berth-agent", "run", "--etcd", c.etcdURL,
                              "--cluster", c.name, "--node", "n0", "--address", c.nodeAddress(0), "--subnet-file", c.subnetFile(0),
                              "--run-dir", c.runDir(0), "--state-dir", "\(c.work)/state0", "--metrics-address", "none"])
            #expect(bare.out.contains("dual-stack in host-gw mode") && bare.out.contains("--ipv6-address"), "\(bare.out)")
            #expect(!FileManager.default.fileExists(atPath: c.subnetFile(0)), "no block is taken without it")
        }
        for i in 0..<3 { try c.startAgent(i, extra: ["--state-dir", "\(c.work)/state\(i)", "--metrics-address", "none"]) }
        // Two peers, two blocks each.
        try #require(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 4 } } != nil,
                     "routes \((0..<3).map(c.routes)); \(c.log(0))")
        let blocks = (0..<3).compactMap(c.block), blocks6 = (0..<3).compactMap(c.ipv6Block)
        #expect(blocks.count == 3 && Set(blocks).count == 3 && blocks.allSatisfy { $0.hasSuffix("/24") && $0.hasPrefix("10.249.") }, "\(blocks)")
        #expect(blocks6.count == 3 && Set(blocks6).count == 3 && blocks6.allSatisfy { $0.hasSuffix("/64") && $0.hasPrefix(String(range6.prefix(4))) }, "\(blocks6)")
        let table = c.agentCommand(["nodes", "--etcd", c.etcdURL, "--cluster", c.name]).out
        #expect(blocks6.allSatisfy(table.contains) && blocks.allSatisfy(table.contains), "berth-agent nodes names both blocks: \(table)")
        for i in 0..<3 { try c.addPod(node: i) }
        #expect(c.pods.allSatisfy { !$0.address.contains(":") && c.podIPv6[$0.netns] != nil }, "\(c.pods.map(\.address)) \(c.podIPv6)")
        _ = c.inPod(c.pods[0].netns, ["ping", "-6", "-c", "2", "-i", "0.5", "-W", "1", c.podIPv6[c.pods[1].netns] ?? "::1"])
        for a in c.pods {
            for b in c.pods where a.id != b.id {
                let four = c.inPod(a.netns, ["ping", "-4", "-c", "1", "-W", "2", b.address])
                #expect(four.status == 0, "\(mode): pod \(a.address) on node \(a.node) cannot reach \(b.address) on node \(b.node)")
                let b6 = c.podIPv6[b.netns] ?? "::1"
                let six = c.inPod(a.netns, ["ping", "-6", "-c", "1", "-W", "2", b6])
                #expect(six.status == 0, "\(mode): pod \(c.podIPv6[a.netns] ?? "?") on node \(a.node) cannot reach \(b6) on node \(b.node)")
            }
        }
        // One MTU for both families: the underlay's less the mode's encapsulation over the underlay's family.
        let mtu = mode == "host-gw" ? 1500 : mode == "vxlan" ? (ipv6Underlay ? 1430 : 1450) : ipv6Underlay ? 1420 : 1440
        let (a, b) = (c.pods[0], c.pods[1])
        let full4 = c.inPod(a.netns, ["ping", "-4", "-c", "1", "-W", "2", "-M", "do", "-s", "\(mtu - 28)", b.address])
        let full6 = c.inPod(a.netns, ["ping", "-6", "-c", "1", "-W", "2", "-M", "do", "-s", "\(mtu - 48)", c.podIPv6[b.netns] ?? "::1"])
        #expect(full4.status == 0 && full6.status == 0, "\(mode): \(mtu)-byte packets with DF: \(full4.out) \(full6.out)")
        if mode == "wireguard" {
            // One WireGuard peer per node, allowed both of its blocks.
            // wireguard-go's sockets are shared by the simulated nodes: node 0's device by its name.
            let device0 = "bwg" + String(hexString(SHA256.digest(Array("\(c.name)/n0".utf8))).prefix(10))
            let dump = shell(["wg", "show", device0, "allowed-ips"]).out
            for i in 1..<3 {
                #expect(dump.contains(c.block(i) ?? "?") && dump.contains(c.ipv6Block(i) ?? "?"), "node \(i)'s blocks in \(dump)")
            }
            #expect(dump.split(separator: "\n").count == 2, "two peers: \(dump)")
        }
        // Node 1's IPv6 block key deleted by hand: its agent claims the same block again, its node file unchanged.
        let file1 = try String(contentsOfFile: c.subnetFile(1), encoding: .utf8)
        let key6 = "/berth/clusters/\(c.name)/blocks/" + (c.ipv6Block(1) ?? "?").replacingOccurrences(of: "/", with: "-")
        #expect(c.etcdctl(["del", key6]).out.contains("1"), "deleting \(key6)")
        #expect(c.wait(seconds: 10) { c.etcdctl(["get", key6, "--print-value-only"]).out.contains("n1") } != nil, "\(c.log(1))")
        #expect(try String(contentsOfFile: c.subnetFile(1), encoding: .utf8) == file1)
        // A node that leaves takes both its routes away everywhere.
        let leave = shellMerged(["ip", "netns", "exec", c.nodeNamespace(2), "\(productsDirectory)/berth-agent", "leave",
                                 "--etcd", c.etcdURL, "--cluster", c.name, "--node", "n2"])
        #expect(leave.status == 0, "\(leave.out)")
        #expect(c.wait(seconds: 10) { (0..<2).allSatisfy { c.routes($0).count == 2 } } != nil, "\((0..<2).map(c.routes))")
    }
}
