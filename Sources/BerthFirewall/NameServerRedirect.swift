import BerthNet

/// When port 53 of a network's gateway is taken (a DNS server already on
/// the host listening on every address, the case that stops aardvark-dns),
/// the network's DNS server listens on a port of its own and containers'
/// queries to GATEWAY:53, arriving on the bridge, are sent there: one base
/// chain per network in `inet berth-names` (nat, prerouting), removed with
/// the server. Replies go back through conntrack as from port 53.
public enum NameServerRedirect {
    public static let table = NFTTable(family: .inet, name: "berth-names")

    /// The network's chain: `dns_` and a hash of its name (a bare nft identifier whatever the name).
    public static func chain(network: String) -> NFTChain {
        NFTChain(table: table, name: "dns_" + String(hexString(SHA256.digest(Array(network.utf8))).prefix(12)),
                 type: "nat", hook: "prerouting", priority: "dstnat")
    }

    /// The transaction that sends queries to `gateways` port 53 from `bridge` to `port`.
    public static func transaction(network: String, bridge: String, gateways: [IPAddress], port: Int) -> NFTTransaction {
        let chain = chain(network: network)
        var t = NFTTransaction()
        t.add(chain)
        t.flushChain(chain.name, in: table)
        for gateway in gateways {
            let (match, to) = gateway.family == .v4 ? ("ip daddr \(gateway)", "ip to \(gateway):\(port)") : ("ip6 daddr \(gateway)", "ip6 to [\(gateway)]:\(port)")
            t.addRule("iifname \"\(bridge)\" \(match) meta l4proto { tcp, udp } th dport 53 counter dnat \(to)", to: chain.name, in: table)
        }
        return t
    }

    public static func apply(network: String, bridge: String, gateways: [IPAddress], port: Int) throws(FirewallError) {
        try transaction(network: network, bridge: bridge, gateways: gateways, port: port).commit()
    }

    /// Removes the network's chain, and the table with the last one; one never made is fine.
    public static func remove(network: String) throws(FirewallError) {
        var t = NFTTransaction()
        t.flushChain(chain(network: network).name, in: table)
        t.deleteChain(chain(network: network).name, from: table)
        let nft = try NFTContext(json: true)
        do {
            try nft.run(t.text)
        } catch {
            if !error.message.containsText("No such file or directory") { throw error }
        }
        if try nft.listed("list table \(table)").allSatisfy({ $0["chain"] == nil }) {
            do { _ = try nft.run("delete table \(table)") } catch {
                if !error.message.containsText("No such file or directory") { throw error }
            }
        }
    }
}
