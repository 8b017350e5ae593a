import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthNet
import BerthTestSupport

/// Names at the limits of what Berth derives from them: the nftables comment
/// (128 bytes), the network part of it (48), file names (255: the store's
/// directory, an attachment's record, its lock). Each case is exactly at a
/// limit or one past it; every option that derives a name is on.
struct NameLimitCase: CustomStringConvertible, Sendable {
    let label: String
    /// The network name's length (the test's own name, padded), and the container ID's.
    let networkLength: Int
    let containerIDLength: Int
    let ifname: String
    let backend: String
    var description: String { "\(label) (\(backend))" }

    /// "berth:" + network + ":" + ID + ":" + ifname, when the network part is as it is.
    static func containerIDForComment(length: Int, networkLength: Int, ifname: String) -> Int {
        length - 6 - networkLength - 1 - 1 - ifname.utf8.count
    }

    static let all: [NameLimitCase] = [
        NameLimitCase(label: "comment of 128 bytes, kept as it is", networkLength: 40,
                      containerIDLength: containerIDForComment(length: 128, networkLength: 40, ifname: "eth0"), ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "comment of 129 bytes, shortened", networkLength: 40,
                      containerIDLength: containerIDForComment(length: 129, networkLength: 40, ifname: "eth0"), ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "comment of 129 bytes, shortened", networkLength: 40,
                      containerIDLength: containerIDForComment(length: 129, networkLength: 40, ifname: "eth0"), ifname: "eth0", backend: "iptables"),
        NameLimitCase(label: "network name of 48 bytes in the comment", networkLength: 48, containerIDLength: 8, ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "network name of 49 bytes in the comment", networkLength: 49, containerIDLength: 8, ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "the issue's case: 60-byte network, 64-hex container ID", networkLength: 60, containerIDLength: 64, ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "the issue's case: 60-byte network, 64-hex container ID", networkLength: 60, containerIDLength: 64, ifname: "eth0", backend: "iptables"),
        NameLimitCase(label: "record file name of 255 bytes", networkLength: 30, containerIDLength: 255 - 1 - 15, ifname: "eth0123456789ab", backend: "nftables"),
        NameLimitCase(label: "record file name of 256 bytes", networkLength: 30, containerIDLength: 256 - 1 - 15, ifname: "eth0123456789ab", backend: "nftables"),
        NameLimitCase(label: "store directory name of 255 bytes", networkLength: 255, containerIDLength: 64, ifname: "eth0", backend: "nftables"),
        NameLimitCase(label: "store directory name of 256 bytes", networkLength: 256, containerIDLength: 64, ifname: "eth0", backend: "iptables"),
        NameLimitCase(label: "an interface name to be hex-encoded, 15 bytes", networkLength: 40, containerIDLength: 64, ifname: "ä+b{c}d&e\"f", backend: "nftables"),
        NameLimitCase(label: "kilobyte names", networkLength: 1000, containerIDLength: 1000, ifname: "eth0", backend: "nftables"),
    ]
}

extension FirewallTouchingTests {
@Suite("name limits", .ownThreads)
struct NameLimitTests {
    @Test("every valid network name, container ID and interface name works with ipMasq and macspoofchk: ADD, CHECK, GC keeps, DEL leaves nothing",
          arguments: NameLimitCase.all)
    func longNames(_ c: NameLimitCase) throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let network = net.name + String(repeating: "n", count: max(0, c.networkLength - net.name.count))
        let id = String(String(repeating: "c0ffee", count: c.containerIDLength / 6 + 1).prefix(c.containerIDLength))
        let config = #"{"cniVersion":"1.1.0","name":"\#(network)","type":"berth","bridge":"\#(net.bridge)","isGateway":true,"ipMasq":true,"ipMasqBackend":"\#(c.backend)","macspoofchk":true,"ipam":\#(net.berthIPAM)}"#
        let ns = net.makeNamespace()
        let add = net.run("ADD", netns: ns, containerID: id, ifname: c.ifname, config: config)
        try #require(add.status == 0, "\(c): \(add.stdout)")
        let check = net.run("CHECK", netns: ns, containerID: id, ifname: c.ifname, config: net.config(config, prevResult: add.stdout))
        #expect(check.status == 0, "\(c): \(check.stdout)")

        // Every comment Berth wrote fits nftables' limit and names the network's rules.
        let comments = ruleComments()
        let ours = comments.filter { $0.hasPrefix("berth:\(network.prefix(20))") }
        // MAC spoof check in nftables; masquerade: one nftables rule, or two iptables rules.
        let expected = c.backend == "nftables" ? 2 : 3
        #expect(ours.count == expected, "\(c): \(comments)")
        for comment in ours { #expect(comment.utf8.count <= 128, "\(c): \(comment.utf8.count) bytes") }
        let store = "\(net.dataDir)/\(DerivedName.fit(network, limit: 255))"
        let records = (try? FileManager.default.contentsOfDirectory(atPath: "\(store)/attachments")) ?? []
        #expect(records.count == 1 && records.allSatisfy { $0.utf8.count <= 255 }, "\(c): \(records)")

        // GC keeps a valid attachment's rules and address, and removes them once it is not valid.
        func gc(_ valid: String) -> PluginRun {
            var object = try! JSON.parse(config).objectValue!
            object["cni.dev/valid-attachments"] = try! JSON.parse(valid)
            return net.run("GC", netns: "", containerID: "", config: JSON.object(object).serialized())
        }
        let keep = JSON.array([.object(["containerID": .string(id), "ifname": .string(c.ifname)])]).serialized()
        #expect(gc(keep).status == 0)
        #expect(ruleComments().filter { $0.hasPrefix("berth:\(network.prefix(20))") }.count == expected, "\(c): GC removed valid rules")
        #expect(gc("[]").status == 0)
        #expect(ruleComments().filter { $0.hasPrefix("berth:\(network.prefix(20))") }.isEmpty, "\(c): GC left rules")

        let del = net.run("DEL", netns: ns, containerID: id, ifname: c.ifname, config: config)
        #expect(del.status == 0, "\(c): \(del.stdout)")
        #expect(net.portsOfBridge().isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/addresses")) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/attachments")) ?? []).isEmpty)
    }

    /// The comments of the rules in Berth's nftables tables and BERTH-MASQ chains.
    func ruleComments() -> [String] {
        let nft = ["inet", "bridge"].flatMap { shell(["nft", "list", "table", $0, "berth"]).out.split(separator: "\n") }
        let ipt = ["iptables", "ip6tables"].flatMap { shell([$0, "-t", "nat", "-S", "BERTH-MASQ"]).out.split(separator: "\n") }
        return (nft + ipt).compactMap { line -> String? in
            guard let start = line.range(of: "--comment ") ?? line.range(of: "comment ") else { return nil }
            var rest = line[start.upperBound...]
            if rest.first == "\"" {
                rest = rest.dropFirst()
                return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
            }
            return String(rest.prefix { $0 != " " })
        }
    }
}
}
