import Testing
@testable import BerthCNI
import BerthJSON
import BerthNet

private let baseEnv = [
    "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
]

@Suite("CNI environment variables")
struct EnvironmentTests {
    @Test("reads a complete ADD environment")
    func complete() throws {
        var env = baseEnv
        env["CNI_ARGS"] = "IgnoreUnknown=1;IP=10.0.0.5"
        let e = try CNIEnvironment(env)
        #expect(e.command == .add)
        #expect(e.path == ["/opt/cni/bin", "/usr/lib/cni"])
        #expect(e.arg("IP") == "10.0.0.5")
        #expect(e.arg("MAC") == nil)
    }

    @Test("each missing or invalid variable is an error 4 naming it",
          arguments: [
            ("CNI_COMMAND", nil, "CNI_COMMAND"), ("CNI_COMMAND", "ATTACH", "CNI_COMMAND"),
            ("CNI_CONTAINERID", nil, "CNI_CONTAINERID"), ("CNI_CONTAINERID", "-abc", "CNI_CONTAINERID"),
            ("CNI_CONTAINERID", "a/b", "CNI_CONTAINERID"), ("CNI_CONTAINERID", "a b", "CNI_CONTAINERID"),
            ("CNI_IFNAME", nil, "CNI_IFNAME"), ("CNI_IFNAME", "eth0123456789abc", "CNI_IFNAME"),
            ("CNI_IFNAME", "a/b", "CNI_IFNAME"), ("CNI_IFNAME", "..", "CNI_IFNAME"), ("CNI_IFNAME", "e th", "CNI_IFNAME"),
            ("CNI_IFNAME", "a:b", "CNI_IFNAME"), ("CNI_NETNS", nil, "CNI_NETNS"), ("CNI_NETNS", "relative", "CNI_NETNS"),
            ("CNI_PATH", nil, "CNI_PATH"), ("CNI_ARGS", "novalue", "CNI_ARGS"), ("CNI_ARGS", "=x", "CNI_ARGS"),
          ] as [(String, String?, String)])
    func invalid(variable: String, value: String?, named: String) {
        var env = baseEnv
        env[variable] = value
        #expect(throws: CNIError.self) { try CNIEnvironment(env) }
        do {
            _ = try CNIEnvironment(env)
        } catch {
            #expect(error.code == 4)
            #expect(error.msg.contains(named))
        }
    }

    @Test("an interface name of exactly 15 characters is accepted")
    func fifteen() throws {
        var env = baseEnv
        env["CNI_IFNAME"] = "eth0123456789ab"
        _ = try CNIEnvironment(env)
    }

    @Test("DEL needs no CNI_NETNS, VERSION needs nothing but the command")
    func optional() throws {
        var env = baseEnv
        env["CNI_COMMAND"] = "DEL"
        env["CNI_NETNS"] = nil
        #expect(try CNIEnvironment(env).netns == "")
        _ = try CNIEnvironment(["CNI_COMMAND": "VERSION"])
    }
}

@Suite("interface names")
struct InterfaceNameTests {
    @Test("interface names with '%' are refused: the kernel reads them as templates")
    func percentInInterfaceName() {
        #expect(CNIEnvironment.interfaceNameProblem("eth%d") != nil)
        #expect(CNIEnvironment.interfaceNameProblem("ä+b{c}d&e\"f") == nil)
    }
}

@Suite("CNI versions")
struct VersionTests {
    @Test("parses, orders and names the supported versions")
    func versions() {
        #expect(CNIVersion("0.3.1")! < CNIVersion("0.4.0")!)
        #expect(CNIVersion("1.0") == nil)
        #expect(CNIVersion("v1.0.0") == nil)
        #expect(CNIVersion.supported.map(\.description) == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        #expect(CNIVersion.v0_2_0.usesLegacyResult && !CNIVersion.v0_3_0.usesLegacyResult)
        #expect(!CNIVersion.v0_3_1.supportsCheck && CNIVersion.v0_4_0.supportsCheck)
    }

    @Test("VERSION lists every supported version")
    func versionInfo() {
        let text = CNIVersion.versionInfo(answering: .v1_0_0).serialized()
        #expect(text == #"{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#)
    }
}

@Suite("CNI results in every version")
struct ResultTests {
    static let sample = CNIResult(
        interfaces: [
            .init(name: "berth0", mac: "aa:bb:cc:dd:ee:01", mtu: 1400),
            .init(name: "veth0011aabb", mac: "aa:bb:cc:dd:ee:02", mtu: 1400),
            .init(name: "eth0", mac: "aa:bb:cc:dd:ee:03", mtu: 1400, sandbox: "/run/netns/c1"),
        ],
        ips: [
            .init(address: IPPrefix("10.22.0.5/24")!, gateway: IPAddress("10.22.0.1"), interface: 2),
            .init(address: IPPrefix("fd22::5/64")!, gateway: IPAddress("fd22::1"), interface: 2),
        ],
        routes: [
            .init(dst: IPPrefix("0.0.0.0/0")!, gw: IPAddress("10.22.0.1")),
            .init(dst: IPPrefix("10.99.0.0/16")!, priority: 5),
            .init(dst: IPPrefix("::/0")!, gw: IPAddress("fd22::1")),
        ],
        dns: .init(nameservers: ["10.22.0.1"], search: ["example.test"]))

