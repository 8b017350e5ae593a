import Testing
@testable import BerthFirewall

@Suite("nftables transactions (the text libnftables is given)")
struct NFTTransactionTests {
    @Test("a base chain declares its table once, its hook, type, priority and policy")
    func chains() {
        var t = NFTTransaction()
        t.add(NFTChain.masquerade)
        t.add(NFTChain(table: .ip, name: "forward", type: "filter", hook: "forward", priority: "filter", policy: "drop"))
        #expect(t.commands == [
            "add table inet berth",
            "add chain inet berth postrouting { type nat hook postrouting priority srcnat ; policy accept ; }",
            "add chain inet berth forward { type filter hook forward priority filter ; policy drop ; }",
        ])
        #expect(NFTChain.macSpoof.table.description == "bridge berth")
    }

    @Test("sets, their elements and tagged rules; empty element lists are no command")
    func setsAndRules() {
        var t = NFTTransaction()
        t.addSet("pods4", in: .ip, type: "ipv4_addr", flags: ["interval"])
        t.addElements(["10.1.0.5", "10.1.0.0/28"], to: "pods4", in: .ip)
        t.addElements([], to: "pods4", in: .ip)
        t.deleteElements(["10.1.0.5"], from: "pods4", in: .ip)
        t.deleteElements([], from: "pods4", in: .ip)
        t.addChain("podsin", in: .ip)
        t.addRule("ip saddr @pods4 accept", to: "podsin", in: .ip, comment: "berth:n:c:eth0")
        t.addRule("ct state established,related accept", to: "podsin", in: .ip)
        t.deleteRule(handle: 12, from: "podsin", in: .ip)
        t.flushSet("pods4", in: .ip)
        t.flushChain("podsin", in: .ip)
        #expect(t.commands == [
            "add table inet berth",
            "add set inet berth pods4 { type ipv4_addr ; flags interval ; }",
            "add element inet berth pods4 { 10.1.0.5, 10.1.0.0/28 }",
            "delete element inet berth pods4 { 10.1.0.5 }",
            "add chain inet berth podsin",
            "add rule inet berth podsin ip saddr @pods4 accept comment \"berth:n:c:eth0\"",
            "add rule inet berth podsin ct state established,related accept",
            "delete rule inet berth podsin handle 12",
            "flush set inet berth pods4",
            "flush chain inet berth podsin",
        ])
        #expect(t.text == t.commands.joined(separator: "\n"))
    }

    @Test("an empty transaction commits without loading libnftables")
    func emptyCommit() throws {
        let t = NFTTransaction()
        #expect(t.isEmpty)
        try t.commit()
    }

    @Test("the one backend type reads ipMasqBackend's values")
    func backends() {
        #expect(FirewallBackend(rawValue: "iptables") == .iptables)
        #expect(FirewallBackend(rawValue: "pf") == nil)
        #expect(FirewallBackend.allCases.map(\.rawValue) == ["nftables", "iptables"])
    }

    @Test("isolation: fixed rules in order (replies, published ports and a bridge's own traffic first), elements per bridge")
    func isolation() {
        let plain = NetworkIsolation.transaction(bridge: "br-a", level: .isolated, waysOut: ["eth0"]).commands
        #expect(plain.contains("add chain inet berth isolation { type filter hook forward priority -10 ; policy accept ; }"))
        #expect(plain.contains("flush chain inet berth isolation"))
        let rules = plain.filter { $0.hasPrefix("add rule inet berth isolation ") }.map { $0.dropFirst("add rule inet berth isolation ".count) }
        #expect(rules == ["ct state established,related counter accept", "ct status dnat counter accept",
                          "iifname . oifname @samebridge counter accept", "iifname @isolatedbridges oifname @isolatedbridges counter drop",
                          "iifname @strictbridges oifname != @waysout counter drop", "oifname @strictbridges iifname != @waysout counter drop"])
        #expect(plain.contains(#"add element inet berth isolatedbridges { "br-a" }"#))
        #expect(plain.contains(#"add element inet berth samebridge { "br-a" . "br-a" }"#))
        #expect(!plain.contains { $0.contains("strictbridges {") && $0.hasPrefix("add element") }, "not strict")
        #expect(!plain.contains { $0.contains("waysout") && $0.hasPrefix("add element") })
        let strict = NetworkIsolation.transaction(bridge: "br-s", level: .strict, waysOut: ["eth0", "wlan0"]).commands
        #expect(strict.contains(#"add element inet berth strictbridges { "br-s" }"#))
        #expect(strict.contains("flush set inet berth waysout"))
        #expect(strict.contains(#"add element inet berth waysout { "eth0", "wlan0" }"#))
        // The sets are declared before the chain whose rules name them.
        let firstSet = plain.firstIndex { $0.hasPrefix("add set") }!, chain = plain.firstIndex { $0.hasPrefix("add chain") }!
        #expect(firstSet < chain)
    }
}
