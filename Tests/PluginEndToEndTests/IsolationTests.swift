import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthFirewall
import BerthTestSupport

extension FirewallTouchingTests {
// One at a time: the tests compare the node's one set of isolated bridges.
@Suite("network isolation (isolate)", .ownThreads, .serialized)
struct IsolationTests {
    /// Networks of this test: each its own bridge and subnet, pods with a default route through their gateway.
    final class Networks {
        var all: [TestNetwork] = []
        let forwarding = HostForwarding(on: true)
        let firewall = IPTablesSnapshot()
        func make(isolate: String?) -> (net: TestNetwork, config: String) {
            let net = TestNetwork()
            all.append(net)
            let extra = #","isDefaultGateway":true"# + (isolate.map { #","isolate":\#($0)"# } ?? "")
            return (net, net.config(ipam: net.berthIPAM, extra: extra))
        }
        func cleanUp() {
            for net in all { net.cleanUp() }
            for net in all { try? NetworkIsolation.release(bridge: net.bridge) }
            firewall.restore()
            forwarding.restore()
        }
    }

    func isolated() throws -> Set<String> { Set(try NetworkIsolation.members()[NetworkIsolation.isolatedSet] ?? []) }

    @Test("two isolated networks cannot reach each other, either may reach a plain one, a strict one reaches no other; replies and a published port pass")
    func matrix() throws {
        let n = Networks()
        defer { n.cleanUp() }
        let (a, aConfig) = n.make(isolate: "true")
        let (b, bConfig) = n.make(isolate: "true")
        let (c, cConfig) = n.make(isolate: nil)
        let (d, dConfig) = n.make(isolate: #""strict""#)
        let a1 = try a.addContainer(config: aConfig, id: "a1-\(a.id)")
        let a2 = try a.addContainer(config: aConfig, id: "a2-\(a.id)")
        let b1 = try b.addContainer(config: bConfig, id: "b1-\(b.id)")
        let c1 = try c.addContainer(config: cConfig, id: "c1-\(c.id)")
        // d1 through a chain with portmap: a published port on the host.
        let hostPort = 19000 + Int(getpid() % 1000)
        let chain = ConflistRunner(net: d, conflist: [
            "cniVersion": .string("1.0.0"), "name": .string(d.name),
            "plugins": .array([try JSON.parse(dConfig), try JSON.parse(#"{"type":"portmap","capabilities":{"portMappings":true}}"#)]),
        ], runtimeConfig: ["portMappings": .array([.object(["hostPort": .int(hostPort), "containerPort": .int(8080), "protocol": .string("tcp")])])])
        let d1ns = d.makeNamespace()
        let (d1Result, failure) = chain.add(netns: d1ns, containerID: "d1-\(d.id)")
        try #require(failure == nil, "\(failure?.stdout ?? "")")
        let ip = [
            "a1": try #require(firstAddress(a1.add.json)), "a2": try #require(firstAddress(a2.add.json)),
            "b1": try #require(firstAddress(b1.add.json)), "c1": try #require(firstAddress(c1.add.json)),
            "d1": try #require(firstAddress(d1Result)),
        ]
        let ns = ["a1": a1.netns, "a2": a2.netns, "b1": b1.netns, "c1": c1.netns, "d1": d1ns]
        let netOf = ["a1": a, "a2": a, "b1": b, "c1": c, "d1": d]
        #expect(try isolated().isSuperset(of: [a.bridge, b.bridge, d.bridge]) && !(try isolated().contains(c.bridge)))
        #expect(try NetworkIsolation.members()[NetworkIsolation.strictSet] == [d.bridge])

        let expected: [(String, String, Bool)] = [
            ("a1", "a2", true),   // one network
            ("a1", "b1", false), ("b1", "a1", false),  // two isolated networks
            ("a1", "c1", true), ("c1", "a1", true), ("b1", "c1", true),  // isolated and plain
            ("d1", "c1", false), ("c1", "d1", false), ("d1", "a1", false), ("a1", "d1", false),  // strict
        ]
        var wrong: [String] = []
        for (from, to, reaches) in expected where netOf[from]!.ping(from: ns[from]!, to: ip[to]!) != reaches {
            wrong.append("\(from) -> \(to) should \(reaches ? "" : "not ")pass")
        }
        #expect(wrong.isEmpty, "\(wrong) \(shell(["nft", "list", "chain", "inet", "berth", "isolation"]).out)")
        // Each reaches its own gateway (the host: not routed).
        for name in ["a1", "b1", "d1"] {
            #expect(netOf[name]!.ping(from: ns[name]!, to: "\(netOf[name]!.subnetBase).1"), "\(name) -> its gateway")
        }

        // The published port of the strict network's pod is reached from another network's pod.
        // (A plain TCP server: http.server looks its address up in DNS, which a
        // test's namespace has none of, and starts seconds late.)
        let serve = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((sys.argv[1],8080))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n c.sendall(b'ok')\n c.close()"
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["ip", "netns", "exec", URL(fileURLWithPath: d1ns).lastPathComponent, "python3", "-c", serve, ip["d1"]!]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        #expect(cleanWait(10) { d.inNamespace(d1ns, ["ss", "-ltnH", "sport", "= :8080"]).out.contains("8080") }, "the server did not start")
        func connects(from netns: String, to host: String, port: Int) -> Bool {
            c.inNamespace(netns, ["python3", "-c", "import socket,sys\nc=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2)\nsys.exit(0 if c.recv(2)==b'ok' else 1)", host, "\(port)"]).status == 0
        }
        #expect(connects(from: c1.netns, to: "\(c.subnetBase).1", port: hostPort),
                "the published port \(hostPort) did not reach the strict network's pod: \(shell(["nft", "list", "chain", "inet", "berth", "isolation"]).out)")
        #expect(!connects(from: c1.netns, to: ip["d1"]!, port: 8080), "c1 reached the strict network's pod directly")

        // CHECK finds the bridge isolated; once someone took it out of the set, CHECK says so.
        let aCheck = a.config(aConfig, prevResult: a1.add.stdout)
        #expect(a.run("CHECK", netns: a1.netns, containerID: a1.id, config: aCheck).status == 0)
        shell(["nft", "delete", "element", "inet", "berth", NetworkIsolation.isolatedSet, "{ \"\(a.bridge)\" }"])
        let broken = a.run("CHECK", netns: a1.netns, containerID: a1.id, config: aCheck)
        #expect(broken.status != 0 && broken.message.contains("is not isolated"), "\(broken.stdout)")
        #expect(a.ping(from: a1.netns, to: ip["b1"]!), "out of the set, a1 reaches b1 again (so the set is what isolates)")
        let a3 = try a.addContainer(config: aConfig, id: "a3-\(a.id)")  // an ADD puts it back
        #expect(!a.ping(from: a1.netns, to: ip["b1"]!))

        // The last DEL of a network takes its bridge out of the sets; one before it does not.
        #expect(a.run("DEL", netns: a1.netns, containerID: a1.id, config: aConfig).status == 0)
        #expect(try isolated().contains(a.bridge), "a2 is still attached")
        #expect(a.run("DEL", netns: a2.netns, containerID: a2.id, config: aConfig).status == 0)
        #expect(try isolated().contains(a.bridge), "a3 is still attached")
        #expect(a.run("DEL", netns: a3.netns, containerID: a3.id, config: aConfig).status == 0)
        #expect(!(try isolated().contains(a.bridge)))
        // GC with nothing valid, once the namespace (and so the veth) is gone.
        b.deleteNamespace(b1.netns)
        // The kernel takes a deleted namespace's veths down in the background: on a loaded machine, later.
        #expect(cleanWait(10) { b.portsOfBridge().isEmpty }, "the veth of a deleted namespace stayed")
        let gc = #"{"cniVersion":"1.1.0","name":"\#(b.name)","type":"berth","bridge":"\#(b.bridge)","isolate":true,"ipam":\#(b.berthIPAM),"cni.dev/valid-attachments":[]}"#
        #expect(b.run("GC", netns: "", containerID: "", config: gc).status == 0)
        #expect(!(try isolated().contains(b.bridge)))
        _ = chain.command("DEL", netns: d1ns, containerID: "d1-\(d.id)", cached: d1Result)
        #expect(!(try isolated().contains(d.bridge)))
        #expect(try NetworkIsolation.members()[NetworkIsolation.strictSet]?.contains(d.bridge) != true)
    }

    @Test("IPv6 alike: dual-stack isolated networks cannot reach each other over IPv6, a plain one can")
    func ipv6() throws {
        let n = Networks()  // IPv6 forwarding on as well
        defer { n.cleanUp() }
        func dualStack(_ isolate: Bool) -> (net: TestNetwork, config: String) {
            let (net, _) = n.make(isolate: nil)
            let ipam = #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnetBase).0/24"}],[{"subnet":"\#(net.subnet6Base)::/64"}]]}"#
            return (net, net.config(ipam: ipam, extra: #","isDefaultGateway":true"# + (isolate ? #","isolate":true"# : "")))
        }
        let (a, aConfig) = dualStack(true)
        let (b, bConfig) = dualStack(true)
        let (c, cConfig) = dualStack(false)
        let a1 = try a.addContainer(config: aConfig, id: "a1-\(a.id)")
        let b1 = try b.addContainer(config: bConfig, id: "b1-\(b.id)")
        let c1 = try c.addContainer(config: cConfig, id: "c1-\(c.id)")
        let a6 = try #require(firstAddress(a1.add.json, family: .v6))
        let b6 = try #require(firstAddress(b1.add.json, family: .v6))
        let c6 = try #require(firstAddress(c1.add.json, family: .v6))
        // The first packets to a new neighbour wait for its discovery (a second, here): passing cases may take a few tries.
        func reaches(_ net: TestNetwork, _ from: String, _ to: String) -> Bool { cleanWait(8) { net.ping(from: from, to: to) } }
        #expect(reaches(a, a1.netns, c6) && reaches(c, c1.netns, a6), "isolated and plain reach each other over IPv6")
        #expect(!a.ping(from: a1.netns, to: b6) && !b.ping(from: b1.netns, to: a6), "two isolated networks over IPv6")
        #expect(reaches(a, a1.netns, "\(a.subnet6Base)::1"), "a pod reaches its own gateway over IPv6")
        #expect(reaches(b, b1.netns, c6), "b reaches the plain network: the failure above was isolation, not the route")
    }

    @Test("a network without isolate leaves nftables alone")
    func offByDefault() throws {
        let n = Networks()
        defer { n.cleanUp() }
        let (c, cConfig) = n.make(isolate: nil)
        let before = try isolated()
        _ = try c.addContainer(config: cConfig)
        #expect(try isolated() == before)
        #expect(!(try isolated().contains(c.bridge)))
    }
}
}
