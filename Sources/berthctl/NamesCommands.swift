import ArgumentParser
import BerthCNIClient
import BerthJSON
import BerthNames
import BerthPlugin
import Foundation

/// `berthctl dns ...`: the names a network's DNS server answers on this node.
struct DNSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns",
        abstract: "Names on a network (its berth config's \"names\"): what its DNS server answers.",
        subcommands: [ListNames.self])

    struct ListNames: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List a network's names: name, addresses, attachment, since, node.",
                                                        aliases: ["list"])
        @Argument(help: "The network's name (in its conflist).") var network: String
        @Option(name: .customLong("cni-conf-dir"), help: "Where the network configs are.") var cniConfDirectory: String = NetworkList.defaultDirectory
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() throws {
            let names = try DNSCommand.networkNames(network, cniConfDirectory: cniConfDirectory)
            let (local, remote) = try names.entries()
            let entries = (local.values.sorted { $0.attachment < $1.attachment }) + remote.values.sorted { $0.attachment < $1.attachment }
            if json {
                print(JSON.array(entries.map { e in
                    var o: JSONObject = ["attachment": .string(e.attachment), "names": .array(e.names.map(JSON.string)),
                                         "addresses": .array(e.addresses.map { .string($0.description) }), "since": .int(e.since)]
                    if let node = e.node { o["node"] = .string(node) }
                    return .object(o)
                }).serialized(pretty: true))
                return
            }
            let formatter = ISO8601DateFormatter()
            var rows = [["NAME", "ADDRESSES", "ATTACHMENT", "SINCE", "NODE"]]
            for e in entries {
                let since = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(e.since)))
                let addresses = e.addresses.map(\.description).joined(separator: ",")
                for name in e.names.isEmpty ? ["-"] : e.names {
                    rows.append([name == "-" ? name : "\(name).\(names.config.domain)", addresses, e.attachment, since, e.node ?? "this"])
                }
            }
            if rows.count == 1 {
                writeError("berthctl: network \(network) has no names on this node")
                return
            }
            let widths = (0..<5).map { i in rows.map { $0[i].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { i, cell in i == 4 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined())
            }
        }
    }

    /// The names of `network` as its conflist's berth plugin declares them (domain, run directory).
    static func networkNames(_ network: String, cniConfDirectory: String) throws -> NetworkNames {
        let list = try NetworkList.load(name: network, directory: cniConfDirectory)
        for plugin in list.plugins where plugin["type"] == .string("berth") {
            var object = plugin
            object["name"] = .string(network)
            object["cniVersion"] = .string(list.cniVersion)
            let config = try BridgeConfig(Array(JSON.object(object).serialized().utf8))
            guard let names = config.names else { continue }
            return NetworkNames(network: network, bridge: config.bridge, runDirectory: config.runDirectory, config: names)
        }
        throw CLIError("network \(network) has no names: no berth plugin of \(list.path) sets \"names\"")
    }
}
