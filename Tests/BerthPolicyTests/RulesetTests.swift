import Testing
import BerthNet
import BerthJSON
@testable import BerthPolicy
import BerthPolicyFiles

@Suite("policy groups, rulesets and the documents written back")
struct RulesetTests {
    static let file = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop, labels: {team: blue}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: db, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: db}}
          ingress:
          - from:
            - podSelector: {matchLabels: {app: web}}
            - namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [red, blue]}]}
              podSelector: {matchLabels: {app: web}}
            - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}
            ports: [{port: 5432}, {protocol: UDP, port: 53, endPort: 54}, {protocol: SCTP}]
          egress:
          - {}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: web}}
          policyTypes: [Ingress]
        """

    @Test("written back as a v1 List, the documents read to the same policies and namespaces")
    func roundTrip() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        let again = try PolicyDocuments.read(set.json.serialized())
        #expect(again.policies.sorted { $0.qualifiedName < $1.qualifiedName } == set.policies.sorted { $0.qualifiedName < $1.qualifiedName })
        #expect(again.namespaces == set.namespaces)
    }

    @Test("the group index (what ADD reads) gives the same groups, ids and memberships as the policies")
    func groupIndex() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        let index = GroupIndex(set)
        let again = try #require(GroupIndex(json: JSON.parse(index.json.serialized())))
        #expect(again == index && again.groups.map(\.id) == set.groups.map(\.id))
        let web = PolicyPod(name: "w", namespace: "shop", labels: ["app": "web"], addresses: [])
        #expect(again.groups(of: web) == set.groups(of: web, among: set.groups).map(\.id))
        #expect(again.groups(of: web).count == 2, "shop's web pods, and web pods of a blue or red namespace")
        #expect(GroupIndex(json: try JSON.parse(#"{"namespaces":{},"groups":[{"namespace":"x","podSelector":{}}]}"#)) == nil,
                "a group without its id: damaged")
        #expect(GroupIndex(json: try JSON.parse(#"{"namespaces":{},"groups":[{"id":"g1","podSelector":{}}]}"#)) == nil,
                "a group without its namespaces: damaged")
    }

    @Test("merge replaces a policy of the same name and keeps the others")
    func merge() throws {
        var set = try PolicyDocuments.read(RulesetTests.file)
        let changed = try PolicyDocuments.read("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: web, namespace: shop}
            spec: {podSelector: {}, policyTypes: [Egress]}
            """)
        set.merge(changed)
        #expect(set.policies.count == 2)
        #expect(set.policies.first { $0.name == "web" }?.policyTypes == [.egress])
    }

    @Test("groups: one per distinct set of pods, shared between policies, selectors compared whatever their order")
    func groups() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        // db's pods, web's pods (db's first peer and web's own selection are the same group), the blue/red web pods.
        #expect(set.groups.count == 3)
        let a = LabelSelector(matchExpressions: [.init(key: "a", op: .exists), .init(key: "b", op: .in, values: ["y", "x"])])
        let b = LabelSelector(matchExpressions: [.init(key: "b", op: .in, values: ["x", "y"]), .init(key: "a", op: .exists)])
        #expect(PodGroup(namespaces: .named("n"), pods: a).id == PodGroup(namespaces: .named("n"), pods: b).id)
        #expect(PodGroup(namespaces: .named("n"), pods: a).id != PodGroup(namespaces: .named("m"), pods: a).id)
        let web = PolicyPod(name: "w", namespace: "shop", labels: ["app": "web"], addresses: [IPAddress("10.9.0.2")!, IPAddress("fd00::2")!])
        let other = PolicyPod(name: "o", namespace: "other", labels: ["app": "web"], addresses: [IPAddress("10.9.0.3")!])
        let members = set.members(of: set.groups, pods: [web, other])
        let selected = set.policies.first { $0.name == "web" }!.selectedGroup.id
        #expect(members[selected] == [IPAddress("10.9.0.2")!, IPAddress("fd00::2")!])
        // "other" has no team label: in no group.
        #expect(!members.values.contains { $0.contains(IPAddress("10.9.0.3")!) })
    }

    @Test("a policy's chain: a counting accept per (peer, port); ipBlock except and port ranges in the rule; SCTP by number")
    func policyChain() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        let db = set.policies.first { $0.name == "db" }!
        let rules = PolicyRuleset(set).chains[PolicyRuleset.chainName(db, .ingress)]!.map(\.body)
        let web = db.group(of: db.ingress[0].peers[0])!.id
        #expect(rules.count == (2 + 2 + 1) * 3)
        #expect(rules.contains("ip saddr @\(web)4 tcp dport 5432 counter accept".replacingOccurrences(of: "tcp dport", with: "meta l4proto tcp th dport")))
        #expect(rules.contains("ip6 saddr @\(web)6 meta l4proto udp th dport 53-54 counter accept"))
        #expect(rules.contains("ip saddr 10.0.0.0/8 ip saddr != 10.1.0.0/16 ip saddr != 10.2.0.0/16 meta l4proto sctp counter accept"))
        #expect(PolicyRuleset(set).chains[PolicyRuleset.chainName(db, .egress)]!.map(\.body) == ["counter accept"], "egress: [{}] allows all")
        #expect(PolicyRuleset(set).chains[PolicyRuleset.chainName(db, .ingress)]!.allSatisfy { $0.comment == "ingress 1" })
    }

    @Test("base chains: replies first, then every selecting policy's jump, then the drops, counted (and logged) per policy")
    func baseChains() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        let r = PolicyRuleset(set, logGroup: 9)
        let db = set.policies.first { $0.name == "db" }!, web = set.policies.first { $0.name == "web" }!
        #expect(r.ingress.first?.body == "ct state established,related accept")
        let jumps = r.ingress.indices.filter { r.ingress[$0].body.contains(" jump ") }
        let drops = r.ingress.indices.filter { r.ingress[$0].body.hasSuffix(" drop") }
        #expect(jumps.count == 4 && drops.count == 4 && jumps.max()! < drops.min()!)
        #expect(r.ingress[drops[0]].body == "ip daddr @\(db.selectedGroup.id)4 counter name \"\(PolicyRuleset.counterName(db, .ingress))\" log prefix \"berth drop ingress shop/db: \" group 9 drop")
        #expect(r.egress.contains { $0.body == "ip saddr @\(db.selectedGroup.id)4 jump \(PolicyRuleset.chainName(db, .egress))" })
        #expect(!r.egress.contains { $0.body.contains(PolicyRuleset.chainName(web, .egress)) }, "web isolates ingress only")
        #expect(Set(r.counters) == [PolicyRuleset.counterName(db, .ingress), PolicyRuleset.counterName(db, .egress), PolicyRuleset.counterName(web, .ingress)])
        #expect(PolicyRuleset(set).ingress[drops[0]].body.contains("log") == false, "no log group, no log")
    }

    @Test("rules grow with policies, not with pods: 100 policies make 100 chains of their own rules")
    func growth() throws {
        var text = ""
        for i in 0..<100 {
            text += "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p\(i), namespace: ns\(i % 10)}\n"
            text += "spec:\n  podSelector: {matchLabels: {app: a\(i)}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: b\(i)}}}], ports: [{port: 80}]}]\n"
        }
        let r = PolicyRuleset(try PolicyDocuments.read(text))
        #expect(r.chains.count == 100 && r.chains.values.allSatisfy { $0.count == 2 })
        #expect(r.ingress.count == 1 + 400 && r.groups.count == 200)
    }

    @Test("a policy's rules in words, keyed like its nft rules' comments")
    func words() throws {
        let set = try PolicyDocuments.read(RulesetTests.file)
        let db = set.policies.first { $0.name == "db" }!
        let words = db.ruleWords
        #expect(words.first?.comment == "ingress 1")
        #expect(words.first?.words == "from pods app=web of namespace shop, or pods app=web of namespaces team in (red, blue), or addresses in 10.0.0.0/8 but not in 10.1.0.0/16, 10.2.0.0/16, on TCP 5432, UDP 53-54, any SCTP port")
        #expect(words.last?.words == "to anyone, on any port")
        let web = set.policies.first { $0.name == "web" }!
        #expect(web.ruleWords.map(\.words) == ["nothing is allowed (ingress is denied)"])
        #expect(PolicyRuleset.logPrefix(NetworkPolicy(name: String(repeating: "n", count: 200), namespace: "x"), .ingress).utf8.count <= 127)
    }
}
