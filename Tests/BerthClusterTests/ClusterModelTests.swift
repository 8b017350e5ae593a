import Testing
import BerthCNI
import BerthJSON
import BerthIPAM
@testable import BerthCluster
import BerthNet

@Suite("cluster model (pure)")
struct ClusterModelTests {
    func config(_ network: String = "10.244.0.0/16", blockLength: Int = 24, mode: ClusterMode = .hostGateway) throws -> ClusterConfig {
        try ClusterConfig(name: "pods", network: IPPrefix(network)!, blockLength: blockLength, mode: mode)
    }

    @Test("a declaration prints and reads back the same, and its blocks tile the range")
    func configRoundTrip() throws {
        let c = try config(mode: .vxlan)
        #expect(try ClusterConfig(json: JSON.parse(c.json.serialized())) == c)
        #expect(c.blockCount == 256)
        #expect(c.block(0).description == "10.244.0.0/24" && c.block(255).description == "10.244.255.0/24")
        for i in [0, 7, 255] {
            #expect(c.block(fromKey: c.blockKey(c.block(i))) == c.block(i))
        }
        #expect(c.block(fromKey: c.blocksPrefix + "10.244.1.7-24") == nil, "not a block boundary")
        #expect(c.block(fromKey: c.blocksPrefix + "10.245.0.0-24") == nil, "outside the range")
    }

    @Test("impossible declarations are refused, naming what is wrong",
          arguments: [("10.244.0.0/24", 24, "must be longer"), ("10.244.0.0/24", 31, "at most /30"),
                      ("10.0.0.0/8", 28, "more than 65,536"), ("fd00::/48", 127, "at most /126"),
                      ("fd00::/32", 64, "more than 65,536")])
    func refused(network: String, blockLength: Int, says: String) {
        do {
            _ = try config(network, blockLength: blockLength)
            Issue.record("accepted \(network) with /\(blockLength) blocks")
        } catch {
            #expect("\(error)".contains(says), "\(error)")
        }
    }