    static let legacy = #"{"cniVersion":"VER","ip4":{"ip":"10.22.0.5/24","gateway":"10.22.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"10.99.0.0/16"}]},"ip6":{"ip":"fd22::5/64","gateway":"fd22::1","routes":[{"dst":"::/0","gw":"fd22::1"}]},"dns":{"nameservers":["10.22.0.1"],"search":["example.test"]}}"#
    static let interfaces = #""interfaces":[{"name":"berth0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth0011aabb","mac":"aa:bb:cc:dd:ee:02"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/c1"}]"#
    static let v03 = #"{"cniVersion":"VER",\#(interfaces),"ips":[{"version":"4","interface":2,"address":"10.22.0.5/24","gateway":"10.22.0.1"},{"version":"6","interface":2,"address":"fd22::5/64","gateway":"fd22::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"10.99.0.0/16"},{"dst":"::/0","gw":"fd22::1"}],"dns":{"nameservers":["10.22.0.1"],"search":["example.test"]}}"#
    static let v10 = #"{"cniVersion":"1.0.0",\#(interfaces),"ips":[{"interface":2,"address":"10.22.0.5/24","gateway":"10.22.0.1"},{"interface":2,"address":"fd22::5/64","gateway":"fd22::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"10.99.0.0/16"},{"dst":"::/0","gw":"fd22::1"}],"dns":{"nameservers":["10.22.0.1"],"search":["example.test"]}}"#
    static let v11 = #"{"cniVersion":"1.1.0","interfaces":[{"name":"berth0","mac":"aa:bb:cc:dd:ee:01","mtu":1400},{"name":"veth0011aabb","mac":"aa:bb:cc:dd:ee:02","mtu":1400},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","mtu":1400,"sandbox":"/run/netns/c1"}],"ips":[{"interface":2,"address":"10.22.0.5/24","gateway":"10.22.0.1"},{"interface":2,"address":"fd22::5/64","gateway":"fd22::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"10.99.0.0/16","priority":5},{"dst":"::/0","gw":"fd22::1"}],"dns":{"nameservers":["10.22.0.1"],"search":["example.test"]}}"#

    static func golden(_ version: CNIVersion) -> String {
        switch version {
        case .v0_1_0, .v0_2_0: return legacy.replacingOccurrences("VER", with: version.description)
        case .v0_3_0, .v0_3_1, .v0_4_0: return v03.replacingOccurrences("VER", with: version.description)
        case .v1_0_0: return v10
        default: return v11
        }
    }

    @Test("prints the result exactly as each version defines it", arguments: CNIVersion.supported)
    func goldenJSON(version: CNIVersion) {
        #expect(ResultTests.sample.json(version: version).serialized() == ResultTests.golden(version))
    }

    @Test("reads back what it prints (the new form losslessly)", arguments: [CNIVersion.v0_3_1, .v0_4_0, .v1_0_0, .v1_1_0])
    func readBack(version: CNIVersion) throws {
        let json = ResultTests.sample.json(version: version)
        let back = try CNIResult(json: json, field: "prevResult")
        #expect(back.json(version: version) == json)
    }

    @Test("reads a legacy 0.2.0 result into addresses and routes")
    func readLegacy() throws {
        let json = try JSON.parse(ResultTests.golden(.v0_2_0))
        let r = try CNIResult(json: json, field: "prevResult")
        #expect(r.ips.map(\.address.description) == ["10.22.0.5/24", "fd22::5/64"])
        #expect(r.routes.count == 3)
        #expect(r.dns.nameservers == ["10.22.0.1"])
    }

