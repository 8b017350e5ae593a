/// Isolation between networks (the plugin's `isolate`), kept per bridge in
/// one chain of `inet berth` that sees routed traffic (the forward hook):
/// traffic between two ports of one bridge is switched, never routed, so
/// a network's own traffic is not in its way.
///
/// - `isolate: true`: traffic between this network's bridge and the bridge
///   of any other isolated network is dropped, either way.
/// - `isolate: "strict"`: traffic between this network's bridge and any
///   other interface of the host is dropped, either way, except through
///   the way out (the interfaces of the host's default routes, as they
///   were when an attachment of the network was last added).
/// - Always passing: replies of allowed connections (conntrack), published
///   ports (connections a DNAT rule, as the `portmap` plugin's, sent
///   here), and traffic routed from a bridge back to itself.
///
/// The rules are fixed; what varies is in sets keyed by bridge name, so an
/// ADD adds elements and the last DEL of a network removes them. Every ADD
/// writes the chain's rules again in the same transaction as its elements
/// (one batch: they are replaced at once, and a chain someone flushed is
/// whole again).
public enum NetworkIsolation {
    public enum Level: String, Sendable, Equatable {
        case isolated, strict
    }

    public static let chain = NFTChain(table: .ip, name: "isolation", type: "filter", hook: "forward", priority: "-10")
    /// Bridges of isolated networks (both levels).
    public static let isolatedSet = "isolatedbridges"
    /// Bridges of strictly isolated networks.
    public static let strictSet = "strictbridges"
    /// The way out: the interfaces of the host's default routes.
    public static let waysOutSet = "waysout"
    /// "B" . "B" for each isolated bridge: routed back to itself is its own traffic.
    public static let sameBridgeSet = "samebridge"

    /// The rules, in order.
    /// Each counts what it decides (`nft list chain inet berth isolation`).
    static let rules = [
        "ct state established,related counter accept",
        "ct status dnat counter accept",
        "iifname . oifname @\(sameBridgeSet) counter accept",
        "iifname @\(isolatedSet) oifname @\(isolatedSet) counter drop",
        "iifname @\(strictSet) oifname != @\(waysOutSet) counter drop",
        "oifname @\(strictSet) iifname != @\(waysOutSet) counter drop",
    ]

    /// The one transaction that isolates `bridge` at `level`, with `waysOut`
    /// as the host's way out (for strict networks).
    public static func transaction(bridge: String, level: Level, waysOut: [String]) -> NFTTransaction {
        let table = chain.table
        var t = NFTTransaction()
        t.addSet(isolatedSet, in: table, type: "ifname")
        t.addSet(strictSet, in: table, type: "ifname")
        t.addSet(waysOutSet, in: table, type: "ifname")
        t.addSet(sameBridgeSet, in: table, type: "ifname . ifname")
        t.add(chain)
        t.flushChain(chain.name, in: table)
        for rule in rules { t.addRule(rule, to: chain.name, in: table) }
        let name = quoted(bridge)
        t.addElements([name], to: isolatedSet, in: table)
        t.addElements(["\(name) . \(name)"], to: sameBridgeSet, in: table)
        if level == .strict {
            t.addElements([name], to: strictSet, in: table)
            t.flushSet(waysOutSet, in: table)
            t.addElements(waysOut.map(quoted), to: waysOutSet, in: table)
        }
        return t
    }

    /// Isolates `bridge` (see `transaction`).
    public static func isolate(bridge: String, level: Level, waysOut: [String]) throws(FirewallError) {
        try transaction(bridge: bridge, level: level, waysOut: waysOut).commit()
    }

    /// Removes `bridge` from the sets (its network's last attachment went).
    /// Elements already gone, or sets never made, are fine.
    public static func release(bridge: String) throws(FirewallError) {
        let table = chain.table
        let name = quoted(bridge)
        for (set, element) in [(isolatedSet, name), (strictSet, name), (sameBridgeSet, "\(name) . \(name)")] {
            var t = NFTTransaction()
            t.deleteElements([element], from: set, in: table)
            do {
                try t.commit()
            } catch {
                if !error.message.containsText("No such file or directory") { throw error }
            }
        }
    }

    /// The isolation sets' members now, by set name; empty when the table has none.
    public static func members() throws(FirewallError) -> [String: [String]] {
        var out: [String: [String]] = [:]
        let nft = try NFTContext(json: true)
        for set in [isolatedSet, strictSet, waysOutSet, sameBridgeSet] {
            out[set] = try nft.elements(of: set, in: chain.table)
        }
        return out
    }

    /// An interface name as an nft string (names Berth validated hold no quote).
    static func quoted(_ name: String) -> String { "\"\(name)\"" }
}
