import Testing
@testable import BerthCNI
@testable import BerthPlugin
import BerthJSON
import BerthNet

@Suite("Network config validation")
struct ConfigTests {
    func config(_ text: String) throws(CNIError) -> BridgeConfig {
        try BridgeConfig(Array(text.utf8))
    }

    func expectError(_ text: String, code: Int, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try config(text)
            Issue.record("no error for \(text)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.msg.contains(mentions), "\(error.msg)", sourceLocation: sourceLocation)
        }
    }

    @Test("reads the bridge plugin's fields with their defaults")
    func defaults() throws {
        let c = try config(#"{"cniVersion":"1.0.0","name":"n1","type":"berth","ipam":{"type":"host-local"}}"#)
        #expect(c.bridge == "berth0")
        #expect(!c.isGateway && !c.isDefaultGateway)
        #expect(c.mtu == nil)
        #expect(c.network.ipamType == "host-local")
        #expect(c.network.cniVersion == .v1_0_0)
    }

    @Test("isolate is off by default, true or \"strict\", and anything else is an error 7 naming it")
    func isolate() throws {
        let base = #"{"cniVersion":"1.0.0","name":"n1","type":"berth""#
        #expect(try config(base + "}").isolation == nil)
        #expect(try config(base + #","isolate":false}"#).isolation == nil)
        #expect(try config(base + #","isolate":true}"#).isolation == .isolated)
        #expect(try config(base + #","isolate":"strict"}"#).isolation == .strict)
        for bad in [#""yes""#, "1", #""Strict""#, "{}"] {
            expectError(base + #","isolate":"# + bad + "}", code: 7, mentions: #"field "isolate": expected true, false or "strict""#)
        }
    }

    @Test("isDefaultGateway implies isGateway")
    func defaultGateway() throws {
        let c = try config(#"{"cniVersion":"0.4.0","name":"n","type":"berth","isDefaultGateway":true,"ipam":{"type":"x"},"mtu":1400}"#)
        #expect(c.isGateway)
        #expect(c.mtu == 1400)
    }

    @Test("a missing cniVersion means 0.1.0, as libcni decides")
    func implicitVersion() throws {
        #expect(try config(#"{"name":"n","type":"berth"}"#).network.cniVersion == .v0_1_0)
    }

    @Test("unknown fields are ignored")
    func unknownFields() throws {
        _ = try config(#"{"cniVersion":"1.0.0","name":"n","type":"berth","somethingNew":{"x":[1]}}"#)
    }

    @Test("malformed JSON is an error 6")
    func malformed() {
        expectError(#"{"cniVersion":"1.0.0","#, code: 6, mentions: "not valid JSON")
        expectError(#"[1,2]"#, code: 6, mentions: "must be a JSON object")
    }

    @Test("an unsupported or malformed cniVersion is an error 1")
    func badVersion() {
        expectError(#"{"cniVersion":"2.0.0","name":"n"}"#, code: 1, mentions: "2.0.0")
        expectError(#"{"cniVersion":"latest","name":"n"}"#, code: 1, mentions: "latest")
    }

    @Test("invalid fields are an error 7 naming the field",
          arguments: [
            (#"{"cniVersion":"1.0.0","type":"berth"}"#, "\"name\""),
            (#"{"cniVersion":"1.0.0","name":"../etc","type":"berth"}"#, "\"name\""),
            (#"{"cniVersion":"1.0.0","name":"n","bridge":"this-name-is-too-long"}"#, "\"bridge\""),
            (#"{"cniVersion":"1.0.0","name":"n","bridge":7}"#, "\"bridge\""),
            (#"{"cniVersion":"1.0.0","name":"n","isGateway":"yes","ipam":{"type":"x"}}"#, "\"isGateway\""),
            (#"{"cniVersion":"1.0.0","name":"n","mtu":"1500"}"#, "\"mtu\""),
            (#"{"cniVersion":"1.0.0","name":"n","mtu":1.5}"#, "\"mtu\""),
            (#"{"cniVersion":"1.0.0","name":"n","mtu":70000}"#, "\"mtu\""),
            (#"{"cniVersion":"1.0.0","name":"n","ipam":"host-local"}"#, "\"ipam\""),
            (#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"../bin/sh"}}"#, "\"ipam.type\""),
            (#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":5}}"#, "\"ipam.type\""),
            (#"{"cniVersion":"1.0.0","name":"n","isGateway":true}"#, "\"isGateway\""),
            (#"{"cniVersion":"1.0.0","name":"n","dns":{"nameservers":"1.1.1.1"}}"#, "\"dns.nameservers\""),
          ])
    func invalidField(text: String, field: String) {
        expectError(text, code: 7, mentions: field)
    }
}
