import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// `berth` with `"ipam": {"type": "berth-ipam"}` (in-process) in real namespaces.
@Suite("berth with berth-ipam end to end", .ownThreads, .serialized, .enabled(if: runningAsRoot, "needs root for namespaces and links"))
struct BerthIPAMEndToEndTests {
    func ipam(_ net: TestNetwork) -> String {
        #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnetBase).0/24"}],[{"subnet":"\#(net.subnet6Base)::/64"}]]}"#
    }

    @Test("dual-stack containers reach each other over IPv4 and IPv6")
    func dualStack() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace()
        let config = net.config(version: "1.1.0", ipam: ipam(net))
        let r1 = net.run("ADD", netns: ns1, containerID: "c1-\(net.id)", config: config)
        let r2 = net.run("ADD", netns: ns2, containerID: "c2-\(net.id)", config: config)
        try #require(r1.status == 0 && r2.status == 0, "\(r1.stdout) \(r2.stdout)")
        #expect(net.ping(from: ns1, to: try #require(firstAddress(r2.json))))
        #expect(net.ping(from: ns2, to: try #require(firstAddress(r1.json, family: .v6))))
        #expect(net.ping(from: ns1, to: "\(net.subnet6Base)::1"))
        // No second process: the IPAM ran inside berth, and its store is where the config says.
        #expect(FileManager.default.fileExists(atPath: "\(net.dataDir)/\(net.name)/attachments/c1-\(net.id):eth0"))

        let withPrev = net.config(config, prevResult: r1.stdout)
        #expect(net.run("CHECK", netns: ns1, containerID: "c1-\(net.id)", config: withPrev).status == 0)
        #expect(net.run("DEL", netns: ns1, containerID: "c1-\(net.id)", config: withPrev).status == 0)
        #expect(!FileManager.default.fileExists(atPath: "\(net.dataDir)/\(net.name)/attachments/c1-\(net.id):eth0"))
    }

    @Test("GC through berth releases the allocations of attachments that are no longer valid")
    func gc() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let config = net.config(version: "1.1.0", ipam: ipam(net))
        var ids: [String] = []
        for i in 0..<3 {
            let ns = net.makeNamespace()
            let id = "g\(i)-\(net.id)"
            ids.append(id)
            try #require(net.run("ADD", netns: ns, containerID: id, config: config).status == 0)
        }
        var object = try JSON.parse(config).objectValue!
        object["cni.dev/valid-attachments"] = .array([.object(["containerID": .string(ids[1]), "ifname": .string("eth0")])])
        let gc = net.run("GC", netns: "", containerID: "", config: JSON.object(object).serialized())
        #expect(gc.status == 0, "\(gc.stdout)")
        let records = try FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)/attachments")
        #expect(records == ["\(ids[1]):eth0"])
        let addresses = try FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)/addresses")
        #expect(addresses.count == 2)
    }

    @Test("STATUS is 0 while an ADD could succeed and 50 once the range is full")
    func status() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let full = #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","subnet":"\#(net.subnetBase).0/24","rangeStart":"\#(net.subnetBase).9","rangeEnd":"\#(net.subnetBase).9"}"#
        let config = net.config(version: "1.1.0", ipam: full)
        #expect(net.run("STATUS", netns: "", containerID: "", config: config).status == 0)
        let ns = net.makeNamespace()
        try #require(net.run("ADD", netns: ns, containerID: "s-\(net.id)", config: config).status == 0)
        let r = net.run("STATUS", netns: "", containerID: "", config: config)
        #expect(r.status != 0)
        #expect(r.errorCode == 50)
        #expect(r.message.contains("no free address"))
        let tooOld = net.run("STATUS", netns: "", containerID: "", config: net.config(version: "1.0.0", ipam: full))
        #expect(tooOld.errorCode == 1)
    }
}

/// The reference bridge plugin turns IPv4 forwarding on: this test saves and
/// restores it, so it runs with the other tests that do.
extension FirewallTouchingTests {
@Suite("berth-ipam as the reference bridge's delegate", .ownThreads)
struct ReferenceBridgeDelegateTests {
    @Test("the berth-ipam executable works as the delegate of the reference bridge plugin")
    func referenceBridgeWithBerthIPAM() throws {
        let net = TestNetwork()
        let forwarding = HostForwarding()  // the reference bridge turns forwarding on with isGateway
        defer {
            forwarding.restore()
            net.cleanUp()
        }
        let ns = net.makeNamespace()
        let config = #"{"cniVersion":"1.0.0","name":"\#(net.name)","type":"bridge","bridge":"\#(net.bridge)","isGateway":true,"ipam":{"type":"berth-ipam","dataDir":"\#(net.dataDir)","subnet":"\#(net.subnetBase).0/24"}}"#
        let r = net.run("ADD", netns: ns, containerID: "ref-\(net.id)", config: config, plugin: "bridge")
        try #require(r.status == 0, "\(r.stdout)")
        #expect(firstAddress(r.json) == "\(net.subnetBase).2")
        #expect(net.ping(from: ns, to: "\(net.subnetBase).1"))
        #expect(net.run("DEL", netns: ns, containerID: "ref-\(net.id)", config: config, plugin: "bridge").status == 0)
        let addresses = try FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)/addresses")
        #expect(addresses.isEmpty)
    }
}
}
