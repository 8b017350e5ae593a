import Testing
import BerthJSON
@testable import BerthCNI

@Suite("a pod's identity: namespace, name and labels")
struct PodIdentityTests {
    func reader(_ text: String) throws -> FieldReader { FieldReader(try JSON.parse(text).objectValue!) }

    @Test("args.cni over CNI_ARGS, default namespace and the container ID as name otherwise")
    func sources() throws {
        let plain = try PodIdentity.read(top: try reader("{}"), cniArgs: [], containerID: "c1")
        #expect(plain == PodIdentity(namespace: "default", name: "c1", labels: [:]))
        let fromArgs = try PodIdentity.read(top: try reader("{}"), cniArgs: [("K8S_POD_NAMESPACE", "team-a"), ("K8S_POD_NAME", "web-0")],
                                            containerID: "c1")
        #expect(fromArgs.namespace == "team-a" && fromArgs.name == "web-0")
        let config = try reader(#"{"args":{"cni":{"namespace":"team-b","labels":{"app":"web","example.com/tier":"front"}}}}"#)
        let both = try PodIdentity.read(top: config, cniArgs: [("K8S_POD_NAMESPACE", "team-a")], containerID: "c1")
        #expect(both.namespace == "team-b" && both.labels == ["app": "web", "example.com/tier": "front"])
        // podman passes the container's name as both, capitals and '_' included: folded, not refused.
        let podman = try PodIdentity.read(top: try reader("{}"), cniArgs: [("K8S_POD_NAMESPACE", "Web_1"), ("K8S_POD_NAME", "Web_1")],
                                          containerID: "c1")
        #expect(podman.namespace == "web-1" && podman.name == "web-1")
    }

    @Test("a bad namespace, name or label is refused naming where it came from",
          arguments: [(#"{}"#, [("K8S_POD_NAMESPACE", "Team.A")], 4, "CNI_ARGS K8S_POD_NAMESPACE"),
                      (#"{}"#, [("K8S_POD_NAME", "web!")], 4, "CNI_ARGS K8S_POD_NAME"),
                      (#"{"args":{"cni":{"namespace":"-x"}}}"#, [], 7, "args.cni.namespace"),
                      (#"{"args":{"cni":{"labels":{"app":"-bad-"}}}}"#, [], 7, "args.cni.labels.app"),
                      (#"{"args":{"cni":{"labels":{"a/b/c":"x"}}}}"#, [], 7, "args.cni.labels.a/b/c"),
                      (#"{"args":{"cni":{"labels":{"app":5}}}}"#, [], 7, "must be a string"),
                      (#"{"args":{"cni":{"labels":["app"]}}}"#, [], 7, "args.cni.labels")] as [(String, [(String, String)], Int, String)])
    func refused(config: String, cniArgs: [(String, String)], code: Int, says: String) throws {
        let top = try reader(config)
        do throws(CNIError) {
            _ = try PodIdentity.read(top: top, cniArgs: cniArgs.map { (key: $0.0, value: $0.1) }, containerID: "c1")
            Issue.record("accepted \(config) \(cniArgs)")
        } catch {
            #expect(error.code == code && error.msg.contains(says), "\(error.msg)")
        }
    }
}
