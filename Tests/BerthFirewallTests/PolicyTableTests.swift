import Testing
import BerthNet
import BerthPolicy
import BerthPolicyFiles
@testable import BerthFirewall

@Suite("policy table transactions (from the ruleset in force to the next)")
struct PolicyTableTests {
    static func policy(_ name: String, _ app: String, port: Int) -> String {
        """
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: \(name), namespace: shop}
        spec:
          podSelector: {matchLabels: {app: \(app)}}
          ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: \(port)}]}]

        """
    }

    static let pods = [
        PolicyPod(name: "db", namespace: "shop", labels: ["app": "db"], addresses: [IPAddress("10.9.0.2")!, IPAddress("fd00::2")!]),
        PolicyPod(name: "web", namespace: "shop", labels: ["app": "web"], addresses: [IPAddress("10.9.0.3")!]),
    ]

    @Test("from nothing: the table is replaced whole, groups filled, chains and base chains written")
    func fromNothing() throws {
        let set = try PolicyDocuments.read(Self.policy("db", "db", port: 5432))
        let r = PolicyRuleset(set)
        let t = PolicyTable.transaction(from: nil, to: r, members: set.members(of: r.groups, pods: Self.pods))
        #expect(Array(t.commands.prefix(3)) == ["add table inet berth-policy", "delete table inet berth-policy", "add table inet berth-policy"])
        let db = set.policies[0].selectedGroup.id
        #expect(t.commands.contains("add element inet berth-policy \(db)4 { 10.9.0.2 }"))
        #expect(t.commands.contains("add element inet berth-policy \(db)6 { fd00::2 }"))
        #expect(t.commands.contains { $0.hasPrefix("add chain inet berth-policy ingress { type filter hook forward priority 6") })
        #expect(t.commands.contains("add counter inet berth-policy \(PolicyRuleset.counterName(set.policies[0], .ingress))"))
    }

    @Test("a change: only changed chains are rewritten, new groups filled, what is gone removed after the base chains stop using it")
    func change() throws {
        let before = try PolicyDocuments.read(Self.policy("db", "db", port: 5432) + Self.policy("cache", "cache", port: 6379))
        let after = try PolicyDocuments.read(Self.policy("db", "db", port: 5433) + Self.policy("queue", "queue", port: 5672))
        let old = PolicyRuleset(before), new = PolicyRuleset(after)
        let t = PolicyTable.transaction(from: old, to: new, members: after.members(of: new.groups, pods: Self.pods))
        let db = after.policies.first { $0.name == "db" }!
        let cache = before.policies.first { $0.name == "cache" }!
        let queue = after.policies.first { $0.name == "queue" }!
        let dbChain = PolicyRuleset.chainName(db, .ingress), cacheChain = PolicyRuleset.chainName(cache, .ingress)
        #expect(!t.commands.contains("delete table inet berth-policy"))
        #expect(t.commands.contains("flush chain inet berth-policy \(dbChain)"), "db changed: rewritten")
        #expect(t.commands.contains { $0.contains(dbChain) && $0.contains("th dport 5433") })
        #expect(t.commands.contains("add chain inet berth-policy \(PolicyRuleset.chainName(queue, .ingress))"))
        // Groups: db's and web's stay (not refilled), queue's is new (filled, empty here), cache's goes.
        #expect(!t.commands.contains { $0.hasPrefix("add element inet berth-policy \(db.selectedGroup.id)") }, "an unchanged group is not refilled")
        #expect(!t.commands.contains { $0.hasPrefix("flush set") })
        let base = t.commands.firstIndex(of: "flush chain inet berth-policy ingress")!
        let removeChain = t.commands.firstIndex(of: "delete chain inet berth-policy \(cacheChain)")!
        let removeSet = t.commands.firstIndex(of: "delete set inet berth-policy \(cache.selectedGroup.id)4")!
        let removeCounter = t.commands.firstIndex(of: "delete counter inet berth-policy \(PolicyRuleset.counterName(cache, .ingress))")!
        #expect(base < removeChain && removeChain < removeSet && base < removeCounter)
        #expect(!t.commands.contains("delete set inet berth-policy \(db.selectedGroup.id)4"))
    }

    @Test("unchanged policies: no chain is touched, only the base chains are written again")
    func unchanged() throws {
        let set = try PolicyDocuments.read(Self.policy("db", "db", port: 5432))
        let r = PolicyRuleset(set)
        let t = PolicyTable.transaction(from: r, to: r, members: [:])
        let chain = PolicyRuleset.chainName(set.policies[0], .ingress)
        #expect(!t.commands.contains { $0.hasPrefix("add rule inet berth-policy \(chain) ") || $0.hasSuffix("chain inet berth-policy \(chain)") })
        #expect(t.commands.filter { $0.hasPrefix("flush chain") } == ["flush chain inet berth-policy egress", "flush chain inet berth-policy ingress"])
    }

    @Test("namespace labels changed: the groups chosen by namespace selectors are filled again")
    func refill() throws {
        let set = try PolicyDocuments.read(Self.policy("db", "db", port: 5432))
        let r = PolicyRuleset(set)
        let g = r.groups[0].id
        let t = PolicyTable.transaction(from: r, to: r, members: [g: [IPAddress("10.9.0.7")!]], refill: [g])
        let flush = t.commands.firstIndex(of: "flush set inet berth-policy \(g)4")!
        let add = t.commands.firstIndex(of: "add element inet berth-policy \(g)4 { 10.9.0.7 }")!
        #expect(flush < add)
    }

    @Test("bridged traffic must pass the inet hooks: each setting named when it is 0 or missing")
    func bridgedTraffic() {
        #expect(bridgedTrafficProblem { _ in "1" } == nil)
        #expect(bridgedTrafficProblem { _ in nil }?.contains("br_netfilter is not loaded") == true)
        #expect(bridgedTrafficProblem { $0.hasSuffix("ip6tables") ? "0" : "1" }?.hasPrefix("net.bridge.bridge-nf-call-ip6tables is 0") == true)
    }
}
