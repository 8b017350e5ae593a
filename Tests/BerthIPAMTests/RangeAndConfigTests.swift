import Testing
@testable import BerthCNI
@testable import BerthIPAM
import BerthNet

func ipamConfig(_ ipam: String, runtime: String = "", args: [(key: String, value: String)] = [],
                name: String = "net1") throws(CNIError) -> IPAMConfig {
    let text = #"{"cniVersion":"1.1.0","name":"\#(name)","type":"berth","ipam":\#(ipam)\#(runtime)}"#
    let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
    return try IPAMConfig(network: network, reader: reader, cniArgs: args)
}

@Suite("Address ranges")
struct RangeTests {
    @Test("defaults follow host-local: gateway and start at .1, end before the broadcast")
    func v4Defaults() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.1.2.0/24"}"#)
        let r = c.rangeSets[0].ranges[0]
        #expect(r.gateway?.description == "10.1.2.1")
        #expect(r.start.description == "10.1.2.1")
        #expect(r.end.description == "10.1.2.254")
        #expect(!r.isAllocatable(IPAddress("10.1.2.1")!))
        #expect(r.isAllocatable(IPAddress("10.1.2.254")!))
        #expect(!r.isAllocatable(IPAddress("10.1.2.255")!))
    }

    @Test("IPv6 ranges run to the last address of the subnet")
    func v6Defaults() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","ranges":[[{"subnet":"fd00:1::/64"}]]}"#)
        let r = c.rangeSets[0].ranges[0]
        #expect(r.start.description == "fd00:1::1")
        #expect(r.end.description == "fd00:1::ffff:ffff:ffff:ffff")
    }

    @Test("a subnet with host bits set is masked")
    func masked() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.1.2.77/24"}"#)
        #expect(c.rangeSets[0].ranges[0].subnet.description == "10.1.2.0/24")
    }

    @Test("a range set's gateway is known before allocation only when its ranges agree on subnet and gateway")
    func gatewayPrefix() throws {
        let one = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.9.0.0/24"}"#)
        #expect(one.rangeSets.map { $0.gatewayPrefix?.description } == ["10.9.0.1/24"])
        let same = try ipamConfig(#"{"type":"berth-ipam","ranges":[[{"subnet":"10.9.0.0/24","rangeEnd":"10.9.0.50"},{"subnet":"10.9.0.0/24","rangeStart":"10.9.0.100"}]]}"#)
        #expect(same.rangeSets.first?.gatewayPrefix?.description == "10.9.0.1/24")
        let mixed = try ipamConfig(#"{"type":"berth-ipam","ranges":[[{"subnet":"10.9.0.0/24"},{"subnet":"10.9.1.0/24"}]]}"#)
        #expect(mixed.rangeSets.first?.gatewayPrefix == nil)
    }

    @Test("candidates start after the cursor, skip the gateway and wrap around once")
    func roundRobin() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.1.2.0/29"}"#)
        let set = c.rangeSets[0]
        #expect(Array(set.candidates(after: nil)).map(\.description)
                == ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"])
        #expect(Array(set.candidates(after: IPAddress("10.1.2.4"))).map(\.description)
                == ["10.1.2.5", "10.1.2.6", "10.1.2.2", "10.1.2.3", "10.1.2.4"])
        #expect(Array(set.candidates(after: IPAddress("10.1.2.6"))).map(\.description)
                == ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"])
        // A cursor outside the ranges (the config changed) starts from the beginning.
        #expect(Array(set.candidates(after: IPAddress("10.9.9.9"))).first?.description == "10.1.2.2")
    }

    @Test("a set of several ranges is walked range after range")
    func severalRanges() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","ranges":[[{"subnet":"10.1.2.0/24","rangeStart":"10.1.2.10","rangeEnd":"10.1.2.11"},{"subnet":"10.1.3.0/24","rangeStart":"10.1.3.20","rangeEnd":"10.1.3.21"}]]}"#)
        #expect(Array(c.rangeSets[0].candidates(after: IPAddress("10.1.2.11"))).map(\.description)
                == ["10.1.3.20", "10.1.3.21", "10.1.2.10", "10.1.2.11"])
    }

    @Test("a huge IPv6 range is walked lazily and carries across bytes")
    func hugeV6() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","ranges":[[{"subnet":"fd00::/64"}]]}"#)
        var it = c.rangeSets[0].candidates(after: IPAddress("fd00::ffff"))
        #expect(it.next()?.description == "fd00::1:0")
        var end = c.rangeSets[0].candidates(after: IPAddress("fd00::ffff:ffff:ffff:fffe"))
        #expect(end.next()?.description == "fd00::ffff:ffff:ffff:ffff")
        #expect(end.next()?.description == "fd00::2")  // wrapped, skipping the network address and gateway
    }

    @Test("IPv4 edges: the end of the address space")
    func v4Edges() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","subnet":"255.255.255.0/30"}"#)
        #expect(Array(c.rangeSets[0].candidates(after: nil)).map(\.description) == ["255.255.255.2"])
    }
}