    @Test("a malformed result names the bad field")
    func malformedResult() {
        let json = try! JSON.parse(#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}"#)
        do {
            _ = try CNIResult(json: json, field: "prevResult", code: .invalidNetworkConfig)
            Issue.record("accepted a bad address")
        } catch {
            #expect(error.code == 7)
            #expect(error.msg.contains("prevResult.ips[0].address"))
        }
        let badIndex = try! JSON.parse(#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.3/24","interface":4}]}"#)
        #expect(throws: CNIError.self) { try CNIResult(json: badIndex, field: "prevResult") }
    }

    @Test("a gateway of the other family than its address is refused, naming the field (it used to crash the address plan)",
          arguments: [
              (#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64","gateway":"10.0.0.1"}]}"#, "prevResult.ips[0].gateway"),
              (#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"},{"address":"10.1.0.5/24","gateway":"fd00::1"}]}"#, "prevResult.ips[1].gateway"),
              (#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.5/24","gateway":"fd00::1"}}"#, "prevResult.ip4.gateway"),
          ])
    func gatewayFamily(result: String, field: String) throws {
        let json = try JSON.parse(result)
        do throws(CNIError) {
            _ = try CNIResult(json: json, field: "prevResult", code: .invalidNetworkConfig)
            Issue.record("accepted \(result)")
        } catch {
            #expect(error.code == 7)
            #expect(error.msg.contains(field), "\(error.msg)")
        }
    }

    @Test("an error prints in the version of the config it answers", arguments: CNIVersion.supported)
    func errorGolden(version: CNIVersion) {
        let text = CNIError(.invalidEnvironment, "CNI_IFNAME is not set").json(cniVersion: version.description).serialized()
        #expect(text == #"{"cniVersion":"\#(version)","code":4,"msg":"CNI_IFNAME is not set"}"#)
    }

    @Test("errors print cniVersion, code and msg, and details only when there are some")
    func errorJSON() {
        #expect(CNIError(.invalidNetworkConfig, "bad").json(cniVersion: "0.4.0").serialized()
                == #"{"cniVersion":"0.4.0","code":7,"msg":"bad"}"#)
        #expect(CNIError(.ioFailure, "x", details: "y").json(cniVersion: "1.1.0").serialized()
                == #"{"cniVersion":"1.1.0","code":5,"msg":"x","details":"y"}"#)
    }
}

extension String {
    func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

@Suite("attachment keys")
struct AttachmentKeyTests {
    @Test("NETWORK:ID:IFNAME, as a file name up to 255 bytes and shortened past it")
    func fileNames() {
        let key = CNIAttachmentKey(network: "pods", containerID: "c1", ifname: "eth0")
        #expect(key.description == "pods:c1:eth0" && key.fileName == "pods:c1:eth0")
        let long = CNIAttachmentKey(network: "pods", containerID: String(repeating: "c", count: 300), ifname: "eth0")
        #expect(long.fileName.utf8.count == 255 && long.fileName.hasPrefix("pods:ccc") && long.fileName.contains("~"))
    }
}

@Suite("values a runtime passes: runtimeConfig, then args.cni, then CNI_ARGS")
struct RuntimeInputTests {
    func reader(_ text: String) throws -> FieldReader {
        FieldReader(try JSON.parse(text).objectValue!)
    }

    @Test("a single value comes from the strongest source that gives one; an empty one counts as none")
    func single() throws {
        let both = try reader(#"{"runtimeConfig":{"mac":""},"args":{"cni":{"mac":"0a:58:00:00:00:02"}}}"#)
        let first = try RuntimeInput.values("mac", cniArgsKey: "MAC", in: both, cniArgs: [("MAC", "x"), ("MAC", "y")], list: false)
        #expect(first.map(\.source) == ["args.cni.mac", "CNI_ARGS MAC"])
        #expect(first.map(\.text) == ["0a:58:00:00:00:02", "y"], "the last MAC= of CNI_ARGS")
        #expect(first.last?.code == .invalidEnvironment && first.first?.code == .invalidNetworkConfig)
        #expect(first.last?.error("is not a MAC").msg == #"CNI_ARGS MAC: "y" is not a MAC"#)
        #expect(try RuntimeInput.values("mac", cniArgsKey: "MAC", in: try reader("{}"), cniArgs: [], list: false).isEmpty)
    }

    @Test("a list gathers every source in order, CNI_ARGS split at commas")
    func list() throws {
        let top = try reader(#"{"runtimeConfig":{"ips":["10.0.0.5/24"]},"args":{"cni":{"ips":["10.0.0.6"]}}}"#)
        let all = try RuntimeInput.values("ips", cniArgsKey: "IP", in: top, cniArgs: [("IP", "10.0.0.7,10.0.0.8")], list: true)
        #expect(all.map(\.text) == ["10.0.0.5/24", "10.0.0.6", "10.0.0.7", "10.0.0.8"])
        #expect(all.map(\.source) == ["runtimeConfig.ips", "args.cni.ips", "CNI_ARGS IP", "CNI_ARGS IP"])
    }

    @Test("a value of the wrong type is refused naming its path")
    func wrongType() throws {
        let top = try reader(#"{"args":{"cni":{"ips":"10.0.0.6"}}}"#)
        do throws(CNIError) {
            _ = try RuntimeInput.values("ips", cniArgsKey: "IP", in: top, cniArgs: [], list: true)
            Issue.record("accepted a string for a list")
        } catch {
            #expect(error.code == 7 && error.msg.contains("args.cni.ips"), "\(error.msg)")
        }
    }
}
