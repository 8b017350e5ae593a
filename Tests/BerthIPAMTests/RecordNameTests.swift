import Testing
@testable import BerthIPAM

@Suite("IPAM store names")
struct RecordNameTests {
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
}
