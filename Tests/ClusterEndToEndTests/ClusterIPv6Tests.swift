import Foundation
import Testing
import BerthTestSupport

@Suite("IPv6 clusters", .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd") && FileManager.default.fileExists(atPath: "/usr/bin/wireguard-go"),
                "needs root, etcd and wireguard-go (scripts/setup.sh installs them)"))
struct ClusterIPv6Tests {
    @Test("an IPv6 range: /64 blocks, every pod reaches every other (host-gw, vxlan and wireguard over an IPv6 underlay, vxlan and wireguard over IPv4); the pods' MTU fits the mode",
          arguments: [("host-gw", true), ("wireguard", true), ("vxlan", true), ("vxlan", false), ("wireguard", false)])
    func ipv6Only(mode: String, ipv6Underlay: Bool) throws {
        let range = String(format: "fd%02x:%04x:%04x::/48", Int.random(in: 0...255), Int.random(in: 0...0xFFFF), Int.random(in: 0...0xFFFF))
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
}
