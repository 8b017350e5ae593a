import Foundation
import Testing
import BerthTestSupport
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet

extension TopologyTests {
    @Test("unknown keys are refused naming the key and its line (and the key meant), as wrong values are",
          arguments: [
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    fowarding: true\n", "hosts[0].fowarding (line 8)", "did you mean forwarding"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    adresses: {a: 10.9.1.5}\n", "hosts[0].adresses (line 8)", "did you mean addresses"),
            ("name: x\nnetwork:\n  - name: a\n    subnet: 10.9.1.0/24\n", "network (line 2)", "did you mean networks"),
            ("name: x\nnetworks:\n  - name: a\n    subnt: 10.9.1.0/24\n", "networks[0].subnt (line 4)", "did you mean subnet"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\n    options: {mtuu: 1400}\n", "networks[0].options.mtuu (line 5)", "did you mean mtu"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    routes:\n      - {to: 10.9.3.0/24, via: 10.9.1.9, metric: 5}\n", "hosts[0].routes[0].metric (line 9)", "unknown key"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts: []\nlinks:\n  - ends: [a, b]\n    subnet: 10.9.9.0/30\n    mtu: 9000\n", "links[0].mtu (line 9)", "unknown key"),
          ])
    func unknownKeys(text: String, location: String, message: String) {
        TopologyTests.expectRefused(text, at: location, saying: message)
    }

    @Test("plugin options are checked with the plugin's own config decoding, naming the option and its line",
          arguments: [
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\n    options: {mtu: big}\n", "networks[0].options.mtu (line 5)", "expected an integer"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\n    options: {mtu: 20}\n", "networks[0].options.mtu (line 5)", "outside 68-65535"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\n    options: {hairpinMode: true, promiscMode: true}\n", "networks[0].options", "promiscMode"),
            ("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\n    options: {ipMasqBackend: pf}\n", "networks[0].options.ipMasqBackend (line 5)", "ipMasqBackend"),
          ])
    func badOptions(text: String, location: String, message: String) {
        TopologyTests.expectRefused(text, at: location, saying: message, exactly: false)
    }

    @Test("malformed JSON is located by line and column, not byte")
    func jsonLineAndColumn() {
        do {
            _ = try Topology.parse("{\"name\": \"x\",\n  \"networks\": [}\n")
            Issue.record("accepted")
        } catch {
            #expect(error.location == "file (line 2, column 16)", "\(error)")
            #expect(error.message.contains("not valid JSON") && !error.description.contains("byte"), "\(error)")
        }
    }
}

extension TopologyTests {
    @Test("addresses are planned in host order, skipping the gateway and every given one, so a parallel up gives the same; a subnet too small is refused")
    func addressPlan() throws {
        let t = try Topology.parse("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/29\nhosts:\n  - name: h1\n    networks: [a]\n  - name: h2\n    networks: [a]\n    addresses: {a: 10.9.1.3}\n  - name: h3\n    networks: [a]\n")
        let plan = try t.addressPlan()
        #expect(plan["h1"]?["a"] == IPAddress("10.9.1.2") && plan["h2"]?["a"] == IPAddress("10.9.1.3") && plan["h3"]?["a"] == IPAddress("10.9.1.4"))
        let hosts = (0..<6).map { "  - name: h\($0)\n    networks: [a]\n" }.joined()
        TopologyTests.expectRefused("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/29\nhosts:\n\(hosts)",
                                    at: "networks[0].subnet", saying: "no room for its 6 hosts", exactly: false)
    }
}

extension TopologyTests {
    @Test("a host's namespace and labels are read and checked as Kubernetes checks them")
    func hostIdentity() throws {
        let t = try Topology.parse("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    namespace: shop\n    labels: {app: web, example.com/tier: front}\n")
        #expect(t.hosts[0].podNamespace == "shop" && t.hosts[0].podLabels == ["app": "web", "example.com/tier": "front"])
        TopologyTests.expectRefused("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    labels: {app: -web-}\n",
                                    at: "hosts[0].labels.app (line 8)", saying: "label value \"-web-\"")
        TopologyTests.expectRefused("name: x\nnetworks:\n  - name: a\n    subnet: 10.9.1.0/24\nhosts:\n  - name: h\n    networks: [a]\n    namespace: Shop\n",
                                    at: "hosts[0].namespace (line 8)", saying: "lower-case")
    }
}

