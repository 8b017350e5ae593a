import BerthJSON
import BerthNet
import BerthPolicy

/// Network policy in the kernel: table `inet berth-policy`, written from a
/// `PolicyRuleset`. A change of policies is one transaction from the
/// ruleset in force to the new one (sets of new groups filled, chains of
/// changed policies rewritten, the base chains rewritten, what is no longer
/// used removed), so there is no moment where neither holds; chains of
/// unchanged policies keep their counters. Pods come and go as set elements only.
public enum PolicyTable {
    public static let table = NFTTable(family: .inet, name: "berth-policy")
    static let egressBase = NFTChain(table: table, name: PolicyRuleset.egressChain, type: "filter", hook: "forward",
                                     priority: PolicyRuleset.egressPriority)
    static let ingressBase = NFTChain(table: table, name: PolicyRuleset.ingressChain, type: "filter", hook: "forward",
                                      priority: PolicyRuleset.ingressPriority)

    /// The transaction from `old` (nil: whatever is there is replaced) to
    /// `new`, with `members` (addresses by group id) filling each new
    /// group's sets, and those of the groups in `refill` again.
    public static func transaction(from old: PolicyRuleset?, to new: PolicyRuleset, members: [String: [IPAddress]],
                                   refill: Set<String> = []) -> NFTTransaction {
        var t = NFTTransaction()
        if old == nil { t.recreate(table) } else { t.add(table) }
        let oldGroups = Set((old?.groups ?? []).map(\.id))
        for group in new.groups {
            let isNew = !oldGroups.contains(group.id)
            for family in [IPAddress.Family.v4, .v6] {
                let name = setName(group.id, family)
                t.addSet(name, in: table, type: family == .v4 ? "ipv4_addr" : "ipv6_addr")
                if !isNew && refill.contains(group.id) { t.flushSet(name, in: table) }
                if isNew || refill.contains(group.id) {
                    t.addElements((members[group.id] ?? []).filter { $0.family == family }.map(\.description), to: name, in: table)
                }
            }
        }
        for counter in new.counters where !(old?.counters.contains(counter) ?? false) { t.addCounter(counter, in: table) }
        for (chain, rules) in new.chains.sorted(by: { $0.key < $1.key }) where old?.chains[chain] != rules {
            t.addChain(chain, in: table)
            if old?.chains[chain] != nil { t.flushChain(chain, in: table) }
            for rule in rules { t.addRule(rule.body, to: chain, in: table, comment: rule.comment) }
        }
        for (base, rules) in [(egressBase, new.egress), (ingressBase, new.ingress)] {
            t.add(base)
            t.flushChain(base.name, in: table)
            for rule in rules { t.addRule(rule.body, to: base.name, in: table, comment: rule.comment) }
        }
        guard let old else { return t }
        for chain in old.chains.keys.sorted() where new.chains[chain] == nil {
            t.flushChain(chain, in: table)
            t.deleteChain(chain, from: table)
        }
        for counter in old.counters where !new.counters.contains(counter) { t.deleteCounter(counter, from: table) }
        let newGroups = Set(new.groups.map(\.id))
        for group in old.groups where !newGroups.contains(group.id) {
            t.deleteSet(setName(group.id, .v4), from: table)
            t.deleteSet(setName(group.id, .v6), from: table)
        }
        return t
    }

    /// Loads libnftables now (a process about to change the sets can do
    /// this on another thread while it does other work).
    public static func preload() throws(FirewallError) {
        _ = try LibNFTables.load()
    }

    public static func setName(_ group: String, _ family: IPAddress.Family) -> String {
        group + (family == .v4 ? "4" : "6")
    }

