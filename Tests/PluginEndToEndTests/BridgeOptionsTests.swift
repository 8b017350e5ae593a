import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// The nftables rules of Berth's tables carrying `comment`.
func berthNFTRules(containing comment: String) -> [String] {
    ["inet", "bridge"].flatMap { family in
        shell(["nft", "list", "table", family, "berth"]).out.split(separator: "\n").map(String.init)
            .filter { $0.contains("comment \"\(comment)\"") }
    }
}

/// Whether this kernel can filter VLANs on a bridge (creating one with vlan_filtering 1 works).
let kernelHasBridgeVLANFiltering: Bool = {
    guard runningAsRoot else { return false }
    let probe = "btvlanprobe\(getpid() % 10000)"
    let supported = shell(["ip", "link", "add", probe, "type", "bridge", "vlan_filtering", "1"]).status == 0
    shell(["ip", "link", "del", probe])
    return supported
}()

func hostVeth(_ r: PluginRun) -> String? { r.json?["interfaces"]?.arrayValue?[1]["name"]?.stringValue }

/// The host state an ipMasq test changes: rules and tables, IPv4 forwarding.
struct HostFirewallState {
    let rules = IPTablesSnapshot()
    let forwarding = HostForwarding()
    func restore() {
        forwarding.restore()
        rules.restore()
    }
}

/// One test per bridge option: the kernel state after ADD, CHECK, and DEL
/// (also DEL after the namespace is gone), with traffic where the option is about traffic.
extension FirewallTouchingTests {
@Suite("bridge options", .ownThreads)
struct BridgeOptionTests {
    func berthIPAM(_ net: TestNetwork) -> String { net.berthIPAM }

    @Test("ipMasq with nftables: a rule per container address, IPv4 forwarding on, checked by CHECK, removed by DEL after the namespace is gone")
    func masqueradeNFTables() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(ipam: berthIPAM(net), extra: #","ipMasq":true"#)
        let (ns, id, add) = try net.addContainer(config: config, id: "m-\(net.id)")
        let comment = "berth:\(net.name):\(id):eth0"
        let rules = berthNFTRules(containing: comment)
        #expect(rules.count == 1)
        #expect(rules.first?.contains("ip saddr \(net.subnetBase).2 ip daddr != \(net.subnetBase).0/24") == true)
        #expect(rules.first?.contains("masquerade") == true)
        #expect(shell(["cat", "/proc/sys/net/ipv4/ip_forward"]).out.hasPrefix("1"))
        let withPrev = net.config(config, prevResult: add.stdout)
        #expect(net.run("CHECK", netns: ns, containerID: id, config: withPrev).status == 0)

        net.deleteNamespace(ns)
        let del = net.run("DEL", netns: ns, containerID: id, config: withPrev)
        #expect(del.status == 0, "\(del.stdout)")
        #expect(berthNFTRules(containing: comment).isEmpty)
    }

    @Test("ipMasq with the iptables backend: rules in BERTH-MASQ, removed by DEL after the namespace is gone")
    func masqueradeIPTables() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(ipam: berthIPAM(net), extra: #","ipMasq":true,"ipMasqBackend":"iptables""#)
        let (ns, id, add) = try net.addContainer(config: config, id: "mi-\(net.id)")
        let listing = shell(["iptables", "-t", "nat", "-S", "BERTH-MASQ"]).out
        #expect(listing.contains("-s \(net.subnetBase).2/32 ! -d \(net.subnetBase).0/24") && listing.contains("MASQUERADE"))
        #expect(shell(["iptables", "-t", "nat", "-C", "POSTROUTING", "-j", "BERTH-MASQ"]).status == 0)
        let withPrev = net.config(config, prevResult: add.stdout)
        #expect(net.run("CHECK", netns: ns, containerID: id, config: withPrev).status == 0)
        net.deleteNamespace(ns)
        #expect(net.run("DEL", netns: ns, containerID: id, config: withPrev).status == 0)
        #expect(!shell(["iptables", "-t", "nat", "-S", "BERTH-MASQ"]).out.contains(id))
    }

