import Testing
@testable import BerthCNI
@testable import BerthFirewall
@testable import BerthIPAM
import BerthNetlink
import BerthNet

@Suite("names Berth derives: digests, comments, file names")
struct DerivedNameTests {
    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256Vectors() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("a name at the limit is kept; one byte past it becomes a prefix, '~' and 16 hex digits, exactly at the limit")
    func fitAtAndPastTheLimit() {
        let at = String(repeating: "a", count: 48)
        #expect(DerivedName.fit(at, limit: 48) == at)
        let past = at + "b"
        let short = DerivedName.fit(past, limit: 48)
        #expect(short.utf8.count == 48)
        #expect(short.hasPrefix(String(repeating: "a", count: 31) + "~"))
        #expect(short != DerivedName.fit(at + "c", limit: 48), "two long names that share the prefix must differ")
        #expect(DerivedName.fit(past, limit: 48) == short, "the same name must always give the same result")
    }

    @Test("a shortened name never splits a multi-byte character")
    func fitKeepsCharactersWhole() {
        let name = String(repeating: "ä", count: 40)  // 80 bytes
        let short = DerivedName.fit(name, limit: 40)
        #expect(short.utf8.count <= 40)
        #expect(short.hasPrefix(String(repeating: "ä", count: 11) + "~"))
    }

    @Test("rule comments fit nftables' 128 bytes for every name length, and stay readable when they fit",
          arguments: [(8, 8), (40, 76), (40, 77), (48, 8), (49, 8), (60, 64), (255, 255), (1000, 1000)])
    func commentLimits(network: Int, containerID: Int) {
        let rules = AttachmentRules(network: String(repeating: "n", count: network),
                                    containerID: String(repeating: "c", count: containerID), ifname: "eth0")
        let readable = "berth:\(rules.network):\(rules.containerID):eth0"
        #expect(rules.comment.utf8.count <= AttachmentRules.commentLimit)
        if network <= 48 && readable.utf8.count <= 128 {
            #expect(rules.comment == readable)
        } else {
            #expect(rules.comment != readable && rules.comment.contains("~"))
        }
        #expect(rules.comment.hasPrefix(AttachmentRules.prefix(network: rules.network)))
    }

    @Test("comments of two attachments differ even when their names share a long prefix")
    func commentsDistinct() {
        let id = String(repeating: "f", count: 200)
        let a = AttachmentRules(network: "n", containerID: id + "1", ifname: "eth0").comment
        let b = AttachmentRules(network: "n", containerID: id + "2", ifname: "eth0").comment
        let c = AttachmentRules(network: "n", containerID: id + "1", ifname: "eth1").comment
        #expect(Set([a, b, c]).count == 3)
    }

    @Test("record file names: 255 bytes kept and read back from the name, 256 shortened", arguments: [250, 251, 1000])
    func recordFileNames(containerIDLength: Int) {
        let key = AttachmentKey(containerID: String(repeating: "c", count: containerIDLength), ifname: "eth0")
        #expect(key.fileName.utf8.count <= 255)
        if containerIDLength + 5 <= 255 {
            #expect(AttachmentKey(fileName: key.fileName) == key)
        } else {
            #expect(AttachmentKey(fileName: key.fileName) == nil, "a shortened name is read from the record")
        }
        #expect(AllocationStore.directoryName(network: String(repeating: "n", count: 256)).utf8.count == 255)
        #expect(AllocationStore.directoryName(network: String(repeating: "n", count: 255)) == String(repeating: "n", count: 255))
    }

    @Test("a netlink error without a code names the operation only, never 'Success'")
    func netlinkErrorWithoutCode() {
        #expect(NetlinkError("look up x", code: 0).description == "look up x")
        #expect(NetlinkError.notFound("look up y").description.hasPrefix("look up y: "))
    }

    @Test("interface names with '%' are refused: the kernel reads them as templates")
    func percentInInterfaceName() {
        #expect(CNIEnvironment.interfaceNameProblem("eth%d") != nil)
        #expect(CNIEnvironment.interfaceNameProblem("ä+b{c}d&e\"f") == nil)
    }
}
