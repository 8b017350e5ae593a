import Foundation
import Testing
import BerthCNI
import BerthNet
@testable import BerthEndpoints

@Suite("the node's endpoint records")
struct EndpointStoreTests {
    @Test("written, read back, replaced, removed; GC keeps only the valid ones of its network; foreign files are skipped")
    func lifecycle() throws {
        let dir = NSTemporaryDirectory() + "berthtest-endpoints-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = EndpointStore(directory: dir)
        #expect(try store.all().isEmpty, "no directory yet")
        func endpoint(_ network: String, _ id: String, _ ip: String, labels: [String: String] = [:]) -> Endpoint {
            Endpoint(attachment: CNIAttachmentKey(network: network, containerID: id, ifname: "eth0"),
                     identity: PodIdentity(namespace: "x", name: id, labels: labels), addresses: [IPAddress(ip)!])
        }
        try store.write(endpoint("n1", "a", "10.0.0.2", labels: ["app": "web"]))
        try store.write(endpoint("n1", "b", "10.0.0.3"))
        try store.write(endpoint("n2", "c", "10.1.0.2"))
        #expect(try store.all().map(\.identity.name) == ["a", "b", "c"])
        #expect(try store.all().first?.identity.labels == ["app": "web"])
        try store.write(endpoint("n1", "a", "10.0.0.9"))
        #expect(try store.all().first?.addresses == [IPAddress("10.0.0.9")!], "replaced")
        try "not json".write(toFile: "\(dir)/junk", atomically: false, encoding: .utf8)
        #expect(try store.all().count == 3)
        try store.removeAll(network: "n1", except: [(containerID: "b", ifname: "eth0")])
        #expect(try store.all().map(\.identity.name) == ["b", "c"])
        try store.remove(CNIAttachmentKey(network: "n1", containerID: "b", ifname: "eth0"))
        try store.remove(CNIAttachmentKey(network: "n1", containerID: "b", ifname: "eth0"))
        #expect(try store.all().map(\.identity.name) == ["c"])
    }
}
