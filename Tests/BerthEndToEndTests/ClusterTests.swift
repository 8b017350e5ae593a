import Foundation
import Testing
import BerthJSON

/// A simulated cluster on this machine: an underlay bridge on the host
/// (etcd listens on its address), nodes as network namespaces on it, each
/// running `berth-agent` inside, pods as namespaces attached through `berth`
/// run inside their node's namespace (so each node's bridge lives there).
/// Names carry a tag unique to the test; `cleanUp()` removes everything.
final class SimulatedCluster: @unchecked Sendable {
    let tag: String
    let underlay: String
    /// "10.X.0": the underlay's /24 (host .1, node i at .(10 + i)).
    let base: String
    let name: String
    let work: String
    let mode: String
    let etcdURL: String
    let etcdPort: Int
    private(set) var nodes: [String] = []
    private(set) var pods: [(node: Int, netns: String, id: String, address: String)] = []
    private var agents: [Int: Process] = [:]
    private var etcd: Process?
    private let lock = NSLock()

    init(mode: String, nodes count: Int, ttl: Int = 30, network: String = "10.249.0.0/16", blockLength: Int = 24) throws {
        let r = UInt32.random(in: 0...0xFFFFFF)
        tag = String(format: "%06x", r)
        underlay = "bu\(tag)"
        self.mode = mode
        name = "bc\(tag)"
        work = NSTemporaryDirectory() + "berthtest-cluster-\(tag)"
        let routes = shell(["ip", "-4", "route", "show", "table", "all"]).out
        var b: String
        repeat { b = "10.\(Int.random(in: 200...239)).\(Int.random(in: 0...255))" } while routes.contains(b + ".")
        base = b
        etcdPort = Int.random(in: 20000...29999)
        etcdURL = "http://\(b).1:\(etcdPort)"
        self.ttl = ttl
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        shell(["ip", "link", "add", underlay, "type", "bridge"])
        shell(["ip", "addr", "add", "\(b).1/24", "dev", underlay])
        shell(["ip", "link", "set", underlay, "up"])
        for i in 0..<count { addNode(i) }
        try startEtcd()
        let initRun = agentCommand(["init", "--etcd", etcdURL, "--cluster", name, "--network", network,
                                    "--block-length", String(blockLength), "--mode", mode])
        try #require(initRun.status == 0, "init: \(initRun.out)")
    }

    let ttl: Int

    func nodeNamespace(_ i: Int) -> String { "bcn-\(tag)-\(i)" }
    func nodeAddress(_ i: Int) -> String { "\(base).\(10 + i)" }
    func subnetFile(_ i: Int) -> String { "\(work)/node\(i).json" }

    /// A node: a namespace with eth0 on the underlay bridge.
    @discardableResult
    func addNode(_ i: Int) -> String {
        let ns = nodeNamespace(i)
        shell(["ip", "netns", "add", ns])
        let host = "bu\(tag.prefix(4))n\(i)"
        shell(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns])
        shell(["ip", "link", "set", host, "master", underlay, "up"])
        shell(["ip", "netns", "exec", ns, "ip", "addr", "add", "\(nodeAddress(i))/24", "dev", "eth0"])
        shell(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"])
        shell(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        lock.withLock { nodes.append(ns) }
        return ns
    }

    func startEtcd() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        p.arguments = ["--name", name, "--data-dir", "\(work)/etcd",
                       "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
                       "--listen-peer-urls", "http://127.0.0.1:\(etcdPort + 1)",
                       "--initial-advertise-peer-urls", "http://127.0.0.1:\(etcdPort + 1)",
                       "--initial-cluster", "\(name)=http://127.0.0.1:\(etcdPort + 1)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        etcd = p
        for _ in 0..<100 {
            if shell(["etcdctl", "--endpoints", etcdURL, "endpoint", "health"], environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]).status == 0 { return }
            usleep(100_000)
        }
        Issue.record("etcd did not start on \(etcdURL)")
    }

    func stopEtcd() {
        if let etcd, etcd.isRunning {
            etcd.terminate()
            etcd.waitUntilExit()
        }
        etcd = nil
    }

    func agentCommand(_ args: [String]) -> (status: Int32, out: String) {
        shell(["\(productsDirectory)/berth-agent"] + args)
    }

