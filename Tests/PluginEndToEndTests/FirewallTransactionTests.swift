import Foundation
import Testing
import BerthTestSupport
import BerthFirewall

@Suite("nftables transactions on the host", .ownThreads, .enabled(if: runningAsRoot, "needs root for nftables"))
struct FirewallTransactionTests {
    @Test("a transaction whose last command fails changes nothing; the same without it applies whole")
    func allOrNothing() throws {
        let table = NFTTable(family: .inet, name: "berthtest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { shell(["nft", "delete", "table", "inet", table.name]) }
        var good = NFTTransaction()
        good.addSet("pods", in: table, type: "ipv4_addr")
        good.addElements(["10.250.0.1", "10.250.0.2"], to: "pods", in: table)
        good.addChain("podsin", in: table)
        good.addRule("ip saddr @pods accept", to: "podsin", in: table, comment: "berthtest")
        var bad = good
        bad.deleteElements(["10.250.0.9"], from: "pods", in: table)  // not in the set: the kernel refuses
        #expect(throws: FirewallError.self) { try bad.commit() }
        #expect(shell(["nft", "list", "table", "inet", table.name]).status != 0, "the refused transaction left its table")
        try good.commit()
        let listing = shell(["nft", "list", "table", "inet", table.name]).out
        #expect(listing.contains("10.250.0.1") && listing.contains("10.250.0.2"), "\(listing)")
        #expect(listing.contains("ip saddr @pods accept comment \"berthtest\""), "\(listing)")
        var swap = NFTTransaction()
        swap.deleteElements(["10.250.0.1"], from: "pods", in: table)
        swap.addElements(["10.250.0.3"], to: "pods", in: table)
        try swap.commit()
        let after = shell(["nft", "list", "set", "inet", table.name, "pods"]).out
        #expect(!after.contains("10.250.0.1,") && !after.contains("10.250.0.1 ") && after.contains("10.250.0.3"), "\(after)")
    }
}
