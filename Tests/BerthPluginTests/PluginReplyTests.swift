import Testing
@testable import BerthCNI
@testable import BerthPlugin
import BerthJSON

/// The plugin's replies for inputs it rejects before touching the kernel.
@Suite("Plugin replies to bad input")
struct PluginReplyTests {
    static let env = [
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
    ]

    func reply(_ env: [String: String], _ stdin: String) throws -> (status: Int32, json: JSON) {
        let r = BerthPlugin.run(environment: env) { Array(stdin.utf8) }
        return (r.status, try JSON.parse(r.stdout))
    }

    @Test("VERSION answers in the requested version with every supported version")
    func version() throws {
        var env = PluginReplyTests.env
        env["CNI_COMMAND"] = "VERSION"
        let (status, json) = try reply(env, #"{"cniVersion":"0.4.0"}"#)
        #expect(status == 0)
        #expect(json["cniVersion"]?.stringValue == "0.4.0")
        #expect(json["supportedVersions"]?.arrayValue?.count == 7)
    }

    @Test("errors go to stdout as CNI error JSON with the spec's code",
          arguments: [
            ("CNI_IFNAME", "averyveryverylongname", #"{"cniVersion":"1.0.0","name":"n"}"#, 4, "1.0.0"),
            ("CNI_COMMAND", "ADD", #"{"cniVersion":"1.0.0","name":"#, 6, "1.1.0"),
            ("CNI_COMMAND", "ADD", #"{"cniVersion":"9.9.9","name":"n"}"#, 1, "1.1.0"),
            ("CNI_COMMAND", "ADD", #"{"cniVersion":"0.3.1","name":"n","mtu":"big"}"#, 7, "0.3.1"),
            ("CNI_COMMAND", "CHECK", #"{"cniVersion":"0.3.1","name":"n"}"#, 1, "0.3.1"),
            ("CNI_COMMAND", "CHECK", #"{"cniVersion":"1.0.0","name":"n"}"#, 7, "1.0.0"),
          ] as [(String, String, String, Int, String)])
    func errors(variable: String, value: String, stdin: String, code: Int, version: String) throws {
        var env = PluginReplyTests.env
        env[variable] = value
        let (status, json) = try reply(env, stdin)
        #expect(status != 0)
        #expect(json["code"]?.intValue == code)
        #expect(json["msg"]?.stringValue?.isEmpty == false)
        #expect(json["cniVersion"]?.stringValue == version)
    }

    @Test("an ADD into a missing namespace path is an error 4 naming CNI_NETNS")
    func missingNamespace() throws {
        let (status, json) = try reply(PluginReplyTests.env, #"{"cniVersion":"1.0.0","name":"n","type":"berth"}"#)
        #expect(status != 0)
        #expect(json["code"]?.intValue == 4)
        #expect(json["msg"]?.stringValue?.contains("CNI_NETNS") == true)
    }

    @Test("an ADD into an ordinary file is refused as not a network namespace")
    func ordinaryFile() throws {
        var env = PluginReplyTests.env
        env["CNI_NETNS"] = "/proc/self/status"
        let (_, json) = try reply(env, #"{"cniVersion":"1.0.0","name":"n","type":"berth"}"#)
        #expect(json["code"]?.intValue == 4)
        #expect(json["msg"]?.stringValue?.contains("not a network namespace") == true)
    }
}