    /// Starts node `i`'s agent inside its namespace; its log goes to `agentLog(i)`.
    func startAgent(_ i: Int) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", nodeNamespace(i), "\(productsDirectory)/berth-agent", "run", "--etcd", etcdURL,
                       "--cluster", name, "--node", "n\(i)", "--address", nodeAddress(i),
                       "--subnet-file", subnetFile(i), "--ttl", String(ttl)]
        FileManager.default.createFile(atPath: agentLog(i), contents: nil)
        p.standardError = FileHandle(forWritingAtPath: agentLog(i))
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        lock.withLock { agents[i] = p }
    }

    func agentLog(_ i: Int) -> String { "\(work)/agent\(i).log" }

    /// Stops node `i`'s agent: gently (SIGTERM), or as a crash (SIGKILL).
    func stopAgent(_ i: Int, kill: Bool = false) {
        guard let p = lock.withLock({ agents.removeValue(forKey: i) }) else { return }
        if kill { Foundation.kill(p.processIdentifier, SIGKILL) } else { p.terminate() }
        p.waitUntilExit()
    }

    /// The block node `i` holds, from its subnet file.
    func block(_ i: Int) -> String? {
        guard let data = FileManager.default.contents(atPath: subnetFile(i)), let json = try? JSON.parse(Array(data)) else { return nil }
        return json["block"]?.stringValue
    }

    /// Waits until `condition` holds (polling every 50 ms); returns the seconds it took, or nil.
    @discardableResult
    func wait(seconds: Double, _ condition: () -> Bool) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if condition() { return Date().timeIntervalSince(start) }
            usleep(50_000)
        }
        return nil
    }

    /// The agent's routes in node `i` ("DST via GW" lines).
    func routes(_ i: Int) -> [String] {
        shell(["ip", "netns", "exec", nodeNamespace(i), "ip", "-4", "route", "show", "proto", "77"]).out
            .split(separator: "\n").map { $0.split(separator: " ").prefix(3).joined(separator: " ") }.sorted()
    }

    /// The conflist-equivalent config of the pod network on node `i`.
    func podConfig(_ i: Int) -> String {
        let mtu = mode == "vxlan" ? #","mtu":1450"# : ""
        return #"{"cniVersion":"1.1.0","name":"\#(name)","type":"berth","bridge":"cbr0","isGateway":true,"isDefaultGateway":true\#(mtu),"ipam":{"type":"berth-ipam","dataDir":"\#(work)/ipam\#(i)","ranges":[[{"subnetFile":"\#(subnetFile(i))"}]]}}"#
    }

    /// Runs `berth` inside node `i`'s namespace, as the node's runtime would.
    func berth(_ command: String, node i: Int, netns: String = "", id: String = "") -> PluginRun {
        let env = ["CNI_COMMAND": command, "CNI_CONTAINERID": id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": productsDirectory, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let r = shell(["ip", "netns", "exec", nodeNamespace(i), "\(productsDirectory)/berth"], input: podConfig(i), environment: env)
        return PluginRun(status: r.status, stdout: r.out)
    }

    /// A pod on node `i`: a namespace, ADD must succeed.
    @discardableResult
    func addPod(node i: Int) throws -> String {
        let index = lock.withLock { pods.count }
        let ns = "bcp-\(tag)-\(index)"
        shell(["ip", "netns", "add", ns])
        let id = "pod\(index)-\(tag)"
        let add = berth("ADD", node: i, netns: "/run/netns/\(ns)", id: id)
        let address = try #require(firstAddress(add.json), "ADD of a pod on node \(i): \(add.stdout)")
        lock.withLock { pods.append((i, ns, id, address)) }
        return address
    }

    func inPod(_ ns: String, _ command: [String]) -> (status: Int32, out: String) {
        shell(["ip", "netns", "exec", ns] + command)
    }

    func cleanUp() {
        for i in lock.withLock({ Array(agents.keys) }) { stopAgent(i) }
        stopEtcd()
        for pod in pods {
            _ = berth("DEL", node: pod.node, netns: "/run/netns/\(pod.netns)", id: pod.id)
            shell(["ip", "netns", "del", pod.netns])
        }
        for ns in nodes { shell(["ip", "netns", "del", ns]) }
        shell(["ip", "link", "del", underlay])
        try? FileManager.default.removeItem(atPath: work)
    }
}

@Suite("clusters over etcd", .serialized, .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd"),
                                                   "needs root and etcd (scripts/setup.sh installs etcd-server)"))
struct ClusterTests {
    @Test("three nodes, two pods each: every pod reaches every other across nodes, and sees the sender's own address",
          arguments: ["host-gw", "vxlan"])
    func threeNodes(mode: String) throws {
        let cluster = try SimulatedCluster(mode: mode, nodes: 3)
        defer { cluster.cleanUp() }
        for i in 0..<3 { try cluster.startAgent(i) }
        let converged = cluster.wait(seconds: 20) { (0..<3).allSatisfy { cluster.routes($0).count == 2 } }
        try #require(converged != nil, "routes: \((0..<3).map(cluster.routes)); logs: \((0..<3).map { (try? String(contentsOfFile: cluster.agentLog($0), encoding: .utf8)) ?? "" })")
        let blocks = (0..<3).compactMap(cluster.block)
        #expect(Set(blocks).count == 3, "blocks \(blocks)")
        for i in 0..<3 { for _ in 0..<2 { try cluster.addPod(node: i) } }

        for a in cluster.pods {
            for b in cluster.pods where a.id != b.id {
                let ping = cluster.inPod(a.netns, ["ping", "-c", "1", "-W", "2", b.address])
                #expect(ping.status == 0, "\(mode): pod \(a.address) on node \(a.node) cannot reach \(b.address) on node \(b.node)")
            }
        }
        // No NAT inside the cluster: the far pod sees the sender's own address.
        let (from, to) = (cluster.pods[0], cluster.pods[5])
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        server.arguments = ["netns", "exec", to.netns, "python3", "-c",
                            "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',9999));s.settimeout(10);d,a=s.recvfrom(100);print(a[0])"]
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        usleep(300_000)
        _ = cluster.inPod(from.netns, ["python3", "-c",
                                       "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(b'hello',('\(to.address)',9999))"])
        server.waitUntilExit()
        let seen = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(seen == from.address, "\(mode): the pod on node \(to.node) saw \(seen), not \(from.address)")

        let nodes = cluster.agentCommand(["nodes", "--etcd", cluster.etcdURL, "--cluster", cluster.name, "--json"])
        let list = try JSON.parse(nodes.out).arrayValue ?? []
        #expect(list.count == 3 && list.allSatisfy { $0["mode"]?.stringValue == mode }, "\(nodes.out)")
    }
}