    /// Puts `addresses` into the sets of `groups` (a pod that arrived), as one transaction.
    public static func admit(_ addresses: [IPAddress], to groups: [String]) throws(FirewallError) {
        var t = NFTTransaction()
        for group in groups {
            for family in [IPAddress.Family.v4, .v6] {
                t.addElements(addresses.filter { $0.family == family }.map(\.description), to: setName(group, family), in: table)
            }
        }
        do {
            try t.commit()
        } catch {
            if error.message.containsText("No such file or directory") {
                throw FirewallError(operation: "nftables",
                                    message: "network policy is in force but table \(table) lacks its sets (someone removed them): apply the policies again")
            }
            throw error
        }
    }

    /// Takes `addresses` out of the sets of `groups` (a pod that left);
    /// elements or sets already gone are fine. `session`: see `NFTSession`.
    public static func release(_ addresses: [IPAddress], from groups: [String], session: NFTSession? = nil) throws(FirewallError) {
        var elements: [(set: String, element: String)] = []
        for group in groups {
            for a in addresses { elements.append((setName(group, a.family), a.description)) }
        }
        var t = NFTTransaction()
        for (set, element) in elements { t.deleteElements([element], from: set, in: table) }
        do {
            try t.commit(in: session)
        } catch {
            guard error.message.containsText("No such file or directory") else { throw error }
            // Some were gone: the rest one by one.
            for (set, element) in elements {
                var one = NFTTransaction()
                one.deleteElements([element], from: set, in: table)
                do { try one.commit(in: session) } catch {
                    if !error.message.containsText("No such file or directory") { throw error }
                }
            }
        }
    }

    /// Whether the table's base chains are there (what a change builds on).
    public static func isInPlace() throws(FirewallError) -> Bool {
        let nft = try NFTContext(json: true)
        for chain in [PolicyRuleset.ingressChain, PolicyRuleset.egressChain] where try nft.listed("list chain \(table) \(chain)").isEmpty {
            return false
        }
        return true
    }

    /// Removes the table (no policy left).
    public static func remove() throws(FirewallError) {
        var t = NFTTransaction()
        t.add(table)
        t.deleteTable(table)
        try t.commit()
    }

    /// Packets counted by each named counter (the drops), by name.
    public static func dropCounts() throws(FirewallError) -> [String: Int] {
        var out: [String: Int] = [:]
        for item in try NFTContext(json: true).listed("list counters table \(table)") {
            if let c = item["counter"], let name = c["name"]?.stringValue { out[name] = c["packets"]?.intValue ?? 0 }
        }
        return out
    }

    /// Packets accepted by the rules of `chain`, summed by the rules' comments ("ingress 1").
    public static func ruleCounts(chain: String) throws(FirewallError) -> [String: Int] {
        var out: [String: Int] = [:]
        for item in try NFTContext(json: true).listed("list chain \(table) \(chain)") {
            guard let rule = item["rule"], let comment = rule["comment"]?.stringValue else { continue }
            for e in rule["expr"]?.arrayValue ?? [] {
                if let packets = e["counter"]?["packets"]?.intValue { out[comment, default: 0] += packets }
            }
        }
        return out
    }

    /// The elements of a group's set now (tests, `show`).
    public static func members(of group: String, _ family: IPAddress.Family) throws(FirewallError) -> [String] {
        try NFTContext(json: true).elements(of: setName(group, family), in: table)
    }
}

/// Whether bridged traffic passes the inet forward hook (br_netfilter with
/// `net.bridge.bridge-nf-call-iptables` and `-ip6tables` at 1), which
/// policy between pods of one bridge needs. `read` gives a setting's value
/// (nil: not there, br_netfilter not loaded). Nil when it does; else the problem.
public func bridgedTrafficProblem(read: (String) -> String?) -> String? {
    for key in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"] {
        guard let value = read(key) else {
            return "\(key) is not there (module br_netfilter is not loaded): traffic between pods of one bridge would bypass policy"
        }
        if value != "1" {
            return "\(key) is \(value), not 1: traffic between pods of one bridge would bypass policy"
        }
    }
    return nil
}
