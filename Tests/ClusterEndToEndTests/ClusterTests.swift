import Foundation
import Testing
import BerthJSON
import BerthTestSupport

/// An ADD in a test's cluster gave no address (the issue is recorded with the plugin's answer).
struct PodNotAdded: Error { let node: Int }

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
    /// Pods get names on their network (the plugin's "names"): set before adding pods.
    var names = false
    /// A dual-stack pod's IPv6 address, by its namespace (`pods` holds its IPv4 one).
    private(set) var podIPv6: [String: String] = [:]
    /// The identity each pod was added with, by its namespace.
    private var identities: [String: (namespace: String, labels: [String: String])] = [:]
    private var agents: [Int: Process] = [:]
    private var etcd: Process?
    private let lock = NSLock()
    /// etcd's own flags beyond the listening ones (TLS, auth token TTL); a test may change them before a restart.
    var etcdArguments: [String] = []
    /// What etcdctl needs to talk to that etcd (its TLS material, a root user).
    var etcdctlArguments: [String] = []
    /// What every berth-agent command gives for etcd (TLS files, a user).
    var clientArguments: [String] = []

    /// How the test's etcd is secured: made once the cluster's work
    /// directory and etcd's address exist, before etcd starts.
    struct Security {
        var scheme = "http"
        var etcdArguments: [String] = []
        var etcdctlArguments: [String] = []
        var clientArguments: [String] = []
        /// Runs once etcd answers, before the cluster is declared (users, roles, `auth enable`).
        var setUp: ((SimulatedCluster) throws -> Void)?
    }

    /// The underlay's IPv6 /64 ("fdXX:XXXX:XXXX::") when the nodes reach each other over IPv6 (`ipv6Underlay`)
    /// or have an IPv6 underlay address beside their IPv4 one (`ipv6Addresses`).
    let base6: String?
    let ipv6Underlay: Bool
    /// Each agent is given its node's IPv6 underlay address beside the IPv4 one (`--ipv6-address`).
    let ipv6Addresses: Bool
    /// A dual-stack cluster's IPv6 range: pods get an address of each family.
    let ipv6Network: String?

    init(mode: String, nodes count: Int, ttl: Int = 30, network: String = "10.249.0.0/16", blockLength: Int? = 24,
         ipv6Underlay: Bool = false, ipv6Addresses: Bool = false, ipv6Network: String? = nil,
         security: ((_ work: String, _ etcdAddress: String) throws -> Security)? = nil) throws {
        base6 = ipv6Underlay || ipv6Addresses
            ? String(format: "fd%02x:%x:%x::", Int.random(in: 0...255), Int.random(in: 0...0xFFFF), Int.random(in: 0...0xFFFF)) : nil
        self.ipv6Underlay = ipv6Underlay
        self.ipv6Addresses = ipv6Addresses
        self.ipv6Network = ipv6Network
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
        self.ttl = ttl
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let secured = try security?(work, "\(b).1") ?? Security()
        etcdURL = "\(secured.scheme)://\(b).1:\(etcdPort)"
        etcdArguments = secured.etcdArguments
        etcdctlArguments = secured.etcdctlArguments
        clientArguments = secured.clientArguments
        shell(["ip", "link", "add", underlay, "type", "bridge"])
        shell(["ip", "addr", "add", "\(b).1/24", "dev", underlay])
        if let base6 { shell(["ip", "addr", "add", "\(base6)1/64", "dev", underlay, "nodad"]) }
        shell(["ip", "link", "set", underlay, "up"])
        for i in 0..<count { addNode(i) }
        // A cluster that fails to come up is taken down here: no caller has it to clean up.
        do {
            try startEtcd()
            try secured.setUp?(self)
        } catch {
            cleanUp()
            throw error
        }
        // stderr too: a refusal is said there.
        let initRun = shellMerged(["\(productsDirectory)/berth-agent", "init", "--etcd", etcdURL] + clientArguments + ["--cluster", name, "--network", network, "--mode", mode]
                                   + (blockLength.map { ["--block-length", String($0)] } ?? [])
                                   + (ipv6Network.map { ["--ipv6-network", $0] } ?? []))

        if initRun.status != 0 { cleanUp() }
        try #require(initRun.status == 0, "init: \(initRun.out)")
    }

    let ttl: Int

    func nodeNamespace(_ i: Int) -> String { "bcn-\(tag)-\(i)" }
    /// Node `i`'s underlay address: IPv4 (etcd is reached over it either way), or IPv6 with `ipv6Underlay`.
    func nodeAddress(_ i: Int) -> String { ipv6Underlay ? nodeAddress6(i) : "\(base).\(10 + i)" }
    /// Node `i`'s IPv6 underlay address (with `ipv6Underlay` or `ipv6Addresses`).
    func nodeAddress6(_ i: Int) -> String { "\(base6 ?? "::")\(10 + i)" }
    func subnetFile(_ i: Int) -> String { "\(work)/node\(i).json" }
    /// Node `i`'s endpoints and policies in force (its plugin's runDir, its agent's --run-dir).
    func runDir(_ i: Int) -> String { "\(work)/run\(i)" }

    /// A node: a namespace with eth0 on the underlay bridge.
    @discardableResult
    func addNode(_ i: Int) -> String {
        let ns = nodeNamespace(i)
        shell(["ip", "netns", "add", ns])
        let host = "bu\(tag.prefix(4))n\(i)"
        shell(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns])
        shell(["ip", "link", "set", host, "master", underlay, "up"])
        shell(["ip", "netns", "exec", ns, "ip", "addr", "add", "\(base).\(10 + i)/24", "dev", "eth0"])
        if let base6 { shell(["ip", "netns", "exec", ns, "ip", "addr", "add", "\(base6)\(10 + i)/64", "dev", "eth0", "nodad"]) }
        shell(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"])
        shell(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        lock.withLock { nodes.append(ns) }
        return ns
    }

    /// Starts etcd and waits until etcdctl finds it healthy (or, when
    /// `healthCheck` is false, as for an etcd with a certificate no client
    /// trusts, until its port accepts connections).
    func startEtcd(healthCheck: Bool = true) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        p.arguments = ["--name", name, "--data-dir", "\(work)/etcd",
                       "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
                       "--listen-peer-urls", "http://127.0.0.1:\(etcdPort + 1)",
                       "--initial-advertise-peer-urls", "http://127.0.0.1:\(etcdPort + 1)",
                       "--initial-cluster", "\(name)=http://127.0.0.1:\(etcdPort + 1)"] + etcdArguments
        p.standardOutput = FileHandle.nullDevice
        FileManager.default.createFile(atPath: "\(work)/etcd.log", contents: nil)
        p.standardError = FileHandle(forWritingAtPath: "\(work)/etcd.log")
        try p.run()
        etcd = p
        let (host, port) = (String(etcdURL.split(separator: "/")[1].split(separator: ":")[0]), etcdPort)
        for _ in 0..<100 {
            if !healthCheck {
                if shell(["bash", "-c", "exec 3<>/dev/tcp/\(host)/\(port)"]).status == 0 { return }
                usleep(100_000)
                continue
            }
            if shell(["etcdctl", "--endpoints", etcdURL, "--dial-timeout", "1s", "--command-timeout", "1s"] + etcdctlArguments + ["endpoint", "health"],
                     environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]).status == 0 { return }
            usleep(100_000)
        }
        Issue.record("etcd did not start on \(etcdURL)")
    }

    var etcdPID: pid_t? { etcd?.processIdentifier }

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

    /// The pid of node `i`'s agent (`ip netns exec` execs it, so it is the child's).
    func agentPID(_ i: Int) -> pid_t? { lock.withLock { agents[i]?.processIdentifier } }

    /// Starts node `i`'s agent inside its namespace; its log goes to `agentLog(i)`.
    func startAgent(_ i: Int, extra: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", nodeNamespace(i), "\(productsDirectory)/berth-agent", "run", "--etcd", etcdURL,
                       "--cluster", name, "--node", "n\(i)", "--address", nodeAddress(i),
                       "--subnet-file", subnetFile(i), "--ttl", String(ttl), "--run-dir", runDir(i)] + clientArguments
            + (ipv6Addresses && !ipv6Underlay ? ["--ipv6-address", nodeAddress6(i)] : []) + extra
        FileManager.default.createFile(atPath: agentLog(i), contents: nil)
        p.standardError = FileHandle(forWritingAtPath: agentLog(i))
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        lock.withLock { agents[i] = p }
    }

    func agentLog(_ i: Int) -> String { "\(work)/agent\(i).log" }

    /// Whether node `i`'s agent still runs, and how it ended otherwise (for failure messages).
    func agentState(_ i: Int) -> String {
        guard let p = lock.withLock({ agents[i] }) else { return "no agent" }
        return p.isRunning ? "running (pid \(p.processIdentifier))" : "ended with \(p.terminationStatus)"
    }

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

    /// The IPv6 block node `i` holds in a dual-stack cluster, from its subnet file.
    func ipv6Block(_ i: Int) -> String? {
        guard let data = FileManager.default.contents(atPath: subnetFile(i)), let json = try? JSON.parse(Array(data)) else { return nil }
        return json["ipv6Block"]?.stringValue
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
        (shell(["ip", "netns", "exec", nodeNamespace(i), "ip", "-4", "route", "show", "proto", "77"]).out + "\n"
            + shell(["ip", "netns", "exec", nodeNamespace(i), "ip", "-6", "route", "show", "proto", "77"]).out)
            .split(separator: "\n").map { $0.split(separator: " ").prefix(3).joined(separator: " ") }.sorted()
    }

    /// The conflist-equivalent config of the pod network on node `i`, as
    /// conf/berth-cluster.conflist has it: no MTU (the node file gives it).
    func podConfig(_ i: Int, identity: (namespace: String, labels: [String: String])? = nil) -> String {
        var args = ""
        if let identity {
            let labels = identity.labels.map { #""\#($0.key)":"\#($0.value)""# }.joined(separator: ",")
            args = #","args":{"cni":{"namespace":"\#(identity.namespace)","labels":{\#(labels)}}}"#
        }
        // A dual-stack node's IPv6 block is a second range set from the same node file.
        let ranges6 = ipv6Network == nil ? "" : #",[{"subnetFile":"\#(subnetFile(i))","subnetFamily":"ipv6"}]"#
        let namesOption = names ? #","names":true"# : ""
        return #"{"cniVersion":"1.1.0","name":"\#(name)","type":"berth","bridge":"cbr0","isGateway":true,"isDefaultGateway":true\#(namesOption),"runDir":"\#(runDir(i))"\#(args),"ipam":{"type":"berth-ipam","dataDir":"\#(work)/ipam\#(i)","ranges":[[{"subnetFile":"\#(subnetFile(i))"}]\#(ranges6)]}}"#
    }

    /// Runs `berth` inside node `i`'s namespace, as the node's runtime would.
    func berth(_ command: String, node i: Int, netns: String = "", id: String = "",
               identity: (namespace: String, labels: [String: String])? = nil, podName: String? = nil) -> PluginRun {
        var env = ["CNI_COMMAND": command, "CNI_CONTAINERID": id, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": productsDirectory, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        if let podName { env["CNI_ARGS"] = "K8S_POD_NAME=\(podName)" }
        let r = shell(["ip", "netns", "exec", nodeNamespace(i), "\(productsDirectory)/berth"], input: podConfig(i, identity: identity), environment: env)
        return PluginRun(status: r.status, stdout: r.out)
    }

    /// A pod on node `i`: a namespace, ADD must succeed.
    @discardableResult
    func addPod(node i: Int, identity: (namespace: String, labels: [String: String])? = nil, name: String? = nil) throws -> String {
        let index = lock.withLock { pods.count }
        let ns = "bcp-\(tag)-\(index)"
        shell(["ip", "netns", "add", ns])
        let id = "pod\(index)-\(tag)"
        let add = berth("ADD", node: i, netns: "/run/netns/\(ns)", id: id, identity: identity, podName: name)
        guard let address = firstAddress(add.json) ?? firstAddress(add.json, family: .v6) else {
            // Not a pod of the cluster's: nothing of it may stay behind.
            _ = berth("DEL", node: i, netns: "/run/netns/\(ns)", id: id, identity: identity)
            shell(["ip", "netns", "del", ns])
            Issue.record("ADD of a pod on node \(i): \(add.stdout)")
            throw PodNotAdded(node: i)
        }
        lock.withLock {
            pods.append((i, ns, id, address))
            identities[ns] = identity
            if ipv6Network != nil, let address6 = firstAddress(add.json, family: .v6) { podIPv6[ns] = address6 }
        }
        return address
    }

    func inPod(_ ns: String, _ command: [String]) -> (status: Int32, out: String) {
        shell(["ip", "netns", "exec", ns] + command)
    }

    func cleanUp() {
        for i in lock.withLock({ Array(agents.keys) }) { stopAgent(i) }
        stopEtcd()
        for pod in pods {
            _ = berth("DEL", node: pod.node, netns: "/run/netns/\(pod.netns)", id: pod.id, identity: identities[pod.netns] ?? nil)
            shell(["ip", "netns", "del", pod.netns])
        }
        for ns in nodes {
            // What a node's agent left running there (wireguard-go outlives
            // its agent, as a kernel device would): asked to end (it removes
            // its control socket), then killed; its socket removed either way.
            let devices = shell(["ip", "-n", ns, "-br", "link"]).out.split(separator: "\n")
                .compactMap { $0.split(separator: " ").first.map { String($0.split(separator: "@")[0]) } }.filter { $0.hasPrefix("bwg") }
            let pids = shell(["ip", "netns", "pids", ns]).out.split(separator: "\n").compactMap { pid_t($0) }
            for pid in pids { kill(pid, SIGTERM) }
            for _ in 0..<20 where pids.contains(where: { kill($0, 0) == 0 }) { usleep(50_000) }
            for pid in pids { kill(pid, SIGKILL) }
            for device in devices { try? FileManager.default.removeItem(atPath: "/var/run/wireguard/\(device).sock") }
            shell(["ip", "netns", "del", ns])
        }
        shell(["ip", "link", "del", underlay])
        try? FileManager.default.removeItem(atPath: work)
    }
}

@Suite("clusters over etcd", .ownThreads, .serialized, .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd"),
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

        // berthctl cluster hands over to berth-agent: nodes as JSON and as a table, the declaration.
        let berthctl = "\(productsDirectory)/berthctl"
        let nodes = shell([berthctl, "cluster", "nodes", "--etcd", cluster.etcdURL, "--cluster", cluster.name, "--json"])
        let list = try JSON.parse(nodes.out).arrayValue ?? []
        #expect(list.count == 3 && list.allSatisfy { $0["mode"]?.stringValue == mode && $0["leaseAge"]?.intValue != nil }, "\(nodes.out)")
        let table = shell([berthctl, "cluster", "nodes", "--etcd", cluster.etcdURL, "--cluster", cluster.name]).out
        #expect(table.hasPrefix("NODE") && (0..<3).allSatisfy { table.contains(cluster.nodeAddress($0)) }, "\(table)")
        let show = shell([berthctl, "cluster", "show", "--etcd", cluster.etcdURL, "--cluster", cluster.name]).out
        #expect((try? JSON.parse(show))?["mode"]?.stringValue == mode, "\(show)")
    }
}

