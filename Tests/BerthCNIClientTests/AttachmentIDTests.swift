import Foundation
import Testing
@testable import BerthCNIClient

@Suite("attachment container IDs")
struct AttachmentIDTests {
    @Test("a namespace name or path becomes a valid CNI container ID")
    func ids() {
        #expect(Attachments.containerID(forNamespace: "/run/netns/web") == "netns-web")
        #expect(Attachments.containerID(forNamespace: "/proc/123/ns/net") == "netns-proc-123-ns-net")
        #expect(Attachments.containerID(forNamespace: "/run/netns/a b:c") == "netns-a-b-c")
    }
}