    @Test("a node record reads back; corrupt ones are not records",
          arguments: [#"{"node":"n1","address":"10.0.0.1"}"#, #"{"node":"","address":"10.0.0.1","block":"10.244.1.0/24"}"#,
                      #"{"node":"n1","address":"fd00::1::2","block":"10.244.1.0/24"}"#,
                      #"{"node":"n1","address":"10.0.0.1","block":"10.244.1.0/24","vtepMAC":"zz"}"#, #"[1]"#])
    func corruptRecords(text: String) throws {
        #expect(NodeRecord(json: try JSON.parse(text)) == nil)
        let good = NodeRecord(node: "n1", address: IPAddress("10.0.0.1")!, block: IPPrefix("10.244.1.0/24")!,
                              vtepMAC: "02:00:00:00:00:01", since: 5)
        #expect(NodeRecord(json: try JSON.parse(good.json.serialized())) == good)
        #expect(good.vtepAddress.description == "10.244.1.0")
    }

    @Test("a node tries the block it holds first, then the one it last wrote, then free blocks in order")
    func candidates() throws {
        let c = try config("10.244.0.0/22")
        let b = (0..<4).map(c.block)
        #expect(blockCandidates(config: c, node: "n1", held: [:], previous: nil) == b)
        #expect(blockCandidates(config: c, node: "n1", held: [b[2]: "n1", b[0]: "n2"], previous: nil) == [b[2], b[1], b[3]])
        #expect(blockCandidates(config: c, node: "n1", held: [b[0]: "n2"], previous: b[3]) == [b[3], b[1], b[2]])
        #expect(blockCandidates(config: c, node: "n1", held: [b[3]: "n2"], previous: b[3]) == [b[0], b[1], b[2]],
                "a previous block another node holds now is not tried")
        let full = Dictionary(uniqueKeysWithValues: b.map { ($0, "other") })
        #expect(blockCandidates(config: c, node: "n1", held: full, previous: b[1]).isEmpty)
    }

    @Test("the watch stream is split into whole messages whatever the chunks")
    func streamReader() throws {
        let messages = [#"{"result":{"events":[{"kv":{"key":"YQ=="}}]}}"#, #"{"result":{"x":"a } in a string {"}}"#, "{}"]
        let text = Array(messages.joined(separator: "\n").utf8)
        for cut in [1, 7, 13, 40, text.count] {
            var reader = JSONStreamReader()
            var got: [JSON] = []
            var offset = 0
            while offset < text.count {
                let end = min(offset + cut, text.count)
                got += reader.feed(Array(text[offset..<end]))
                offset = end
            }
            #expect(got == (try messages.map { try JSON.parse($0) }), "chunks of \(cut)")
        }
    }

    func record(_ node: String, _ address: String, _ block: String, mac: String? = nil) -> KeyedRecord {
        KeyedRecord(key: "/berth/clusters/pods/nodes/\(node)",
                    record: NodeRecord(node: node, address: IPAddress(address)!, block: IPPrefix(block)!, vtepMAC: mac, since: 0))
    }

    @Test("underlay addresses that cannot be a node's are refused, naming why",
          arguments: [("127.0.0.1", "loopback"), ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"),
                      ("169.254.1.1", "link-local"), ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"),
                      ("10.244.9.9", "inside the cluster range"), ("192.168.1.10", "this node's own")])
    func badUnderlay(address: String, says: String) throws {
        let problem = underlayAddressProblem(IPAddress(address)!, config: try config(), own: IPAddress("192.168.1.10"))
        #expect(problem?.contains(says) == true, "\(problem ?? "accepted")")
    }

    @Test("a record counts only when its block key names its node, it is not this node's block, and (vxlan) its MAC is unicast and its own")
    func acceptedRecords() throws {
        let c = try config(mode: .vxlan)
        let owners: [IPPrefix: String] = [IPPrefix("10.244.1.0/24")!: "me", IPPrefix("10.244.2.0/24")!: "n2",
                                          IPPrefix("10.244.3.0/24")!: "n3", IPPrefix("10.244.5.0/24")!: "n5",
                                          IPPrefix("10.244.6.0/24")!: "n6", IPPrefix("10.244.7.0/24")!: "n7"]
        let records = [
            record("n2", "192.168.1.2", "10.244.2.0/24", mac: "0a:00:00:00:00:02"),
            record("evil", "192.168.1.66", "10.244.2.0/24", mac: "0a:00:00:00:00:66"),   // n2's block
            record("thief", "192.168.1.67", "10.244.1.0/24", mac: "0a:00:00:00:00:67"),  // this node's block
            record("n4", "192.168.1.4", "10.244.4.0/24", mac: "0a:00:00:00:00:04"),      // no block key
            record("n3", "127.0.0.1", "10.244.3.0/24", mac: "0a:00:00:00:00:03"),        // loopback
            record("n5", "192.168.1.5", "10.244.5.0/24", mac: "01:00:5e:00:00:fb"),      // multicast MAC
            record("n6", "192.168.1.6", "10.244.6.0/24", mac: "0a:00:00:00:00:02"),      // n2's MAC
            record("n7", "192.168.1.7", "10.244.7.0/24"),                                // no MAC
            KeyedRecord(key: "/berth/clusters/pods/nodes/other", record: record("n2", "192.168.1.2", "10.244.2.0/24").record),
        ]
        let (peers, rejected) = acceptedPeers(records, owners: owners, config: c, node: "me", ownBlock: IPPrefix("10.244.1.0/24"),
                                              ownAddress: IPAddress("192.168.1.1"), ownVTEPMAC: "0a:00:00:00:00:01")
        #expect(peers.map(\.record.node) == ["n2"])
        let reasons = Dictionary(uniqueKeysWithValues: rejected.map { ($0.key.split(separator: "/").last.map(String.init) ?? "", $0.reason) })
        #expect(reasons["evil"]?.contains("held by node n2") == true, "\(reasons)")
        #expect(reasons["thief"]?.contains("this node's own block") == true, "\(reasons)")
        #expect(reasons["n4"]?.contains("no block key") == true, "\(reasons)")
        #expect(reasons["n3"]?.contains("loopback") == true, "\(reasons)")
        #expect(reasons["n5"]?.contains("not a unicast MAC") == true, "\(reasons)")
        #expect(reasons["n6"]?.contains("node n2's too") == true, "\(reasons)")
        #expect(reasons["n7"]?.contains("no VTEP MAC") == true, "\(reasons)")
        #expect(reasons["other"]?.contains("does not name node") == true, "\(reasons)")
    }

    @Test("values from etcd are logged escaped and cut short")
    func escaping() {
        let garbage = Array("\u{1b}[31mred\n".utf8) + [0xFF, 0x00] + Array(repeating: UInt8(ascii: "x"), count: 1 << 20)
        let line = escapedForLog(garbage)
        #expect(line.count < 220, "\(line.count) characters")
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "\(line)")
        #expect(line.hasPrefix("\\u001B[31mred\\n\\uFFFD\\u0000") && line.hasSuffix("(1048587 bytes)"), "\(line)")
        #expect(escapedForLog(Array("n1".utf8)) == "n1")
    }
}
