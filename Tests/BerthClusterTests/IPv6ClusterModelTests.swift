import Testing
import BerthJSON
@testable import BerthCluster
import BerthNet

@Suite("IPv6 clusters (pure)")
struct IPv6ClusterModelTests {
    @Test("an IPv6 range splits into /64 blocks by default, each with its key, read back")
    func blocks() throws {
        let c = try ClusterConfig(name: "pods", network: IPPrefix("fd42:1:2::/48")!,
                                  blockLength: ClusterConfig.defaultBlockLength(for: .v6), mode: .hostGateway)
        #expect(c.blockLength == 64 && c.blockCount == 65536)
        #expect(c.block(0).description == "fd42:1:2::/64")
        #expect(c.block(1).description == "fd42:1:2:1::/64")
        #expect(c.block(65535).description == "fd42:1:2:ffff::/64")
        for i in [0, 300, 65535] {
            #expect(c.isBlock(c.block(i)) && c.block(fromKey: c.blockKey(c.block(i))) == c.block(i))
        }
        #expect(try ClusterConfig(json: JSON.parse(c.json.serialized())) == c)
        // A declaration without a block length takes its family's default.
        let bare = try ClusterConfig(json: JSON.parse(#"{"name":"p","network":"fd42:1:2::/48","mode":"wireguard"}"#))
        #expect(bare.blockLength == 64 && bare.port == 51820)
        // Odd lengths: the bits between the range's and the block's hold the index.
        let odd = try ClusterConfig(name: "pods", network: IPPrefix("fd42:1:2::/61")!, blockLength: 70, mode: .hostGateway)
        #expect(odd.block(0).description == "fd42:1:2::/70" && odd.block(1).description == "fd42:1:2:0:400::/70")
        #expect(odd.block(511).description == "fd42:1:2:7:fc00::/70")
        // IPv4 as before.
        let v4 = try ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, blockLength: 26, mode: .hostGateway)
        #expect(v4.block(5).description == "10.244.1.64/26")
    }

    @Test("block candidates of a range of 65,536 blocks: this node's first, then every free one in order")
    func candidatesOfALargeRange() throws {
        let c = try ClusterConfig(name: "pods", network: IPPrefix("fd42:1:2::/48")!, blockLength: 64, mode: .hostGateway)
        let candidates = blockCandidates(config: c, node: "me", held: [c.block(0): "other", c.block(5): "me"], previous: c.block(9))
        #expect(candidates.count == 65535 && Set(candidates).count == 65535)
        #expect(Array(candidates.prefix(4)) == [c.block(5), c.block(9), c.block(1), c.block(2)])
        #expect(!candidates.contains(c.block(0)) && candidates.last == c.block(65535))
    }

    @Test("every mode takes an IPv6 range")
    func everyMode() throws {
        for mode in ClusterMode.allCases {
            #expect(try ClusterConfig(name: "pods", network: IPPrefix("fd42::/48")!, blockLength: 64, mode: mode).blockCount == 65536)
        }
    }

    @Test("IPv6 underlay addresses are checked as IPv4 ones are; host-gw needs the range's family")
    func underlayChecks() throws {
        let c = try ClusterConfig(name: "pods", network: IPPrefix("fd42:1:2::/48")!, blockLength: 64, mode: .hostGateway)
        let own = IPAddress("fd00:aa::10")!
        func problem(_ text: String, _ config: ClusterConfig? = nil) -> String? {
            underlayAddressProblem(IPAddress(text)!, config: config ?? c, own: own)
        }
        #expect(problem("fd00:aa::11") == nil)
        #expect(problem("::")?.contains("unspecified") == true)
        #expect(problem("::1")?.contains("loopback") == true)
        #expect(problem("ff02::1")?.contains("multicast") == true)
        #expect(problem("fe80::1")?.contains("link-local") == true)
        #expect(problem("::ffff:10.0.0.1")?.contains("IPv4-mapped") == true)
        #expect(problem("fd42:1:2:5::1")?.contains("inside the cluster range") == true)
        #expect(problem("fd00:aa::10")?.contains("this node's own") == true)
        #expect(problem("192.0.2.7")?.contains("is not an IPv6 address (host-gw routes a block via an address of its family)") == true)
        let wg = try ClusterConfig(name: "pods", network: IPPrefix("fd42:1:2::/48")!, blockLength: 64, mode: .wireguard)
        #expect(problem("192.0.2.7", wg)?.contains("not of the family of this node's underlay address") == true,
                "a peer reaches this node over the underlay's family")
        // A record with an IPv6 address reads back.
        let record = NodeRecord(node: "n1", address: IPAddress("fd00:aa::11")!, block: IPPrefix("fd42:1:2:1::/64")!, since: 1)
        #expect(NodeRecord(json: try JSON.parse(record.json.serialized())) == record)
    }
}
