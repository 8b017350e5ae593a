import Foundation
import Testing
import BerthJSON
import BerthNet
import BerthTestSupport

@Suite("clusters over WireGuard", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd")
                    && FileManager.default.fileExists(atPath: "/usr/bin/wireguard-go") && FileManager.default.fileExists(atPath: "/usr/bin/wg")
                    && FileManager.default.fileExists(atPath: "/usr/bin/tcpdump"),
                "needs root, etcd, wireguard-go, wireguard-tools and tcpdump (scripts/setup.sh installs them)"))
struct ClusterWireGuardTests {
    /// Node `i`'s WireGuard device ("bwg" and a hash of cluster and node).
    func device(_ c: SimulatedCluster, _ i: Int) -> String? {
        shell(["ip", "-n", c.nodeNamespace(i), "-br", "link"]).out.split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map { String($0.split(separator: "@")[0]) } }.first { $0.hasPrefix("bwg") }
    }

    func peers(_ c: SimulatedCluster, _ i: Int) -> [String] {
        guard let dev = device(c, i) else { return [] }
        return shell(["ip", "netns", "exec", c.nodeNamespace(i), "wg", "show", dev, "peers"]).out.split(separator: "\n").map(String.init).sorted()
    }

    func state(_ c: SimulatedCluster, _ i: Int) -> [String] {
        ["--state-dir", "\(c.work)/state\(i)", "--metrics-address", "none", "--reconcile-interval", "1"]
    }

    @Test("three nodes over WireGuard (wireguard-go): pods reach each other; on the wire only UDP between the nodes' WireGuard ports, no pod address; DF full-size packets cross; a restart keeps the key; a node leaving is removed everywhere")
    func threeNodes() throws {
        let c = try SimulatedCluster(mode: "wireguard", nodes: 3)
        defer { c.cleanUp() }
        for i in 0..<3 { try c.startAgent(i, extra: state(c, i)) }
        try #require(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 && peers(c, $0).count == 2 } } != nil,
                     "routes \((0..<3).map(c.routes)), peers \((0..<3).map { peers(c, $0) }); \(c.log(0))")
        // The key: kept 0600, published, the device's own.
        let keyFile = "\(c.work)/state0/wireguard/\(c.name).key"
        let mode = (try FileManager.default.attributesOfItem(atPath: keyFile)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600, "key file mode \(String(mode ?? 0, radix: 8))")
        let record = try JSON.parse(c.etcdctl(["get", "/berth/clusters/\(c.name)/nodes/n0", "--print-value-only"]).out)
        let published = try #require(record["publicKey"]?.stringValue)
        let dev0 = try #require(device(c, 0))
        #expect(shell(["ip", "netns", "exec", c.nodeNamespace(0), "wg", "show", dev0, "public-key"]).out.trimmingCharacters(in: .whitespacesAndNewlines) == published)
        #expect((1..<3).allSatisfy { peers(c, $0).contains(published) })

        for i in 0..<3 { try c.addPod(node: i) }
        for a in c.pods {
            for b in c.pods where a.id != b.id {
                #expect(c.inPod(a.netns, ["ping", "-c", "1", "-W", "2", b.address]).status == 0, "pod on node \(a.node) to \(b.address) on node \(b.node)")
            }
        }

        // A capture on the underlay between nodes 0 and 1 while their pods talk.
        let capture = Process()
        capture.executableURL = URL(fileURLWithPath: "/usr/bin/tcpdump")
        capture.arguments = ["-i", c.underlay, "-n", "-l", "-c", "10", "host \(c.nodeAddress(0)) and host \(c.nodeAddress(1))"]
        let out = Pipe()
        capture.standardOutput = out
        capture.standardError = FileHandle.nullDevice
        try capture.run()
        usleep(700_000)
        _ = c.inPod(c.pods[0].netns, ["ping", "-c", "6", "-i", "0.2", "-W", "2", c.pods[1].address])
        let deadline = Date().addingTimeInterval(5)
        while capture.isRunning && Date() < deadline { usleep(100_000) }
        if capture.isRunning { capture.terminate() }
        capture.waitUntilExit()
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.count >= 6, "captured \(lines)")
        let port = "51820"
        for line in lines {
            let between = line.contains("\(c.nodeAddress(0)).\(port) > \(c.nodeAddress(1)).\(port): UDP")
                || line.contains("\(c.nodeAddress(1)).\(port) > \(c.nodeAddress(0)).\(port): UDP")
            #expect(between, "only WireGuard's UDP between the nodes: \(line)")
            for pod in c.pods { #expect(!line.contains(pod.address), "a pod address in clear: \(line)") }
        }

        // Pod MTU: the underlay's 1500 less 60; a full-size packet with DF crosses, one byte more does not leave.
        let full = c.inPod(c.pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "\(1440 - 28)", c.pods[1].address])
        #expect(full.status == 0, "a 1440-byte packet with DF: \(full.out)")
        let over = c.inPod(c.pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "\(1441 - 28)", c.pods[1].address])
        #expect(over.status != 0, "1441 bytes with DF do not fit")

        // A peer removed by hand (no netlink notification tells of it) is back by the periodic check.
        let dev1 = try #require(device(c, 1))
        shell(["ip", "netns", "exec", c.nodeNamespace(1), "wg", "set", dev1, "peer", published, "remove"])
        #expect(c.wait(seconds: 5) { peers(c, 1).contains(published) } != nil, "the peer is back: \(peers(c, 1)); \(c.log(1))")
        #expect(c.log(1).contains("the kernel had been changed by hand"), "\(c.log(1))")

        // A restart keeps the key and duplicates no peer.
        c.stopAgent(0)
        try c.startAgent(0, extra: state(c, 0))
        usleep(1_500_000)
        #expect(c.wait(seconds: 10) { c.routes(0).count == 2 && peers(c, 0).count == 2 } != nil, "\(c.log(0))")
        let again = try JSON.parse(c.etcdctl(["get", "/berth/clusters/\(c.name)/nodes/n0", "--print-value-only"]).out)
        #expect(again["publicKey"]?.stringValue == published, "the same key after a restart")
        #expect((1..<3).allSatisfy { peers(c, $0).count == 2 }, "no peer duplicated: \((1..<3).map { peers(c, $0) })")
        #expect(c.inPod(c.pods[1].netns, ["ping", "-c", "1", "-W", "2", c.pods[0].address]).status == 0)

        // Node 2 leaves: a peer no more anywhere, its device gone.
        let key2 = try #require(try JSON.parse(c.etcdctl(["get", "/berth/clusters/\(c.name)/nodes/n2", "--print-value-only"]).out)["publicKey"]?.stringValue)
        let leave = shellMerged(["ip", "netns", "exec", c.nodeNamespace(2), "\(productsDirectory)/berth-agent", "leave",
                                 "--etcd", c.etcdURL, "--cluster", c.name, "--node", "n2"])
        #expect(leave.status == 0, "\(leave.out)")
        #expect(c.wait(seconds: 10) { (0..<2).allSatisfy { !peers(c, $0).contains(key2) && c.routes($0).count == 1 } } != nil,
                "peers \((0..<2).map { peers(c, $0) })")
        // The device's name as the agent makes it: "bwg" and a hash of cluster and node.
        let dev2 = "bwg" + String(hexString(SHA256.digest(Array("\(c.name)/n2".utf8))).prefix(10))
        #expect(c.wait(seconds: 5) { device(c, 2) == nil && !FileManager.default.fileExists(atPath: "/var/run/wireguard/\(dev2).sock") } != nil,
                "node 2's device and wireguard-go went")
    }
}
