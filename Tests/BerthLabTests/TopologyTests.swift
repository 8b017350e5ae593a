import Foundation
import Testing
import BerthTestSupport
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet

@Suite("lab topology files")
struct TopologyTests {
    @Test("YAML and JSON describe the same lab")
    func formats() throws {
        let yaml = """
        name: t1
        networks:
          - name: a
            subnet: 10.9.1.0/24
            options: {mtu: 1400}
          - name: b
            subnet: 10.9.2.0/24
        hosts:
          - name: h1
            networks: [a, b]
            addresses: {b: 10.9.2.9}
        """
        let json = #"{"name":"t1","networks":[{"name":"a","subnet":"10.9.1.0/24","options":{"mtu":1400}},{"name":"b","subnet":"10.9.2.0/24"}],"hosts":[{"name":"h1","networks":["a","b"],"addresses":{"b":"10.9.2.9"}}]}"#
        let fromYAML = try Topology.parse(yaml), fromJSON = try Topology.parse(json)
        #expect(fromYAML == fromJSON)
        #expect(fromYAML.networks[0].options["mtu"] == .int(1400))
        #expect(fromYAML.hosts[0].addresses["b"] == IPAddress("10.9.2.9"))
    }

    @Test("mistakes are refused naming the key, and the line in YAML",
          arguments: [
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a, nope]\n", "hosts[0].networks[1] (line 7)", "unknown network nope"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n  - name: h\n    networks: [a]\n", "hosts[1].name (line 8)", "declared twice"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.0.0/16\n  - name: b\n    subnet: 10.9.4.0/24\nhosts: []\n", "networks[1].subnet (line 6)", "overlaps"),
            (#"{"name":"x","networks":[{"name":"a","subnet":"10.9.1.0/24"}],"hosts":[{"name":"h","networks":["a"],"addresses":{"a":"10.9.9.9"}}]}"#, "hosts[0].addresses.a", "not a host address"),
            (#"{"name":"x","networks":[{"name":"a","subnet":"10.9.1.0/24","options":{"bridge":"x"}}],"hosts":[]}"#, "networks[0].options.bridge", "set by the lab"),
            (#"{"name":"averyveryverylongname","networks":[{"name":"a","subnet":"10.9.1.0/24"}]}"#, "name", "longer than"),
            ("name: x\nhosts: []\n", "networks", "at least one network"),
          ])
    func mistakes(text: String, location: String, message: String) {
        TopologyTests.expectRefused(text, at: location, saying: message)
    }

    /// `text` must be refused at `location` (its start, with `exactly: false`) with a message containing `message`.
    static func expectRefused(_ text: String, at location: String, saying message: String, exactly: Bool = true,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try Topology.parse(text)
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch {
            #expect(exactly ? error.location == location : error.location.hasPrefix(location), "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
        }
    }
}
