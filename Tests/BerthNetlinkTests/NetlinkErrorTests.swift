import Testing
@testable import BerthNetlink

@Suite("netlink errors")
struct NetlinkErrorTests {
    @Test("a netlink error without a code names the operation only, never 'Success'")
    func netlinkErrorWithoutCode() {
        #expect(NetlinkError("look up x", code: 0).description == "look up x")
        #expect(NetlinkError.notFound("look up y").description.hasPrefix("look up y: "))
    }
}
