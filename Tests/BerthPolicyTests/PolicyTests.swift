import Testing
import BerthNet
@testable import BerthPolicy
import BerthPolicyFiles

/// The truth table of NetworkPolicy semantics, pure: pods in namespaces,
/// policies read from the YAML a user gives kubectl, and the verdict for
/// every (from, to, port, protocol) a case names.
@Suite("network policy semantics")
struct PolicySemanticsTests {
    static let pods: [String: PolicyPod] = [
        "x/a": PolicyPod(name: "a", namespace: "x", labels: ["pod": "a"], addresses: [IPAddress("10.1.0.2")!]),
        "x/b": PolicyPod(name: "b", namespace: "x", labels: ["pod": "b"], addresses: [IPAddress("10.1.0.3")!]),
        "y/a": PolicyPod(name: "a", namespace: "y", labels: ["pod": "a"], addresses: [IPAddress("10.2.0.2")!]),
        "y/c": PolicyPod(name: "c", namespace: "y", labels: ["pod": "c", "tier": "db"], addresses: [IPAddress("10.2.0.3")!]),
        "z/a": PolicyPod(name: "a", namespace: "z", labels: ["pod": "a"], addresses: [IPAddress("10.3.0.2")!]),
    ]
    static let namespaces = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: x, labels: {team: red}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: y, labels: {team: blue}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: z, labels: {team: red, env: test}}
        """

    func set(_ policies: String) throws -> PolicySet {
        try PolicyDocuments.read(PolicySemanticsTests.namespaces + "\n---\n" + policies)
    }

    func allowed(_ s: PolicySet, _ from: String, _ to: String, _ port: UInt16 = 80, _ proto: TransportProtocol = .tcp) -> Bool {
        s.verdict(from: .pod(PolicySemanticsTests.pods[from]!), to: .pod(PolicySemanticsTests.pods[to]!), port: port, proto: proto).allowed
    }

    func policy(_ name: String, _ namespace: String, _ spec: String) -> String {
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \(name), namespace: \(namespace)}\nspec:\n" + spec
    }

    @Test("no policy: everything passes")
    func open() throws {
        let s = try set("")
        for from in PolicySemanticsTests.pods.keys { for to in PolicySemanticsTests.pods.keys { #expect(allowed(s, from, to)) } }
    }

    @Test("default deny ingress isolates every pod of its namespace, and no other")
    func denyIngress() throws {
        let s = try set(policy("deny", "x", "  podSelector: {}\n  policyTypes: [Ingress]\n"))
        #expect(!allowed(s, "y/a", "x/a") && !allowed(s, "x/b", "x/a"))
        #expect(allowed(s, "x/a", "y/a"), "egress is not isolated, y is not isolated")
        let v = s.verdict(from: .pod(PolicySemanticsTests.pods["y/a"]!), to: .pod(PolicySemanticsTests.pods["x/a"]!), port: 80, proto: .tcp)
        #expect(v.description.contains("isolated by x/deny"))
    }

    @Test("default deny egress; policyTypes defaults to Ingress alone, plus Egress when there are egress rules")
    func denyEgress() throws {
        let s = try set(policy("deny-out", "x", "  podSelector: {}\n  policyTypes: [Egress]\n"))
        #expect(!allowed(s, "x/a", "y/a") && allowed(s, "y/a", "x/a"))
        let defaulted = try set(policy("p", "x", "  podSelector: {}\n  egress: [{to: [{podSelector: {}}]}]\n"))
        #expect(defaulted.policies[0].policyTypes == [.ingress, .egress])
        #expect(!allowed(defaulted, "y/a", "x/a"), "ingress isolated with no ingress rules")
        #expect(allowed(defaulted, "x/a", "x/b") == false, "x/b's ingress is isolated too")
        let ingressOnly = try set(policy("q", "x", "  podSelector: {}\n"))
        #expect(ingressOnly.policies[0].policyTypes == [.ingress])
    }

    @Test("allow from the same namespace; ingress: [{}] allows everything; policies add up")
    func sameNamespace() throws {
        let s = try set(policy("same", "x", "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]\n"))
        #expect(allowed(s, "x/b", "x/a") && !allowed(s, "y/a", "x/a"))
        let all = try set(policy("deny", "x", "  podSelector: {}\n") + "\n---\n" + policy("all", "x", "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{}]\n"))
        #expect(allowed(all, "y/a", "x/a") && !allowed(all, "y/a", "x/b"), "the union of the policies selecting each pod")
    }

    @Test("a labelled namespace; podSelector AND namespaceSelector in one peer differs from two peers")
    func namespaceSelectors() throws {
        let red = try set(policy("red", "y", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}}]}]\n"))
        #expect(allowed(red, "x/a", "y/c") && allowed(red, "z/a", "y/c") && !allowed(red, "y/a", "y/c"))
        let both = try set(policy("both", "y", """
              podSelector: {matchLabels: {tier: db}}
              ingress:
              - from:
                - namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}
                  podSelector: {matchLabels: {pod: a}}
            """ + "\n"))
        #expect(allowed(both, "z/a", "y/c") && !allowed(both, "x/a", "y/c"), "pod a of a namespace with env only")
        let two = try set(policy("two", "y", """
              podSelector: {matchLabels: {tier: db}}
              ingress:
              - from:
                - namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}
                - podSelector: {matchLabels: {pod: a}}
            """ + "\n"))
        #expect(allowed(two, "z/a", "y/c") && allowed(two, "y/a", "y/c") && !allowed(two, "x/a", "y/c"),
                "any pod of an env namespace, or pod a of y itself")
        let notIn = try set(policy("notin", "y", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [red]}]}}]}]\n"))
        #expect(!allowed(notIn, "x/a", "y/c") && allowed(notIn, "y/a", "y/c"))
        let byName = try set(policy("byname", "y", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]\n"))
        #expect(allowed(byName, "z/a", "y/c") && !allowed(byName, "x/a", "y/c"), "every namespace has its name as a label")
    }

    @Test("ipBlock with except; ports with endPort and protocols")
    func blocksAndPorts() throws {
        let s = try set(policy("blocks", "x", """
              podSelector: {matchLabels: {pod: a}}
              ingress:
              - from: [{ipBlock: {cidr: 10.2.0.0/16, except: [10.2.0.3/32]}}]
                ports: [{port: 8000, endPort: 8010}, {protocol: UDP, port: 53}]
            """ + "\n"))
        #expect(allowed(s, "y/a", "x/a", 8005) && !allowed(s, "y/a", "x/a", 8011) && !allowed(s, "y/a", "x/a", 7999))
        #expect(!allowed(s, "y/c", "x/a", 8005), "the excepted address")
        #expect(allowed(s, "y/a", "x/a", 53, .udp) && !allowed(s, "y/a", "x/a", 53, .tcp) && !allowed(s, "y/a", "x/a", 8005, .udp))
        #expect(!allowed(s, "z/a", "x/a", 8005), "outside the block")
        let external = s.verdict(from: .external(IPAddress("10.2.9.9")!), to: .pod(PolicySemanticsTests.pods["x/a"]!), port: 8001, proto: .tcp)
        #expect(external.allowed)
    }

    @Test("egress to DNS only; the pod's own node always reaches it")
    func dnsOnly() throws {
        let s = try set(policy("dns", "x", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]\n"))
        #expect(allowed(s, "x/a", "y/a", 53, .udp) && allowed(s, "x/a", "y/a", 53) && !allowed(s, "x/a", "y/a", 80))
        let deny = try set(policy("deny", "x", "  podSelector: {}\n"))
        #expect(deny.verdict(from: .node, to: .pod(PolicySemanticsTests.pods["x/a"]!), port: 80, proto: .tcp).allowed)
    }

    @Test("what Berth does not enforce, or that is malformed, is refused naming the document, policy, field and line",
          arguments: [
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {}}], ports: [{port: http}]}]\n",
             "policy default/p, spec.ingress[0].ports[0].port", "named port \"http\""),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingres: []\n",
             "policy default/p, spec.ingres (line 6)", "not a field Berth enforces"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: -bad-}}\n",
             "spec.podSelector.matchLabels.app", "label value \"-bad-\""),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]\n",
             "spec.egress[0].to[0]", "cannot be combined"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 90, endPort: 80}]}]\n",
             "spec.ingress[0].ports[0].endPort", "from port (90)"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP}]}]\n",
             "spec.ingress[0].ports[0].protocol", "not TCP, UDP or SCTP"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: In}]}\n",
             "spec.podSelector.matchExpressions[0].values", "needs at least one value"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]\n",
             "except[0]", "not inside the block"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "kind (line 2)", "not a document Berth reads"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: P_1}\nspec: {podSelector: {}}\n", "metadata.name", "lower-case"),
            ("{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\",\n \"metadata\": {\"name\": \"p\"}, \"spec\": }", "file (line 2, column", "not valid JSON"),
          ])
    func refused(text: String, location: String, message: String) {
        do {
            _ = try PolicyDocuments.read(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.location.contains(location), "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }

    @Test("a second document's problem names the document; a policy given twice is refused; a v1 List holds documents")
    func documents() throws {
        do {
            _ = try PolicyDocuments.read(policy("p", "x", "  podSelector: {}\n") + "---\n" + policy("q", "x", "  podSelector: []\n"))
            Issue.record("accepted a list as a selector")
        } catch {
            #expect(error.location.hasPrefix("document 2, policy x/q, spec.podSelector"), "\(error)")
        }
        #expect(throws: PolicyError.self) { try PolicyDocuments.read(policy("p", "x", "  podSelector: {}\n") + "---\n" + policy("p", "x", "  podSelector: {}\n")) }
        let list = try PolicyDocuments.read(#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p","namespace":"nowhere"},"spec":{"podSelector":{}}}]}"#)
        #expect(list.policies.map(\.qualifiedName) == ["nowhere/p"], "a namespace no document declares is allowed (it matches nothing but itself)")
    }
}