@Suite("IPAM config validation")
struct IPAMConfigValidationTests {
    @Test("invalid configs are error 7 naming the field",
          arguments: [
            (#"{"type":"berth-ipam"}"#, "ipam.ranges"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/31"}"#, "ipam.subnet"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.1/32"}"#, "ipam.subnet"),
            (#"{"type":"berth-ipam","ranges":[[{"subnet":"fd00::/127"}]]}"#, "ipam.ranges[0][0].subnet"),
            (#"{"type":"berth-ipam","ranges":[[{"subnet":"fd00::1/128"}]]}"#, "ipam.ranges[0][0].subnet"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","gateway":"10.0.1.1"}"#, "ipam.gateway"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","rangeStart":"10.0.0.50","rangeEnd":"10.0.0.40"}"#, "ipam.rangeStart"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","rangeEnd":"10.0.0.255"}"#, "ipam.rangeEnd"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","rangeStart":"10.0.0.0"}"#, "ipam.rangeStart"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","rangeStart":"10.0.5.3"}"#, "ipam.rangeStart"),
            (#"{"type":"berth-ipam","subnet":"nonsense"}"#, "ipam.subnet"),
            (#"{"type":"berth-ipam","ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"10.0.4.0/24"}]]}"#, "ipam.ranges[1][0].subnet"),
            (#"{"type":"berth-ipam","ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}"#, "ipam.ranges[0][1].subnet"),
            (#"{"type":"berth-ipam","ranges":[[]]}"#, "ipam.ranges[0]"),
            (#"{"type":"berth-ipam","ranges":[{"subnet":"10.0.0.0/24"}]}"#, "ipam.ranges[0]"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","dataDir":"relative/dir"}"#, "ipam.dataDir"),
            (#"{"type":"berth-ipam","subnet":"10.0.0.0/24","routes":[{"gw":"10.0.0.1"}]}"#, "ipam.routes[0].dst"),
          ])
    func invalid(ipam: String, field: String) {
        do {
            _ = try ipamConfig(ipam)
            Issue.record("accepted \(ipam)")
        } catch {
            #expect(error.code == 7, "\(error)")
            #expect(error.msg.contains("\"\(field)\""), "\(error.msg)")
        }
    }

    @Test("a requested address outside every range is an error 7 naming it")
    func requestedOutside() {
        do {
            _ = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.0.0.0/24"}"#, runtime: #","runtimeConfig":{"ips":["10.9.0.5/24"]}"#)
            Issue.record("accepted")
        } catch {
            #expect(error.code == 7)
            #expect(error.msg.contains("10.9.0.5"))
        }
    }

    @Test("requested addresses come from runtimeConfig.ips, args.cni.ips and CNI_ARGS IP=")
    func requested() throws {
        let ranges = #"{"type":"berth-ipam","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#
        #expect(try ipamConfig(ranges, runtime: #","runtimeConfig":{"ips":["10.0.0.7/24"]}"#).requested.map(\.description) == ["10.0.0.7"])
        #expect(try ipamConfig(ranges, runtime: #","args":{"cni":{"ips":["fd00::9"]}}"#).requested.map(\.description) == ["fd00::9"])
        #expect(try ipamConfig(ranges, args: [("IP", "10.0.0.8,fd00::8")]).requested.map(\.description) == ["10.0.0.8", "fd00::8"])
        #expect(throws: CNIError.self) { try ipamConfig(ranges, args: [("IP", "10.0.0.8,10.0.0.9")]) }
        #expect(throws: CNIError.self) { try ipamConfig(ranges, args: [("IP", "not-an-ip")]) }
    }

    @Test("runtimeConfig.ipRanges replaces the configured ranges; legacy subnet comes first")
    func rangeSources() throws {
        let c = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.0.0.0/24"}"#,
                               runtime: #","runtimeConfig":{"ipRanges":[[{"subnet":"10.7.0.0/24"}]]}"#)
        #expect(c.rangeSets.map { $0.ranges[0].subnet.description } == ["10.7.0.0/24"])
        let legacy = try ipamConfig(#"{"type":"berth-ipam","subnet":"10.0.0.0/24","ranges":[[{"subnet":"fd00::/64"}]]}"#)
        #expect(legacy.rangeSets.map { $0.ranges[0].subnet.description } == ["10.0.0.0/24", "fd00::/64"])
        #expect(legacy.dataDir == "/var/lib/berth/ipam")
    }

    @Test("resolv.conf text becomes the result's DNS")
    func resolvConf() {
        let dns = ResolvConf.parse("# c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\n")
        #expect(dns == CNIResult.DNS(nameservers: ["10.0.0.53", "fd00::53"], domain: "example.test",
                                      search: ["a.test", "b.test"], options: ["ndots:2", "edns0"]))
    }
}
