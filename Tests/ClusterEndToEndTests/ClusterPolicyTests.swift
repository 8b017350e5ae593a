import Foundation
import Testing
import BerthJSON
import BerthTestSupport

/// The probe script (servers and concurrent probes, run inside pods).
let policyProbe = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("scripts/probes/policy_probe.py").path

@Suite("network policy across a cluster", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd"),
                "needs root and etcd (scripts/setup.sh installs etcd-server)"))
struct ClusterPolicyTests {
    func etcdctl(_ c: SimulatedCluster, _ args: [String]) -> (status: Int32, out: String) {
        shell(["etcdctl", "--endpoints", c.etcdURL] + args, environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
    }

    /// Whether a TCP connection from pod namespace `from` to `address:port` gets through.
    func connects(_ from: String, _ address: String, _ port: Int) -> Bool {
        shell(["ip", "netns", "exec", from, "python3", policyProbe, "probe", "--timeout", "1", "tcp,\(address),\(port)"]).out.contains(" open")
    }

    @Test("a policy stored once in etcd is enforced on every node for pods of every node; a new pod is admitted elsewhere within a second; hostile endpoint records are refused; etcd stopped: rules stay")
    func policyAcrossNodes() throws {
        let c = try SimulatedCluster(mode: "host-gw", nodes: 3)
        var servers: [Process] = []
        let file = NSTemporaryDirectory() + "berthtest-cluster-policy-\(c.tag).yaml"
        defer {
            for s in servers { kill(s.processIdentifier, SIGKILL); s.waitUntilExit() }
            unlink(file)
            c.cleanUp()
        }
        for i in 0..<3 { try c.startAgent(i) }
        let converged = c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } }
        try #require(converged != nil, "the nodes did not learn each other's blocks")
        let ns = "shop\(c.tag.prefix(4))"
        let db = try c.addPod(node: 0, identity: (ns, ["app": "db"]))
        _ = try c.addPod(node: 1, identity: (ns, ["app": "web"]))
        _ = try c.addPod(node: 2, identity: (ns, ["app": "other"]))
        let (dbPod, webPod, otherPod) = (c.pods[0].netns, c.pods[1].netns, c.pods[2].netns)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["ip", "netns", "exec", dbPod, "python3", policyProbe, "serve", "--tcp", "80,5432"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        servers.append(server)
        #expect(cleanWait(10) { shell(["ip", "netns", "exec", dbPod, "ss", "-ltnH", "sport", "= :5432"]).out.contains("5432") })
        #expect(connects(otherPod, db, 5432), "before any policy every pod reaches db")

        try """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: db, namespace: \(ns)}
            spec:
              podSelector: {matchLabels: {app: db}}
              ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
            """.write(toFile: file, atomically: false, encoding: .utf8)
        let start = Date()
        let applied = berthctl(["policy", "apply", "--cluster", c.name, "--etcd", c.etcdURL, "-f", file])
        try #require(applied.status == 0, "\(applied.out) \(applied.err)")
        // In force on every node within a second (each node's table holds the policy's chain).
        let everywhere = c.wait(seconds: 5) {
            (0..<3).allSatisfy { shell(["ip", "netns", "exec", c.nodeNamespace($0), "nft", "list", "chain", "inet", "berth-policy", "ingress"]).out.contains(" jump ") }
        }
        #expect(everywhere != nil && Date().timeIntervalSince(start) < 2, "the policy reached every node in \(Date().timeIntervalSince(start)) s")
        let enforced = c.wait(seconds: 5) { !connects(otherPod, db, 5432) }
        #expect(enforced != nil, "other (node 2) still reaches db (node 0): \((try? String(contentsOfFile: c.agentLog(0), encoding: .utf8)) ?? "")")
        #expect(connects(webPod, db, 5432), "web (node 1) is admitted by the policy on node 0")
        #expect(!connects(webPod, db, 80), "but only to 5432")
        let listing = berthctl(["policy", "ls", "--cluster", c.name, "--etcd", c.etcdURL])
        #expect(listing.status == 0 && listing.out.contains("db") && listing.out.contains(ns), "\(listing.out) \(listing.err)")

        // A new web pod on node 2 is admitted on node 0 within a second.
        let added = Date()
        let web2 = try c.addPod(node: 2, identity: (ns, ["app": "web"]))
        let admitted = c.wait(seconds: 5) { connects(c.pods[3].netns, db, 5432) }
        #expect(admitted != nil, "the new web pod \(web2) on node 2 was not admitted on node 0")
        let admittedIn = Date().timeIntervalSince(added)
        #expect(admittedIn < 3, "admitted after \(admittedIn) s")

        // A hostile record: node n1 claims node 2's `other` pod's address as a web pod. Refused.
        let otherAddress = c.pods[2].address
        let forged = #"{"network":"\#(c.name)","containerID":"forged","ifname":"eth0","namespace":"\#(ns)","name":"forged","labels":{"app":"web"},"addresses":["\#(otherAddress)"],"node":"n1"}"#
        #expect(etcdctl(c, ["put", "/berth/clusters/\(c.name)/endpoints/n1/\(c.name):forged:eth0", forged]).status == 0)
        usleep(1_000_000)
        #expect(!connects(otherPod, db, 5432), "a forged endpoint record let node 2's other pod in")
        let log0 = (try? String(contentsOfFile: c.agentLog(0), encoding: .utf8)) ?? ""
        #expect(log0.contains("endpoints/n1/\(c.name):forged:eth0") && log0.contains("is not in the block of node n1"), "\(log0)")

        // A damaged policy record: reported; the last good policy stays in force.
        #expect(etcdctl(c, ["put", "/berth/clusters/\(c.name)/policies/\(ns)/db", "{\"kind\":"]).status == 0)
        usleep(800_000)
        #expect(!connects(otherPod, db, 5432), "a damaged record opened what the policy closed")
        #expect(connects(webPod, db, 5432))

        // etcd stopped: the rules in force stay in force.
        c.stopEtcd()
        usleep(500_000)
        #expect(!connects(otherPod, db, 5432), "etcd down: nothing opens")
        #expect(connects(webPod, db, 5432), "etcd down: nothing closes")
    }
}
