import Testing
import BerthCNI
@testable import BerthFirewall

@Suite("rule comments")
struct RuleCommentTests {
    @Test("rule comments fit nftables' 128 bytes for every name length, and stay readable when they fit",
          arguments: [(8, 8), (40, 76), (40, 77), (48, 8), (49, 8), (60, 64), (255, 255), (1000, 1000)])
    func commentLimits(network: Int, containerID: Int) {
        let rules = AttachmentRules(CNIAttachmentKey(network: String(repeating: "n", count: network),
                                                     containerID: String(repeating: "c", count: containerID), ifname: "eth0"))
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
        let a = AttachmentRules(CNIAttachmentKey(network: "n", containerID: id + "1", ifname: "eth0")).comment
        let b = AttachmentRules(CNIAttachmentKey(network: "n", containerID: id + "2", ifname: "eth0")).comment
        let c = AttachmentRules(CNIAttachmentKey(network: "n", containerID: id + "1", ifname: "eth1")).comment
        #expect(Set([a, b, c]).count == 3)
    }
}
