import Testing
import BerthJSON
@testable import BerthCluster
import BerthNet

@Suite("dual-stack clusters (pure)")
struct DualStackModelTests {
    static func config(_ mode: ClusterMode = .vxlan) throws -> ClusterConfig {
        try ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, blockLength: 24, mode: mode,
                          ipv6Network: IPPrefix("fd42:1:2::/48")!)
    }

    @Test("a dual-stack declaration: an IPv4 range and an IPv6 one (/64 blocks by default), read back; blocks of either are blocks")
    func declaration() throws {
        let c = try DualStackModelTests.config()
        #expect(c.isDualStack && c.ranges.count == 2 && c.ipv6BlockLength == 64)
        #expect(try ClusterConfig(json: JSON.parse(c.json.serialized())) == c)
        let b6 = try #require(c.secondary).block(3)
        #expect(b6.description == "fd42:1:2:3::/64" && c.isBlock(b6) && c.isBlock(c.block(3)))
        #expect(c.block(fromKey: c.blockKey(b6)) == b6 && c.range(of: b6) == c.secondary)
        #expect(!c.isBlock(IPPrefix("fd42:1:2:3::/80")!) && !c.isBlock(IPPrefix("fd43::/64")!))
        // A single-stack declaration is written as before: no IPv6 keys.
        let single = try ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!)
        #expect(single.json["ipv6Network"] == nil && !single.isDualStack && single.ranges.count == 1)
    }

    @Test("what a dual-stack declaration refuses, each said")
    func refusals() throws {
        func refusal(_ body: () throws -> ClusterConfig) -> String {
            do { _ = try body(); return "accepted" } catch { return "\(error)" }
        }
        #expect(refusal { try ClusterConfig(name: "p", network: IPPrefix("fd00::/48")!, blockLength: 64, ipv6Network: IPPrefix("fd01::/48")!) }
            .contains("must be IPv4"))
        #expect(refusal { try ClusterConfig(name: "p", network: IPPrefix("10.0.0.0/16")!, ipv6Network: IPPrefix("10.1.0.0/16")!) }
            .contains("is not an IPv6 prefix"))
        #expect(refusal { try ClusterConfig(name: "p", network: IPPrefix("10.0.0.0/16")!, ipv6Network: IPPrefix("fd00::/48")!, ipv6BlockLength: 40) }
            .contains("IPv6 block length /40"))
        #expect(refusal { try ClusterConfig(name: "p", network: IPPrefix("10.0.0.0/16")!, ipv6Network: IPPrefix("fd00::/32")!, ipv6BlockLength: 64) }
            .contains("more than 65,536 blocks"))
        #expect(refusal { try ClusterConfig(json: JSON.parse(#"{"name":"p","network":"10.0.0.0/16","mode":"vxlan","ipv6Network":"fd00::/480"}"#)) }
            .contains("ipv6Network \"fd00::/480\" is not a prefix"))
    }

    @Test("block candidates per range: the IPv6 search sees only IPv6 blocks and this node's previous one")
    func candidates() throws {
        let c = try DualStackModelTests.config()
        let six = try #require(c.secondary)
        let held = [c.block(0): "me", six.block(0): "other", six.block(7): "me"]
        let four = blockCandidates(config: c, node: "me", held: held, previous: nil)
        #expect(four.first == c.block(0) && four.allSatisfy { $0.family == .v4 } && four.count == 256)
        let sixes = blockCandidates(config: c, node: "me", held: held, previous: six.block(9), range: six)
        #expect(Array(sixes.prefix(3)) == [six.block(7), six.block(9), six.block(1)] && sixes.allSatisfy { $0.family == .v6 })
        #expect(!sixes.contains(six.block(0)) && sixes.count == 65535)
    }

    static func record(_ node: String, _ i: Int, _ c: ClusterConfig, address6: Bool = false) -> KeyedRecord {
        KeyedRecord(key: c.nodeKey(node), record: NodeRecord(node: node, address: IPAddress("192.168.50.\(10 + i)")!, block: c.block(i),
                                                             ipv6Block: c.secondary!.block(i),
                                                             ipv6Address: address6 ? IPAddress("fd00:50::\(10 + i)") : nil,
                                                             vtepMAC: "02:00:00:00:00:0\(i)", since: 1))
    }

    @Test("a dual-stack peer counts only with an IPv6 block its block key names, not this node's; host-gw also needs its IPv6 address")
    func peers() throws {
        let c = try DualStackModelTests.config()
        let six = try #require(c.secondary)
        var owners: [IPPrefix: String] = [:]
        for i in 1...3 { owners[c.block(i)] = "n\(i)"; owners[six.block(i)] = "n\(i)" }
        func judge(_ records: [KeyedRecord], config: ClusterConfig? = nil, owners o: [IPPrefix: String]? = nil) -> (Set<String>, [String]) {
            let (peers, rejected) = acceptedPeers(records, owners: o ?? owners, config: config ?? c, node: "n0", ownBlock: c.block(0),
                                                  ownAddress: IPAddress("192.168.50.10"), ownVTEPMAC: "02:00:00:00:00:00",
                                                  ownIPv6Block: six.block(0), ownIPv6Address: IPAddress("fd00:50::10"))
            return (Set(peers.map(\.record.node)), rejected.map(\.reason))
        }
        let good = DualStackModelTests.record("n1", 1, c)
        #expect(judge([good]).0 == ["n1"])
        var missing = DualStackModelTests.record("n2", 2, c)
        missing.record.ipv6Block = nil
        #expect(judge([missing]).1 == ["it has no IPv6 block (cluster pods is dual-stack)"])
        var unkeyed = DualStackModelTests.record("n3", 3, c)
        unkeyed.record.ipv6Block = six.block(4)
        #expect(judge([unkeyed]).1 == ["no block key claims fd42:1:2:4::/64 for it"])
        var stolen = DualStackModelTests.record("n3", 3, c)
        stolen.record.ipv6Block = six.block(1)
        #expect(judge([stolen]).1 == ["block fd42:1:2:1::/64 is held by node n1"])
        var mine = DualStackModelTests.record("n3", 3, c)
        mine.record.ipv6Block = six.block(0)
        #expect(judge([mine]).1 == ["it claims fd42:1:2::/64, this node's own block"])
        var wrongRange = DualStackModelTests.record("n3", 3, c)
        wrongRange.record.ipv6Block = IPPrefix("fd42:1:2:3::/80")
        #expect(judge([wrongRange]).1 == ["fd42:1:2:3::/80 is not a /64 block of fd42:1:2::/48"])
        // A single-stack cluster takes no record that claims an IPv6 block.
        let single = try ClusterConfig(name: "pods", network: IPPrefix("10.244.0.0/16")!, mode: .vxlan)
        #expect(judge([good], config: single).1 == ["it claims the IPv6 block fd42:1:2:1::/64, but cluster pods has no IPv6 range"])
        // host-gw routes the IPv6 block via the peer's IPv6 underlay address: required, and checked.
        let hostGW = try DualStackModelTests.config(.hostGateway)
        #expect(judge([good], config: hostGW).1 == ["it has no IPv6 underlay address (host-gw routes its IPv6 block via one)"])
        #expect(judge([DualStackModelTests.record("n1", 1, c, address6: true)], config: hostGW).0 == ["n1"])
        for (bad, reason) in [("192.168.50.99", "is not an IPv6 address"), ("fd42:1:2:1::5", "inside the cluster range fd42:1:2::/48"),
                              ("fd00:50::10", "this node's own address"), ("fe80::1", "link-local")] {
            var r = DualStackModelTests.record("n1", 1, c, address6: true)
            r.record.ipv6Address = IPAddress(bad)
            #expect(judge([r], config: hostGW).1.first?.contains(reason) == true, "\(bad)")
        }
    }

    @Test("a dual-stack record reads back; an unreadable IPv6 block or address makes it no record")
    func records() throws {
        let r = DualStackModelTests.record("n1", 1, try DualStackModelTests.config(), address6: true).record
        #expect(NodeRecord(json: try JSON.parse(r.json.serialized())) == r && r.blocks.count == 2)
        var o = r.json.objectValue!
        o["ipv6Block"] = .string("fd42::/999")
        #expect(NodeRecord(json: .object(o)) == nil)
        o = r.json.objectValue!
        o["ipv6Address"] = .int(6)
        #expect(NodeRecord(json: .object(o)) == nil)
    }
}
