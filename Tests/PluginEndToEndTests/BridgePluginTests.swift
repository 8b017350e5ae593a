import Foundation
import Testing
import BerthCNI
import BerthTestSupport

/// The `berth` executable driven as a runtime drives it, against the real
/// kernel: real namespaces, a real bridge, real traffic. Root only.
@Suite("berth plugin end to end", .ownThreads, .serialized, .enabled(if: runningAsRoot, "needs root for namespaces and links"))
struct BridgePluginEndToEndTests {
    @Test("two containers on one bridge reach each other and the gateway")
    func twoContainers() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace()
        let config = net.config()
        let r1 = net.run("ADD", netns: ns1, containerID: "c1-\(net.id)", config: config)
        let r2 = net.run("ADD", netns: ns2, containerID: "c2-\(net.id)", config: config)
        try #require(r1.status == 0, "\(r1.stdout)")
        try #require(r2.status == 0, "\(r2.stdout)")

        let a1 = try #require(firstAddress(r1.json)), a2 = try #require(firstAddress(r2.json))
        #expect(a1 != a2)
        let gateway = "\(net.subnetBase).1"
        #expect(net.ping(from: ns1, to: a2))
        #expect(net.ping(from: ns2, to: a1))
        #expect(net.ping(from: ns1, to: gateway))
        #expect(shell(["ip", "-o", "addr", "show", "dev", net.bridge]).out.contains("\(gateway)/24"))

