import Foundation
import Testing
import BerthJSON
import BerthTestSupport

extension SimulatedCluster {
    func berthctl(_ args: [String]) -> (status: Int32, out: String) {
        shellMerged(["\(productsDirectory)/berthctl", "cluster"] + args + ["--etcd", etcdURL, "--cluster", name])
    }

    /// CPU time (user + system) of `pid` in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    func inNode(_ i: Int, _ command: [String]) -> String {
        shell(["ip", "netns", "exec", nodeNamespace(i)] + command).out
    }
}

extension ClusterTests {
    @Test("vxlan: pods get the node file's MTU (the underlay's less 50) with no mtu in the conflist, and a full-size DF ping crosses nodes")
    func vxlanMTUReachesPods() throws {
        let cluster = try SimulatedCluster(mode: "vxlan", nodes: 2)
        defer { cluster.cleanUp() }
        try cluster.converge(2)
        _ = try cluster.addPod(node: 0)
        let far = try cluster.addPod(node: 1)
        for pod in cluster.pods {
            let mtu = cluster.inPod(pod.netns, ["cat", "/sys/class/net/eth0/mtu"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(mtu == "1450", "pod on node \(pod.node) has MTU \(mtu)")
        }
        // 1450 bytes: 1422 of payload + 8 ICMP + 20 IP, with don't-fragment.
        let full = cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", far])
        #expect(full.status == 0, "a full-size DF ping between nodes failed: \(full.out)")
        let over = cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1423", far])
        #expect(over.status != 0, "a ping over the pod MTU went out")
    }

    @Test("hostile records (another node's block, loopback, multicast, unspecified, unroutable, 1 MB of garbage) change nothing, and a node joining later is still learned",
          arguments: ["host-gw", "vxlan"])
    func hostileRecords(mode: String) throws {
        let cluster = try SimulatedCluster(mode: mode, nodes: 3)
        defer { cluster.cleanUp() }
        try cluster.converge(2)
        let near = try cluster.addPod(node: 0)
        let far = try cluster.addPod(node: 1)
        let ownBlock = try #require(cluster.block(1))
        let nodes = "/berth/clusters/\(cluster.name)/nodes/", blocks = "/berth/clusters/\(cluster.name)/blocks/"
        let mac = #","vtepMAC":"0a:66:66:66:66:01""#
        // (a) node 1's block with another address; no block key names "evil".
        #expect(cluster.etcdctl(["put", nodes + "evil", #"{"node":"evil","address":"\#(cluster.base).99","block":"\#(ownBlock)"\#(mac)}"#]).status == 0)
        // (b) blocks claimed properly, but with addresses no node can have.
        for (i, (node, address)) in [("lo", "127.0.0.1"), ("mc", "224.0.0.251"), ("zero", "0.0.0.0")].enumerated() {
            #expect(cluster.etcdctl(["put", blocks + "10.249.\(200 + i).0-24", node]).status == 0)
            let m = #","vtepMAC":"0a:66:66:66:66:1\#(i)""#
            #expect(cluster.etcdctl(["put", nodes + node, #"{"node":"\#(node)","address":"\#(address)","block":"10.249.\#(200 + i).0/24"\#(m)}"#]).status == 0)
        }
        // (c) in host-gw, a proper record the kernel refuses (no route to its address): retried, holding back no one.
        if mode == "host-gw" {
            #expect(cluster.etcdctl(["put", blocks + "10.249.210.0-24", "unreach"]).status == 0)
            #expect(cluster.etcdctl(["put", nodes + "unreach", #"{"node":"unreach","address":"192.0.2.1","block":"10.249.210.0/24"}"#]).status == 0)
        }
        let garbage = String(repeating: "\u{1b}[2J\u{07}\r\n", count: 30_000)
        #expect(shell(["etcdctl", "--endpoints", cluster.etcdURL, "put", nodes + "garbage"], input: garbage,
                      environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]).status == 0)
        try #require(cluster.wait(seconds: 5) { cluster.log(0).contains("nodes/zero") && cluster.log(1).contains("nodes/garbage") } != nil,
                     "\(cluster.log(0))")
        // A node joining now is learned by both old nodes.
        try cluster.startAgent(2)
        let joined = cluster.wait(seconds: 20) { (0..<3).allSatisfy { cluster.routes($0).count == 2 } }
        #expect(joined != nil, "routes: \((0..<3).map(cluster.routes)); \(cluster.log(0))")
        usleep(500_000)
        for i in 0..<3 {
            let routes = cluster.routes(i).joined(separator: "\n")
            for bad in ["127.0.0.1", "224.0.0.251", "0.0.0.0", "\(cluster.base).99", "192.0.2.1", "10.249.20"] {
                #expect(!routes.contains(bad), "node \(i): \(routes)")
            }
            if mode == "vxlan" {
                let fdb = cluster.inNode(i, ["bridge", "fdb", "show", "dev", "berthvx1"])
                let neighbours = cluster.inNode(i, ["ip", "neigh", "show", "dev", "berthvx1"])
                for bad in ["127.0.0.1", "224.0.0.251", "0.0.0.0 ", "\(cluster.base).99", "0a:66:66"] {
                    #expect(!fdb.contains(bad) && !neighbours.contains(bad), "node \(i): fdb \(fdb) neighbours \(neighbours)")
                }
            }
        }
        // The owner's own connected route is untouched.
        let connected = cluster.inNode(1, ["ip", "-4", "route", "show", ownBlock])
        #expect(connected.contains("dev cbr0") && !connected.contains("proto 77"), "\(connected)")
        #expect(cluster.log(0).contains("ignoring the node record at \(nodes)evil: block \(ownBlock) is held by node n1"), "\(cluster.log(0))")
        #expect(cluster.log(1).contains("ignoring the node record at \(nodes)evil: it claims \(ownBlock), this node's own block"), "\(cluster.log(1))")
        #expect(cluster.log(0).contains("\(nodes)lo: 127.0.0.1 is a loopback address"))
        #expect(cluster.log(0).contains("\(nodes)mc: 224.0.0.251 is a multicast address"))
        if mode == "host-gw" {
            #expect(cluster.log(0).contains("node unreach (\(nodes)unreach):") && cluster.log(0).contains("trying again in"), "\(cluster.log(0))")
        }
        for line in cluster.log(0).split(separator: "\n") where line.contains("garbage") {
            #expect(line.count < 400 && !line.contains("\u{1b}") && !line.contains("\u{07}"), "a garbage line of \(line.count) characters: \(line.prefix(300).debugDescription)")
        }
        #expect(cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", far]).status == 0)
        // After the hostile key goes, the owner's pods are still reachable.
        #expect(cluster.etcdctl(["del", nodes + "evil"]).status == 0)
        usleep(500_000)
        #expect(cluster.inNode(1, ["ip", "-4", "route", "show", ownBlock]).contains("dev cbr0"))
        #expect(cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", far]).status == 0)
        #expect(cluster.inPod(cluster.pods[1].netns, ["ping", "-c", "1", "-W", "2", near]).status == 0)
    }

    @Test("an agent that finds no free block waits without spinning, and takes a block as soon as a node leaves; leave removes the node at once")
    func noFreeBlockThenLeave() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 3, network: "10.249.0.0/23", blockLength: 24)
        defer { cluster.cleanUp() }
        try cluster.converge(2)
        try cluster.startAgent(2)
        try #require(cluster.wait(seconds: 5) { cluster.log(2).contains("no free /24 block") } != nil, "\(cluster.log(2))")
        let pid = try #require(cluster.agentPID(2))
        let before = SimulatedCluster.cpuTicks(pid)
        usleep(4_000_000)
        let used = SimulatedCluster.cpuTicks(pid) - before
        #expect(used < 40, "the waiting agent used \(used) ticks of CPU in 4 s")
        let tries = cluster.log(2).components(separatedBy: "no free /24 block").count - 1
        #expect(tries >= 2 && tries < 20, "\(tries) tries logged: \(cluster.log(2))")
        let leases = cluster.etcdctl(["lease", "list"]).out.split(separator: "\n").count
        #expect(leases < 8, "\(leases) lines of leases")
        let freed = try #require(cluster.block(0))

        // leave: on node 0, the running agent is told, revokes its lease and cleans up.
        let leave = shellMerged(["ip", "netns", "exec", cluster.nodeNamespace(0), "\(productsDirectory)/berthctl", "cluster", "leave",
                                 "--etcd", cluster.etcdURL, "--cluster", cluster.name, "--node", "n0"])
        #expect(leave.status == 0 && leave.out.contains("node n0 left"), "\(leave.out)")
        let took = cluster.wait(seconds: 10) { cluster.block(2) == freed }
        #expect(took != nil, "node 2 did not take the freed block \(freed): \(cluster.log(2))")
        #expect(cluster.log(2).contains("was freed: claiming it"), "the wait did not end on the freed block: \(cluster.log(2))")
        #expect(cluster.wait(seconds: 4) { cluster.routes(1).count == 1 && cluster.routes(1)[0].hasPrefix(freed) } != nil,
                "node 1: \(cluster.routes(1))")
        #expect(cluster.routes(0).isEmpty, "node 0 kept routes: \(cluster.routes(0))")
        #expect(!FileManager.default.fileExists(atPath: cluster.subnetFile(0)), "node 0's node file stayed")
        #expect(cluster.log(0).contains("node n0 left cluster"), "\(cluster.log(0))")
    }

    @Test("release frees a dead node's block (refused while its record is there, unless --force); nodes shows blocks held without a record")
    func releaseAndOrphans() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 3)
        defer { cluster.cleanUp() }
        try cluster.converge(3)
        cluster.stopAgent(2, kill: true)
        let refused = cluster.berthctl(["release", "n2"])
        #expect(refused.status != 0 && refused.out.contains("still has a record"), "\(refused.out)")
        let released = cluster.berthctl(["release", "n2", "--force"])
        #expect(released.status == 0 && released.out.contains("released"), "\(released.out)")
        #expect(cluster.wait(seconds: 4) { (0..<2).allSatisfy { cluster.routes($0).count == 1 } } != nil,
                "\((0..<2).map(cluster.routes))")
        // A block key nobody's record backs.
        #expect(cluster.etcdctl(["put", "/berth/clusters/\(cluster.name)/blocks/10.249.250.0-24", "ghost"]).status == 0)
        let table = cluster.berthctl(["nodes"]).out
        let ghost = table.split(separator: "\n").first { $0.contains("ghost") }.map(String.init) ?? ""
        #expect(ghost.contains("10.249.250.0/24") && ghost.contains("no record"), "\(table)")
        let json = try JSON.parse(cluster.berthctl(["nodes", "--json"]).out).arrayValue ?? []
        #expect(json.contains { $0["node"]?.stringValue == "ghost" && $0["record"]?.boolValue == false }, "\(json)")
        #expect(cluster.berthctl(["release", "ghost"]).out.contains("released 10.249.250.0/24"))
        #expect(!cluster.etcdctl(["get", "--prefix", "/berth/clusters/\(cluster.name)/blocks/"]).out.contains("ghost"))
    }

    @Test("a hung etcd (SIGSTOP) is noticed and logged within seconds; once it runs again the agents go on and learn a new node")
    func hungEtcd() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 3)
        defer {
            if let pid = cluster.etcdPID { kill(pid, SIGCONT) }
            cluster.cleanUp()
        }
        try cluster.converge(2)
        usleep(4_500_000)  // two probes while etcd answers: none may complain
        #expect(!cluster.log(0).contains("did not answer"), "the probe failed against a running etcd: \(cluster.log(0))")
        let pid = try #require(cluster.etcdPID)
        kill(pid, SIGSTOP)
        let noticed = cluster.wait(seconds: 8) { cluster.log(0).contains("did not answer within") }
        kill(pid, SIGCONT)
        #expect(noticed != nil, "\(cluster.log(0))")
        #expect((0..<2).allSatisfy { cluster.routes($0).count == 1 }, "routes changed while etcd hung")
        try cluster.startAgent(2)
        #expect(cluster.wait(seconds: 20) { (0..<3).allSatisfy { cluster.routes($0).count == 2 } } != nil,
                "\((0..<3).map(cluster.routes)); \(cluster.log(0))")
    }

    @Test("a second agent for the same node is refused, naming the first")
    func secondAgentRefused() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 1)
        defer { cluster.cleanUp() }
        try cluster.converge(1)
        // Bounded: an agent that is not refused would run until stopped.
        let second = shellMerged(["timeout", "10", "ip", "netns", "exec", cluster.nodeNamespace(0), "\(productsDirectory)/berth-agent", "run",
                                  "--etcd", cluster.etcdURL, "--cluster", cluster.name, "--node", "n0", "--address", cluster.nodeAddress(0)])
        #expect(second.status != 0 && second.out.contains("another agent runs for node n0") && second.out.contains("berth-agent"),
                "\(second.out); the first agent: \(cluster.agentState(0)); its log: \(cluster.log(0)); locks: \(shell(["ls", "-li", "/run/berth/locks"]).out) \(shell(["cat", "/proc/locks"]).out)")
    }
}

@Suite("berthctl cluster", .ownThreads)
struct ClusterCommandLineTests {
    @Test("berthctl cluster SUBCOMMAND --help shows that subcommand's options under its berthctl name",
          arguments: [("init", ["--vni", "--port", "--force", "--network"]), ("nodes", ["--json", "--etcd"]),
                      ("leave", ["--node"]), ("release", ["--force", "<node>"])])
    func subcommandHelp(subcommand: String, options: [String]) {
        let help = shellMerged(["\(productsDirectory)/berthctl", "cluster", subcommand, "--help"])
        #expect(help.status == 0 && help.out.contains("berthctl cluster \(subcommand)"), "\(help.out)")
        for option in options { #expect(help.out.contains(option), "\(option) missing: \(help.out)") }
    }
}
