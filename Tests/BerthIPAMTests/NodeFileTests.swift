import Testing
import BerthCNI
import BerthNet
@testable import BerthIPAM

@Suite("the node file berth-ipam reads (written by berth-agent)")
struct NodeFileTests {
    @Test("berth-ipam reads a node's block from its subnetFile: missing is 11 (50 for STATUS), unreadable is 7")
    func subnetFile() throws {
        let text = #"{"cniVersion":"1.1.0","name":"pods","type":"berth","ipam":{"type":"berth-ipam","ranges":[[{"subnetFile":"/run/berth/cluster/pods.json"}]]}}"#
        let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
        let ipam = try IPAMConfig(network: network, reader: reader, cniArgs: [],
                                  readFile: { _ in Array(#"{"block":"10.244.7.0/24"}"#.utf8) })
        #expect(ipam.rangeSets[0].ranges[0].subnet.description == "10.244.7.0/24")
        #expect(ipam.rangeSets[0].gatewayPrefix?.description == "10.244.7.1/24")
        do {
            _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in nil })
            Issue.record("a missing subnet file was accepted")
        } catch {
            #expect(error.code == 11 && error.msg.contains("no address block yet"), "\(error)")
            #expect(error.forStatus(.status).code == 50 && error.forStatus(.add).code == 11)
        }
        do {
            _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array("garbage".utf8) })
            Issue.record("an unreadable subnet file was accepted")
        } catch {
            #expect(error.code == 7 && error.msg.contains("subnetFile"), "\(error)")
        }
    }

    @Test("the node file's MTU reaches berth-ipam's config (the plugin takes it when its config sets none); a bad MTU is error 7")
    func nodeFileMTU() throws {
        let text = #"{"cniVersion":"1.1.0","name":"pods","type":"berth","ipam":{"type":"berth-ipam","ranges":[[{"subnetFile":"/run/berth/cluster/pods.json"}]]}}"#
        let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
        let file = NodeFile(cluster: "pods", network: IPPrefix("10.244.0.0/16"), block: IPPrefix("10.244.7.0/24")!, mtu: 1450)
        #expect(try NodeFile.parse(file.bytes).get() == file)
        let ipam = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in file.bytes })
        #expect(ipam.linkMTU == 1450)
        let plain = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array(#"{"block":"10.244.7.0/24"}"#.utf8) })
        #expect(plain.linkMTU == nil)
        for bad in [#"{"block":"10.244.7.0/24","mtu":"big"}"#, #"{"block":"10.244.7.0/24","mtu":20}"#] {
            do {
                _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array(bad.utf8) })
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.code == 7 && error.msg.contains("mtu"), "\(error)")
            }
        }
    }
}

@Suite("a dual-stack node file")
struct DualStackNodeFileTests {
    static let file = NodeFile(cluster: "pods", network: IPPrefix("10.244.0.0/16"), block: IPPrefix("10.244.7.0/24")!,
                               ipv6Network: IPPrefix("fd42::/48"), ipv6Block: IPPrefix("fd42:0:0:7::/64"), mtu: 1450)

    static func ipam(_ ranges: String, file: [UInt8] = DualStackNodeFileTests.file.bytes) throws(CNIError) -> IPAMConfig {
        let text = #"{"cniVersion":"1.1.0","name":"pods","type":"berth","ipam":{"type":"berth-ipam","ranges":\#(ranges)}}"#
        let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
        return try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in file })
    }

    @Test("it holds both blocks and reads back; an IPv6 block that is not one, or beside an IPv6 block, is refused")
    func roundTrip() throws {
        let file = DualStackNodeFileTests.file
        #expect(try NodeFile.parse(file.bytes).get() == file)
        #expect(file.block(family: .v6)?.description == "fd42:0:0:7::/64" && file.block(family: .v4)?.description == "10.244.7.0/24")
        for bad in [#"{"block":"10.244.7.0/24","ipv6Block":"10.1.0.0/24"}"#, #"{"block":"fd00::/64","ipv6Block":"fd01::/64"}"#,
                    #"{"block":"10.244.7.0/24","ipv6Block":7}"#] {
            guard case .failure(let problem) = NodeFile.parse(Array(bad.utf8)) else { Issue.record("accepted \(bad)"); continue }
            #expect(problem.description.contains("ipv6Block"), "\(problem)")
        }
    }

    @Test("subnetFamily picks a block: the IPv6 one of a dual-stack node, the first without it")
    func family() throws {
        let path = "/run/berth/cluster/pods.json"
        let both = try DualStackNodeFileTests.ipam(#"[[{"subnetFile":"\#(path)"}],[{"subnetFile":"\#(path)","subnetFamily":"ipv6"}]]"#)
        #expect(both.rangeSets.map(\.ranges[0].subnet.description) == ["10.244.7.0/24", "fd42:0:0:7::/64"])
        #expect(both.rangeSets[1].gatewayPrefix?.description == "fd42:0:0:7::1/64" && both.linkMTU == 1450)
        let v4 = try DualStackNodeFileTests.ipam(#"[[{"subnetFile":"\#(path)","subnetFamily":"ipv4"}]]"#)
        #expect(v4.rangeSets[0].ranges[0].subnet.description == "10.244.7.0/24")
        // An IPv6-only node's block is its IPv6 one.
        let only6 = NodeFile(cluster: "pods", network: nil, block: IPPrefix("fd42:0:0:9::/64")!, mtu: nil)
        #expect(try DualStackNodeFileTests.ipam(#"[[{"subnetFile":"\#(path)","subnetFamily":"ipv6"}]]"#, file: only6.bytes)
            .rangeSets[0].ranges[0].subnet.description == "fd42:0:0:9::/64")
    }

    @Test("a family the node holds no block of, an unknown family, and subnetFamily beside subnet are error 7 naming the field")
    func refusals() throws {
        let path = "/run/berth/cluster/pods.json"
        let single = NodeFile(cluster: "pods", network: nil, block: IPPrefix("10.244.7.0/24")!, mtu: nil)
        for (ranges, file, words) in [
            (#"[[{"subnetFile":"\#(path)","subnetFamily":"ipv6"}]]"#, single.bytes, "holds no ipv6 block"),
            (#"[[{"subnetFile":"\#(path)","subnetFamily":"inet6"}]]"#, DualStackNodeFileTests.file.bytes, "\"inet6\" is not \"ipv4\" or \"ipv6\""),
            (#"[[{"subnet":"10.9.0.0/24","subnetFamily":"ipv4"}]]"#, DualStackNodeFileTests.file.bytes, "goes with \"subnetFile\""),
        ] {
            do {
                _ = try DualStackNodeFileTests.ipam(ranges, file: file)
                Issue.record("accepted \(ranges)")
            } catch {
                #expect(error.code == 7 && error.msg.contains("ipam.ranges[0][0].subnetFamily") && error.msg.contains(words), "\(error)")
            }
        }
    }
}