        // The result: [bridge, host veth, container interface], ips pointing at the container end.
        let result = try #require(r1.json)
        let interfaces = try #require(result["interfaces"]?.arrayValue)
        #expect(interfaces.count == 3)
        #expect(interfaces[0]["name"]?.stringValue == net.bridge)
        let hostVeth = try #require(interfaces[1]["name"]?.stringValue)
        #expect(hostVeth.hasPrefix("veth") && hostVeth.count == 12)
        #expect(interfaces[2]["name"]?.stringValue == "eth0")
        #expect(interfaces[2]["sandbox"]?.stringValue == ns1)
        let mac = try #require(interfaces[2]["mac"]?.stringValue)
        #expect(net.inNamespace(ns1, ["cat", "/sys/class/net/eth0/address"]).out.contains(mac))
        #expect(result["ips"]?.arrayValue?.first?["interface"]?.intValue == 2)
        #expect(result["ips"]?.arrayValue?.first?["gateway"]?.stringValue == gateway)
        #expect(net.portsOfBridge().contains(hostVeth))
        #expect(shell(["ip", "-o", "link", "show", net.bridge]).out.contains(",UP"))
    }

    @Test("isDefaultGateway and mtu: default route in the container, MTU on bridge and both ends")
    func defaultGatewayAndMTU() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let r = net.run("ADD", netns: ns, containerID: "c-\(net.id)",
                        config: net.config(extra: #","isDefaultGateway":true,"mtu":1400"#))
        try #require(r.status == 0, "\(r.stdout)")
        #expect(net.inNamespace(ns, ["ip", "route", "show", "default"]).out.contains("via \(net.subnetBase).1 dev eth0"))
        #expect(net.inNamespace(ns, ["cat", "/sys/class/net/eth0/mtu"]).out.hasPrefix("1400"))
        let host = try #require(r.json?["interfaces"]?.arrayValue?[1]["name"]?.stringValue)
        #expect(shell(["cat", "/sys/class/net/\(host)/mtu"]).out.hasPrefix("1400"))
        #expect(shell(["cat", "/sys/class/net/\(net.bridge)/mtu"]).out.hasPrefix("1400"))
        let routes = try #require(r.json?["routes"]?.arrayValue)
        #expect(routes.contains { $0["dst"]?.stringValue == "0.0.0.0/0" })
    }

    @Test("dual stack: containers reach each other over IPv6 at once, without waiting for DAD")
    func dualStack() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace()
        let ipam = #"{"type":"host-local","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnetBase).0/24"}],[{"subnet":"\#(net.subnet6Base)::/64"}]]}"#
        let config = net.config(ipam: ipam)
        let r1 = net.run("ADD", netns: ns1, containerID: "c1-\(net.id)", config: config)
        let r2 = net.run("ADD", netns: ns2, containerID: "c2-\(net.id)", config: config)
        try #require(r1.status == 0 && r2.status == 0, "\(r1.stdout) \(r2.stdout)")
        let v6 = try #require(firstAddress(r2.json, family: .v6))
        let ownAddress = net.inNamespace(ns1, ["ip", "-6", "-o", "addr", "show", "dev", "eth0"]).out
            .split(separator: "\n").filter { $0.contains(net.subnet6Base) }
        #expect(ownAddress.count == 1)
        #expect(!ownAddress.joined().contains("tentative"))
        #expect(net.ping(from: ns1, to: v6))
        #expect(net.ping(from: ns1, to: "\(net.subnet6Base)::1"))
    }

    @Test("CHECK passes on a fresh container and fails once the interface is removed by hand")
    func check() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let config = net.config(extra: #","isDefaultGateway":true"#)
        let (ns, id, add) = try net.addContainer(config: config)
        let withPrev = net.config(config, prevResult: add.stdout)

        let ok = net.run("CHECK", netns: ns, containerID: id, config: withPrev)
        #expect(ok.status == 0, "\(ok.stdout)")
        #expect(ok.stdout.isEmpty)

        net.inNamespace(ns, ["ip", "route", "del", "default"])
        let noRoute = net.run("CHECK", netns: ns, containerID: id, config: withPrev)
        #expect(noRoute.status != 0)
        #expect(noRoute.message.contains("route 0.0.0.0/0"))

        net.inNamespace(ns, ["ip", "link", "del", "eth0"])
        let gone = net.run("CHECK", netns: ns, containerID: id, config: withPrev)
        #expect(gone.status != 0)
        #expect(gone.errorCode == 100)
        #expect(gone.message.contains("eth0 is missing"))
    }

    @Test("CHECK fails when the host end has left the bridge")
    func checkDetachedHostEnd() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let (ns, _, add) = try net.addContainer()
        let host = try #require(add.json?["interfaces"]?.arrayValue?[1]["name"]?.stringValue)
        shell(["ip", "link", "set", host, "nomaster"])
        let r = net.run("CHECK", netns: ns, containerID: "c-\(net.id)", config: net.config(net.config(), prevResult: add.stdout))
        #expect(r.status != 0)
        #expect(r.message.contains("not attached to bridge"))
    }

    @Test("DEL removes the veth and releases the address; a second DEL succeeds too")
    func delTwice() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let (ns, id, add) = try net.addContainer()
        let address = try #require(firstAddress(add.json))
        let withPrev = net.config(net.config(), prevResult: add.stdout)

        let del1 = net.run("DEL", netns: ns, containerID: id, config: withPrev)
        #expect(del1.status == 0, "\(del1.stdout)")
        #expect(net.portsOfBridge().isEmpty)
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
        #expect(!FileManager.default.fileExists(atPath: "\(net.dataDir)/\(net.name)/\(address)"))
        let del2 = net.run("DEL", netns: ns, containerID: id, config: withPrev)
        #expect(del2.status == 0, "\(del2.stdout)")
        // The bridge stays for the next container.
        #expect(shell(["ip", "link", "show", net.bridge]).status == 0)
    }

    @Test("DEL succeeds after the namespace is gone, and with no CNI_NETNS at all")
    func delAfterNamespaceGone() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let (ns, id, add) = try net.addContainer()
        let address = try #require(firstAddress(add.json))
        net.deleteNamespace(ns)
        let del = net.run("DEL", netns: ns, containerID: id, config: net.config())
        #expect(del.status == 0, "\(del.stdout)")
        let delEmpty = net.run("DEL", netns: "", containerID: id, config: net.config())
        #expect(delEmpty.status == 0, "\(delEmpty.stdout)")
        #expect(!FileManager.default.fileExists(atPath: "\(net.dataDir)/\(net.name)/\(address)"))
    }

    @Test("ADD of an interface name that exists in the namespace fails and changes nothing")
    func existingInterface() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let first = net.run("ADD", netns: ns, containerID: "c-\(net.id)", config: net.config())
        try #require(first.status == 0, "\(first.stdout)")
        let portsBefore = net.portsOfBridge()
        let linksBefore = net.inNamespace(ns, ["ip", "-o", "addr"]).out
        let allocationsBefore = try FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)").sorted()

        let second = net.run("ADD", netns: ns, containerID: "other-\(net.id)", config: net.config())
        #expect(second.status != 0)
        #expect(second.errorCode == 4)
        #expect(second.message.contains("already exists"))
        #expect(net.portsOfBridge() == portsBefore)
        #expect(net.inNamespace(ns, ["ip", "-o", "addr"]).out == linksBefore)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)").sorted() == allocationsBefore)
    }

    @Test("an ADD that fails at IPAM leaves no veth behind")
    func ipamFailureLeavesNothing() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace()
        // A range of exactly one address: the second ADD cannot get one.
        let ipam = #"{"type":"host-local","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnetBase).0/24","rangeStart":"\#(net.subnetBase).10","rangeEnd":"\#(net.subnetBase).10"}]]}"#
        let ok = net.run("ADD", netns: ns1, containerID: "c1-\(net.id)", config: net.config(ipam: ipam))
        try #require(ok.status == 0, "\(ok.stdout)")
        let portsBefore = net.portsOfBridge()
        let failed = net.run("ADD", netns: ns2, containerID: "c2-\(net.id)", config: net.config(ipam: ipam))
        #expect(failed.status != 0)
        #expect(failed.message.contains("host-local"))
        #expect(net.portsOfBridge() == portsBefore)
        #expect(net.inNamespace(ns2, ["ip", "link", "show", "eth0"]).status != 0)
    }

    @Test("a bridge with 1,023 ports (the kernel's most) refuses the next ADD with error 11 naming it, and the ADD leaves nothing")
    func fullBridge() throws {
        let net = TestNetwork()
        let peers = "\(net.name)-peers"
        defer {
            shell(["ip", "netns", "del", peers])  // takes the 1,023 pairs with it
            net.cleanUp()
        }
        let ipam = net.berthIPAM
        let ns = net.makeNamespace()
        // The bridge, made by a first ADD; then ports up to the limit, by hand.
        let first = net.run("ADD", netns: ns, containerID: "first-\(net.id)", config: net.config(ipam: ipam))
        try #require(first.status == 0, "\(first.stdout)")
        shell(["ip", "netns", "add", peers])
        let lines = (1..<1023).map { "link add p\(net.id.prefix(6))\($0) master \(net.bridge) type veth peer name q\($0) netns \(peers)" }
        try #require(shell(["ip", "-batch", "-"], input: lines.joined(separator: "\n") + "\n").status == 0)
        try #require(net.portsOfBridge().count == 1023)

        let other = net.makeNamespace()
        let full = net.run("ADD", netns: other, containerID: "last-\(net.id)", config: net.config(ipam: ipam))
        #expect(full.status != 0)
        #expect(full.errorCode == 11 && full.message.contains(net.bridge) && full.message.contains("1023 ports"), "\(full.stdout)")
        #expect(net.portsOfBridge().count == 1023)
        #expect(net.inNamespace(other, ["ip", "link", "show", "eth0"]).status != 0)
        let held = (try? FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)/addresses")) ?? []
        #expect(held.count == 1, "\(held)")
    }

    @Test("an ADD whose routes cannot be installed removes its veth and releases its address")
    func lateFailureRollsBack() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        // The same route twice: the second insertion fails after veth and address are in place.
        let ipam = #"{"type":"host-local","dataDir":"\#(net.dataDir)","subnet":"\#(net.subnetBase).0/24","routes":[{"dst":"10.239.1.0/24"},{"dst":"10.239.1.0/24"}]}"#
        let r = net.run("ADD", netns: ns, containerID: "c-\(net.id)", config: net.config(ipam: ipam))
        #expect(r.status != 0)
        #expect(r.message.contains("10.239.1.0/24"))
        #expect(net.portsOfBridge().isEmpty)
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
        let allocations = (try? FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)")) ?? []
        #expect(allocations.filter { $0.hasPrefix(net.subnetBase) }.isEmpty)
    }

    @Test("20 parallel ADDs on a fresh bridge all succeed with distinct addresses")
    func parallelAdds() async throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let namespaces = (0..<20).map { _ in net.makeNamespace() }
        let config = net.config()
        let indexed = await withTaskGroup(of: (Int, PluginRun).self) { group in
            for (i, ns) in namespaces.enumerated() {
                group.addTask { (i, net.run("ADD", netns: ns, containerID: "p\(i)-\(net.id)", config: config)) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let results = indexed.sorted { $0.0 < $1.0 }.map(\.1)  // in the namespaces' order
        for r in results { #expect(r.status == 0, "\(r.stdout)") }
        let addresses = results.compactMap { firstAddress($0.json) }
        #expect(addresses.count == 20)
        #expect(Set(addresses).count == 20)
        #expect(net.portsOfBridge().count == 20)
        let last = namespaces.count - 1
        #expect(net.ping(from: namespaces[0], to: addresses.last!), """
            \(addresses.first!) cannot reach \(addresses.last!): neighbours \(net.inNamespace(namespaces[0], ["ip", "neigh"]).out)             there: \(net.inNamespace(namespaces[last], ["ip", "-o", "addr"]).out) \(net.inNamespace(namespaces[last], ["ip", "-o", "link"]).out)             ports: \(shell(["bridge", "link", "show"]).out.split(separator: "\n").filter { $0.contains(net.bridge) })             fdb: \(shell(["bridge", "fdb", "show", "br", net.bridge]).out)
            """)
    }

    @Test("ADD into the host's own namespace is refused")
    func hostNamespace() {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let r = net.run("ADD", netns: "/proc/\(getpid())/ns/net", containerID: "c-\(net.id)", ifname: "bt\(net.id.prefix(8))", config: net.config())
        #expect(r.status != 0)
        #expect(r.errorCode == 4)
        #expect(r.message.contains("host"))
        #expect(shell(["ip", "link", "show", net.bridge]).status != 0)
    }

    @Test("ADD into a directory or an ordinary file is refused with CNI_NETNS named")
    func notANamespace() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let file = NSTemporaryDirectory() + "berthtest-file-\(net.id)"
        touchFile(file)
        defer { try? FileManager.default.removeItem(atPath: file) }
        for path in [file, NSTemporaryDirectory()] {
            let r = net.run("ADD", netns: path, containerID: "c-\(net.id)", config: net.config())
            #expect(r.errorCode == 4)
            #expect(r.message.contains("CNI_NETNS") && r.message.contains("not a network namespace"))
        }
    }

    @Test("answers in the version it was given: 0.2.0 prints ip4, 0.3.1 prints ips with version",
          arguments: ["0.2.0", "0.3.1", "0.4.0"])
    func versions(version: String) throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let r = net.run("ADD", netns: ns, containerID: "c-\(net.id)", config: net.config(version: version))
        try #require(r.status == 0, "\(r.stdout)")
        let json = try #require(r.json)
        #expect(json["cniVersion"]?.stringValue == version)
        if version == "0.2.0" {
            #expect(json["ip4"]?["ip"]?.stringValue?.hasPrefix(net.subnetBase) == true)
            #expect(json["interfaces"] == nil)
        } else {
            #expect(json["ips"]?.arrayValue?.first?["version"]?.stringValue == "4")
        }
        #expect(net.ping(from: ns, to: "\(net.subnetBase).1"))
    }

    @Test("the reference static IPAM works as a delegate")
    func staticIPAM() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let ipam = #"{"type":"static","addresses":[{"address":"\#(net.subnetBase).77/24","gateway":"\#(net.subnetBase).1"}]}"#
        let r = net.run("ADD", netns: ns, containerID: "c-\(net.id)", config: net.config(ipam: ipam))
        try #require(r.status == 0, "\(r.stdout)")
        #expect(firstAddress(r.json) == "\(net.subnetBase).77")
        #expect(net.ping(from: ns, to: "\(net.subnetBase).1"))
    }

    @Test("an IPAM plugin missing from CNI_PATH is a clear error and leaves nothing")
    func missingIPAM() {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let r = net.run("ADD", netns: ns, containerID: "c-\(net.id)", config: net.config(ipam: #"{"type":"no-such-ipam"}"#))
        #expect(r.errorCode == 7)
        #expect(r.message.contains("no-such-ipam") && r.message.contains("CNI_PATH"))
        #expect(net.portsOfBridge().isEmpty)
    }
}