extension SimulatedCluster {
    func log(_ i: Int) -> String { (try? String(contentsOfFile: agentLog(i), encoding: .utf8)) ?? "" }

    func etcdctl(_ args: [String]) -> (status: Int32, out: String) {
        shell(["etcdctl", "--endpoints", etcdURL] + etcdctlArguments + args, environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
    }

    /// Starts agents 0..<count and waits until every node has a route to every other.
    func converge(_ count: Int, seconds: Double = 20) throws {
        for i in 0..<count { try startAgent(i) }
        let done = wait(seconds: seconds) { (0..<count).allSatisfy { routes($0).count == count - 1 } }
        try #require(done != nil, "routes: \((0..<count).map(routes)); logs: \((0..<count).map(log))")
    }
}

extension ClusterTests {
    @Test("etcd unreachable at start: the agent retries with backoff and says so, STATUS is 50 until a block is held, then ADD works")
    func etcdUnreachableAtStart() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 1)
        defer { cluster.cleanUp() }
        cluster.stopEtcd()
        try cluster.startAgent(0)
        usleep(1_500_000)
        let status = cluster.berth("STATUS", node: 0)
        #expect(status.status != 0 && status.errorCode == 50 && status.message.contains("no address block"), "\(status.stdout)")
        #expect(cluster.log(0).contains("trying again in"), "\(cluster.log(0))")
        #expect(cluster.block(0) == nil)
        try cluster.startEtcd()
        try #require(cluster.wait(seconds: 15) { cluster.block(0) != nil } != nil, "\(cluster.log(0))")
        #expect(cluster.berth("STATUS", node: 0).status == 0)
        try cluster.addPod(node: 0)
    }

    @Test("etcd down later: pods keep working, ADD keeps working, routes stay; the agents reconnect, resynchronise and see a new node")
    func etcdDownLater() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 3)
        defer { cluster.cleanUp() }
        try cluster.converge(2)
        let a = try cluster.addPod(node: 0), b = try cluster.addPod(node: 1)
        let before = (0..<2).map(cluster.routes)
        cluster.stopEtcd()
        usleep(1_000_000)
        #expect(cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", b]).status == 0, "pods lost their network with etcd down")
        let c = try cluster.addPod(node: 1)
        #expect(cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", c]).status == 0)
        #expect((0..<2).map(cluster.routes) == before, "routes changed while etcd was down")
        try cluster.startEtcd()
        try cluster.startAgent(2)
        let joined = cluster.wait(seconds: 20) { (0..<3).allSatisfy { cluster.routes($0).count == 2 } }
        #expect(joined != nil, "after etcd came back the agents did not see node 2: \((0..<3).map(cluster.routes)); \(cluster.log(0))")
        let d = try cluster.addPod(node: 2)
        #expect(cluster.inPod(cluster.pods[0].netns, ["ping", "-c", "1", "-W", "2", d]).status == 0)
        _ = a
    }

    @Test("nine agents starting at once on a range of eight blocks: eight distinct blocks, the ninth says the range is exhausted and STATUS is 50")
    func concurrentClaimsAndExhaustion() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 9, network: "10.248.0.0/21", blockLength: 24)
        defer { cluster.cleanUp() }
        for i in 0..<9 { try cluster.startAgent(i) }
        let eight = cluster.wait(seconds: 20) { (0..<9).compactMap(cluster.block).count == 8 }
        try #require(eight != nil, "blocks: \((0..<9).map(cluster.block))")
        usleep(500_000)
        let blocks = (0..<9).compactMap(cluster.block)
        #expect(blocks.count == 8 && Set(blocks).count == 8, "blocks \(blocks)")
        let loser = try #require((0..<9).first { cluster.block($0) == nil })
        #expect(cluster.log(loser).contains("10.248.0.0/21 has no free /24 block"), "\(cluster.log(loser))")
        #expect(cluster.berth("STATUS", node: loser).errorCode == 50)
    }

    @Test("a node gone for longer than the lease: its block is freed and its routes disappear from every other node")
    func nodeGone() throws {
        let cluster = try SimulatedCluster(mode: "vxlan", nodes: 3, ttl: 3)
        defer { cluster.cleanUp() }
        try cluster.converge(3)
        cluster.stopAgent(2, kill: true)
        let gone = cluster.wait(seconds: 12) { (0..<2).allSatisfy { cluster.routes($0).count == 1 } }
        #expect(gone != nil, "routes to the dead node stayed: \((0..<2).map(cluster.routes))")
        #expect(cluster.log(0).contains("node n2 left"), "\(cluster.log(0))")
        let nodes = cluster.agentCommand(["nodes", "--etcd", cluster.etcdURL, "--cluster", cluster.name])
        #expect(!nodes.out.contains("n2") && nodes.out.contains("n1"), "\(nodes.out)")
        #expect(cluster.etcdctl(["get", "--prefix", "/berth/clusters/\(cluster.name)/blocks/"]).out
            .split(separator: "\n").filter { $0 == "n2" }.isEmpty, "node 2 still holds its block")
    }

    @Test("an agent killed and restarted gets the same block back, and no route flaps on any node")
    func restartKeepsBlock() throws {
        let cluster = try SimulatedCluster(mode: "vxlan", nodes: 3, ttl: 10)
        defer { cluster.cleanUp() }
        try cluster.converge(3)
        let block = cluster.block(1)
        let logLengths = (0..<3).map { cluster.log($0).count }
        let routes = (0..<3).map(cluster.routes)
        cluster.stopAgent(1, kill: true)
        try cluster.startAgent(1)
        try #require(cluster.wait(seconds: 10) { cluster.log(1).contains("holds") } != nil, "\(cluster.log(1))")
        usleep(1_000_000)
        #expect(cluster.block(1) == block)
        #expect((0..<3).map(cluster.routes) == routes)
        for i in [0, 2] {
            let since = String(cluster.log(i).dropFirst(logLengths[i]))
            #expect(!since.contains("removed") && !since.contains("added"),
                    "node \(i) changed routes: \(since); fdb: \(shell(["ip", "netns", "exec", cluster.nodeNamespace(i), "bridge", "fdb", "show", "dev", "berthvx1"]).out)")
        }
        #expect(!cluster.log(1).contains("removed"), "\(cluster.log(1))")
    }

    @Test("a corrupt record in etcd is logged with its key and ignored")
    func corruptRecord() throws {
        let cluster = try SimulatedCluster(mode: "host-gw", nodes: 2)
        defer { cluster.cleanUp() }
        try cluster.converge(2)
        let key = "/berth/clusters/\(cluster.name)/nodes/bogus"
        #expect(cluster.etcdctl(["put", key, "{not json"]).status == 0)
        let logged = cluster.wait(seconds: 5) { cluster.log(0).contains("ignoring a corrupt record at \(key)") }
        #expect(logged != nil, "\(cluster.log(0))")
        #expect((0..<2).allSatisfy { cluster.routes($0).count == 1 })
    }
}
