import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

@Suite("the plugin records who a pod is", .ownThreads, .enabled(if: runningAsRoot, "needs root for namespaces and links"))
struct PodIdentityEndToEndTests {
    func record(_ net: TestNetwork, _ id: String) -> JSON? {
        let name = CNIAttachmentKey(network: net.name, containerID: id, ifname: "eth0").fileName
        return FileManager.default.contents(atPath: "/run/berth/endpoints/\(name)").flatMap { try? JSON.parse(Array($0)) }
    }

    @Test("ADD records namespace, name, labels and addresses (CNI_ARGS as kubelet passes them); the result keeps its shape; DEL forgets")
    func recorded() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let config = net.config(ipam: net.berthIPAM, extra: #","args":{"cni":{"labels":{"app":"web"}}}"#)
        let ns = net.makeNamespace()
        let id = "pi-\(net.id)"
        let add = net.run("ADD", netns: ns, containerID: id, config: config,
                          args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=\(id)")
        try #require(add.status == 0, "\(add.stdout)")
        // The same ADD without an identity gives a result of the same shape.
        let plain = try net.addContainer(config: net.config(ipam: net.berthIPAM), id: "pp-\(net.id)")
        #expect(Set(add.json?.objectValue?.keys ?? []) == Set(plain.add.json?.objectValue?.keys ?? []), "\(add.stdout)")
        #expect(add.json?["interfaces"]?.arrayValue?.count == plain.add.json?["interfaces"]?.arrayValue?.count)
        let r = try #require(record(net, id))
        #expect(r["namespace"]?.stringValue == "shop" && r["name"]?.stringValue == "web-0" && r["labels"]?["app"]?.stringValue == "web")
        #expect(r["addresses"]?.arrayValue?.first?.stringValue == firstAddress(add.json))
        #expect(net.run("DEL", netns: ns, containerID: id, config: config).status == 0)
        #expect(record(net, id) == nil)
    }

    @Test("a bad label or namespace is refused before anything is made")
    func refused() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let bad = net.run("ADD", netns: ns, containerID: "pb-\(net.id)",
                          config: net.config(ipam: net.berthIPAM, extra: #","args":{"cni":{"labels":{"app":"-web-"}}}"#))
        #expect(bad.status != 0 && bad.errorCode == 7 && bad.message.contains("args.cni.labels.app"), "\(bad.stdout)")
        let badNamespace = net.run("ADD", netns: ns, containerID: "pb-\(net.id)", config: net.config(ipam: net.berthIPAM),
                                   args: "K8S_POD_NAMESPACE=Not.A.Name")  // folded case and "_" pass (podman), a "." does not
        #expect(badNamespace.status != 0 && badNamespace.errorCode == 4 && badNamespace.message.contains("K8S_POD_NAMESPACE"), "\(badNamespace.stdout)")
        #expect(net.portsOfBridge().isEmpty && record(net, "pb-\(net.id)") == nil)
        #expect(shell(["ip", "link", "show", net.bridge]).status != 0, "no bridge was made")
    }
}