    @Test("GC removes the masquerade rules of attachments that are no longer valid")
    func gcRules() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(version: "1.1.0", ipam: berthIPAM(net), extra: #","ipMasq":true"#)
        for i in 0..<2 {
            try #require(net.run("ADD", netns: net.makeNamespace(), containerID: "gc\(i)-\(net.id)", config: config).status == 0)
        }
        var object = try JSON.parse(config).objectValue!
        object["cni.dev/valid-attachments"] = .array([.object(["containerID": .string("gc1-\(net.id)"), "ifname": .string("eth0")])])
        #expect(net.run("GC", netns: "", containerID: "", config: JSON.object(object).serialized()).status == 0)
        #expect(berthNFTRules(containing: "berth:\(net.name):gc0-\(net.id):eth0").isEmpty)
        #expect(berthNFTRules(containing: "berth:\(net.name):gc1-\(net.id):eth0").count == 1)
    }

    @Test("macspoofchk: the container can send only with its own MAC")
    func macSpoofCheck() throws {
        let net = TestNetwork(), firewall = IPTablesSnapshot()
        defer { firewall.restore(); net.cleanUp() }
        let config = net.config(ipam: berthIPAM(net), extra: #","macspoofchk":true"#)
        let (ns, id, add) = try net.addContainer(config: config, id: "ms-\(net.id)")
        let comment = "berth:\(net.name):\(id):eth0"
        #expect(berthNFTRules(containing: comment).first?.contains("iifname \"\(hostVeth(add)!)\"") == true)
        let gateway = "\(net.subnetBase).1"
        #expect(net.ping(from: ns, to: gateway))
        net.inNamespace(ns, ["ip", "link", "set", "eth0", "address", "02:00:00:be:e7:01"])
        #expect(!net.ping(from: ns, to: gateway), "a frame with a foreign MAC got through")
        let withPrev = net.config(config, prevResult: add.stdout)
        net.inNamespace(ns, ["ip", "link", "set", "eth0", "address", try #require(add.json?["interfaces"]?.arrayValue?[2]["mac"]?.stringValue)])
        #expect(net.ping(from: ns, to: gateway))
        #expect(net.run("CHECK", netns: ns, containerID: id, config: withPrev).status == 0)
        net.deleteNamespace(ns)
        #expect(net.run("DEL", netns: ns, containerID: id, config: withPrev).status == 0)
        #expect(berthNFTRules(containing: comment).isEmpty)
    }

    @Test("hairpinMode: traffic may leave through the port it came in, so two hosts behind one port reach each other")
    func hairpin() throws {
        for hairpin in [true, false] {
            let net = TestNetwork()
            defer { net.cleanUp() }
            let ns = net.makeNamespace(), behind = net.makeNamespace()
            let add = net.run("ADD", netns: ns, containerID: "h-\(net.id)", config: net.config(ipam: berthIPAM(net), extra: #","hairpinMode":\#(hairpin)"#))
            try #require(add.status == 0, "\(add.stdout)")
            #expect(shell(["cat", "/sys/class/net/\(hostVeth(add)!)/brport/hairpin_mode"]).out.hasPrefix(hairpin ? "1" : "0"))
            // A macvlan on the container's eth0, moved to a second namespace: its frames to
            // the container go out through eth0 and must come back through the same bridge port.
            let other = "\(net.subnetBase).200"
            net.inNamespace(ns, ["ip", "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge"])
            net.inNamespace(ns, ["ip", "link", "set", "mv0", "netns", URL(fileURLWithPath: behind).lastPathComponent])
            net.inNamespace(behind, ["ip", "addr", "add", "\(other)/24", "dev", "mv0"])
            net.inNamespace(behind, ["ip", "link", "set", "mv0", "up"])
            #expect(net.ping(from: behind, to: "\(net.subnetBase).1"), "the second host does not reach the bridge at all")
            #expect(net.ping(from: ns, to: other) == hairpin)
        }
    }

    @Test("portIsolation: isolated containers reach the gateway but not each other")
    func portIsolation() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace()
        let config = net.config(ipam: berthIPAM(net), extra: #","portIsolation":true"#)
        let r1 = net.run("ADD", netns: ns1, containerID: "i1-\(net.id)", config: config)
        let r2 = net.run("ADD", netns: ns2, containerID: "i2-\(net.id)", config: config)
        try #require(r1.status == 0 && r2.status == 0, "\(r1.stdout) \(r2.stdout)")
        #expect(shell(["cat", "/sys/class/net/\(hostVeth(r1)!)/brport/isolated"]).out.hasPrefix("1"))
        #expect(net.ping(from: ns1, to: "\(net.subnetBase).1"))
        #expect(!net.ping(from: ns1, to: try #require(firstAddress(r2.json))))
        let withPrev = net.config(config, prevResult: r1.stdout)
        #expect(net.run("CHECK", netns: ns1, containerID: "i1-\(net.id)", config: withPrev).status == 0)
        shell(["ip", "link", "set", "dev", hostVeth(r1)!, "type", "bridge_slave", "isolated", "off"])
        let check = net.run("CHECK", netns: ns1, containerID: "i1-\(net.id)", config: withPrev)
        #expect(check.errorCode == 100)
        #expect(check.message.contains("isolation"))
    }

    @Test("promiscMode puts the bridge in promiscuous mode; CHECK verifies it")
    func promiscuous() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let config = net.config(ipam: berthIPAM(net), extra: #","promiscMode":true"#)
        let add = net.run("ADD", netns: ns, containerID: "p-\(net.id)", config: config)
        try #require(add.status == 0, "\(add.stdout)")
        #expect(shell(["ip", "-o", "link", "show", net.bridge]).out.contains("PROMISC"))
        let withPrev = net.config(config, prevResult: add.stdout)
        #expect(net.run("CHECK", netns: ns, containerID: "p-\(net.id)", config: withPrev).status == 0)
        shell(["ip", "link", "set", net.bridge, "promisc", "off"])
        #expect(net.run("CHECK", netns: ns, containerID: "p-\(net.id)", config: withPrev).errorCode == 100)
        #expect(net.run("DEL", netns: ns, containerID: "p-\(net.id)", config: withPrev).status == 0)
    }

    @Test("VLANs on a kernel without bridge VLAN filtering fail naming the feature and leave nothing behind",
          .enabled(if: !kernelHasBridgeVLANFiltering, "this kernel has bridge VLAN filtering: the working path is tested instead"))
    func vlanUnsupported() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        for extra in [#","vlan":10"#, #","vlanTrunk":[{"id":5},{"minID":100,"maxID":110}]"#] {
            let r = net.run("ADD", netns: ns, containerID: "v-\(net.id)", config: net.config(ipam: berthIPAM(net), extra: extra))
            #expect(r.status != 0)
            #expect(r.errorCode == 2)
            #expect(r.message.contains("VLAN filtering"))
            #expect(shell(["ip", "link", "show", net.bridge]).status != 0, "a bridge was left behind")
            #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
            let allocations = (try? FileManager.default.contentsOfDirectory(atPath: "\(net.dataDir)/\(net.name)/addresses")) ?? []
            #expect(allocations.isEmpty)
        }
        // An existing bridge is left as it was.
        shell(["ip", "link", "add", net.bridge, "type", "bridge"])
        let r = net.run("ADD", netns: ns, containerID: "v-\(net.id)", config: net.config(ipam: berthIPAM(net), extra: #","vlan":10"#))
        #expect(r.errorCode == 2)
        #expect(net.portsOfBridge().isEmpty)
        #expect(!shell(["ip", "-d", "link", "show", net.bridge]).out.contains("vlan_filtering 1"))
    }

    @Test("containers on different access VLANs of one bridge cannot reach each other; CHECK and DEL work",
          .enabled(if: kernelHasBridgeVLANFiltering, "skipped: this kernel has no bridge VLAN filtering (creating a bridge with vlan_filtering 1 is refused)"))
    func vlanSeparation() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns1 = net.makeNamespace(), ns2 = net.makeNamespace(), ns3 = net.makeNamespace()
        let c10 = net.config(ipam: berthIPAM(net), extra: #","vlan":10"#)
        let c20 = net.config(ipam: berthIPAM(net), extra: #","vlan":20"#)
        let a = net.run("ADD", netns: ns1, containerID: "v1-\(net.id)", config: c10)
        let b = net.run("ADD", netns: ns2, containerID: "v2-\(net.id)", config: c20)
        let c = net.run("ADD", netns: ns3, containerID: "v3-\(net.id)", config: c10)
        try #require(a.status == 0 && b.status == 0 && c.status == 0, "\(a.stdout) \(b.stdout) \(c.stdout)")
        #expect(shell(["bridge", "vlan", "show", "dev", hostVeth(a)!]).out.contains("10"))
        #expect(!net.ping(from: ns1, to: try #require(firstAddress(b.json))))
        #expect(net.ping(from: ns1, to: try #require(firstAddress(c.json))))
        #expect(net.run("CHECK", netns: ns1, containerID: "v1-\(net.id)", config: net.config(c10, prevResult: a.stdout)).status == 0)
        #expect(net.run("DEL", netns: ns1, containerID: "v1-\(net.id)", config: c10).status == 0)
    }

    @Test("a conflicting bridge address is an error naming both; forceAddress replaces it")
    func forceAddress() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        shell(["ip", "link", "add", net.bridge, "type", "bridge"])
        shell(["ip", "addr", "add", "\(net.subnetBase).1/24", "dev", net.bridge])
        let ipam = #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","subnet":"\#(net.subnetBase).0/24","gateway":"\#(net.subnetBase).254"}"#
        let ns = net.makeNamespace()
        let refused = net.run("ADD", netns: ns, containerID: "f-\(net.id)", config: net.config(ipam: ipam))
        #expect(refused.errorCode == 7)
        #expect(refused.message.contains(net.bridge) && refused.message.contains("\(net.subnetBase).1/24")
                && refused.message.contains("\(net.subnetBase).254/24"))
        #expect(net.portsOfBridge().isEmpty)
        #expect(!shell(["ip", "-o", "addr", "show", "dev", net.bridge]).out.contains(".254/"))

        let forced = net.run("ADD", netns: ns, containerID: "f-\(net.id)", config: net.config(ipam: ipam, extra: #","forceAddress":true"#))
        #expect(forced.status == 0, "\(forced.stdout)")
        let addresses = shell(["ip", "-4", "-o", "addr", "show", "dev", net.bridge]).out
        #expect(addresses.contains("\(net.subnetBase).254/24"))
        #expect(!addresses.contains("\(net.subnetBase).1/24"))
        #expect(net.ping(from: ns, to: "\(net.subnetBase).254"))
    }

    @Test("IPv6 DAD is skipped by default (nodad) and, with enabledad, ADD returns once the address is usable")
    func duplicateAddressDetection() throws {
        for enabled in [false, true] {
            let net = TestNetwork()
            defer { net.cleanUp() }
            let ns = net.makeNamespace()
            let ipam = #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnet6Base)::/64"}]]}"#
            let r = net.run("ADD", netns: ns, containerID: "d-\(net.id)", config: net.config(ipam: ipam, extra: enabled ? #","enabledad":true"# : ""))
            try #require(r.status == 0, "\(r.stdout)")
            let line = net.inNamespace(ns, ["ip", "-6", "-o", "addr", "show", "dev", "eth0"]).out
                .split(separator: "\n").first { $0.contains(net.subnet6Base) }.map(String.init) ?? ""
            #expect(!line.isEmpty)
            #expect(!line.contains("tentative"))
            #expect(line.contains("nodad") == !enabled)
        }
    }

    @Test("disableContainerInterface leaves the container end down; CHECK accepts that")
    func disabledInterface() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let config = #"{"cniVersion":"1.0.0","name":"\#(net.name)","type":"berth","bridge":"\#(net.bridge)","disableContainerInterface":true}"#
        let add = net.run("ADD", netns: ns, containerID: "x-\(net.id)", config: config)
        try #require(add.status == 0, "\(add.stdout)")
        #expect(!net.inNamespace(ns, ["ip", "-o", "link", "show", "eth0"]).out.contains(",UP"))
        #expect(net.run("CHECK", netns: ns, containerID: "x-\(net.id)", config: net.config(config, prevResult: add.stdout)).status == 0)
        #expect(net.run("DEL", netns: ns, containerID: "x-\(net.id)", config: config).status == 0)
        #expect(net.portsOfBridge().isEmpty)
    }

    @Test("the container MAC comes from runtimeConfig.mac, args.cni.mac or CNI_ARGS MAC, in that order of precedence")
    func containerMAC() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let cases: [(extra: String, args: String?, mac: String)] = [
            (#","runtimeConfig":{"mac":"0a:58:00:00:00:01"},"args":{"cni":{"mac":"0a:58:00:00:00:02"}}"#, "MAC=0a:58:00:00:00:03", "0a:58:00:00:00:01"),
            (#","args":{"cni":{"mac":"0A:58:00:00:00:02"}}"#, "MAC=0a:58:00:00:00:03", "0a:58:00:00:00:02"),
            ("", "IgnoreUnknown=1;MAC=0a:58:00:00:00:03", "0a:58:00:00:00:03"),
        ]
        for (i, c) in cases.enumerated() {
            let ns = net.makeNamespace()
            let r = net.run("ADD", netns: ns, containerID: "mac\(i)-\(net.id)", config: net.config(ipam: berthIPAM(net), extra: c.extra), args: c.args)
            try #require(r.status == 0, "\(r.stdout)")
            #expect(r.json?["interfaces"]?.arrayValue?[2]["mac"]?.stringValue == c.mac)
            #expect(net.inNamespace(ns, ["cat", "/sys/class/net/eth0/address"]).out.hasPrefix(c.mac))
        }
        let bad = net.run("ADD", netns: net.makeNamespace(), containerID: "badmac-\(net.id)",
                          config: net.config(ipam: berthIPAM(net), extra: #","runtimeConfig":{"mac":"01:00:5e:00:00:01"}"#))
        #expect(bad.errorCode == 7)
        #expect(bad.message.contains("runtimeConfig.mac"))
    }

    @Test("dns from the config is returned in the result")
    func dnsFromConfig() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let r = net.run("ADD", netns: net.makeNamespace(), containerID: "dns-\(net.id)",
                        config: net.config(ipam: berthIPAM(net), extra: #","dns":{"nameservers":["\#(net.subnetBase).53"],"search":["lab.test"]}"#))
        try #require(r.status == 0, "\(r.stdout)")
        #expect(r.json?["dns"]?["nameservers"]?.arrayValue == [.string("\(net.subnetBase).53")])
        #expect(r.json?["dns"]?["search"]?.arrayValue == [.string("lab.test")])
    }

    @Test("as a later plugin of a chain, berth carries the prevResult it is given into its result")
    func carriesPrevResult() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let prev = #"{"cniVersion":"1.0.0","interfaces":[{"name":"dummy0","sandbox":"/var/run/other"}],"ips":[{"interface":0,"address":"10.239.99.77/32"}],"routes":[{"dst":"10.239.98.0/24"}],"dns":{"nameservers":["10.239.99.53"]}}"#
        let config = net.config(net.config(ipam: berthIPAM(net)), prevResult: prev)
        let r = net.run("ADD", netns: net.makeNamespace(), containerID: "later-\(net.id)", config: config)
        try #require(r.status == 0, "\(r.stdout)")
        let json = try #require(r.json)
        #expect(json["interfaces"]?.arrayValue?.map { $0["name"]?.stringValue ?? "" }.first == "dummy0")
        #expect(json["interfaces"]?.arrayValue?.count == 4)
        let ips = try #require(json["ips"]?.arrayValue)
        #expect(ips.count == 2)
        #expect(ips[0]["address"]?.stringValue == "10.239.99.77/32")
        #expect(ips[1]["interface"]?.intValue == 3)
        #expect(json["routes"]?.arrayValue?.first?["dst"]?.stringValue == "10.239.98.0/24")
        #expect(json["dns"]?["nameservers"]?.arrayValue == [.string("10.239.99.53")])
    }
}
}
