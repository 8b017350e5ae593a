import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// Runs a conflist the way libcni does: each plugin gets the list's `name`
/// and `cniVersion`, the `runtimeConfig` of the capabilities it declares, and
/// the previous plugin's result as `prevResult`; DEL runs the list in reverse
/// with the cached final result.
struct ConflistRunner {
    let net: TestNetwork
    let conflist: JSONObject
    let runtimeConfig: JSONObject

    func pluginConfig(_ plugin: JSONObject, prevResult: JSON?) -> String {
        var c = plugin
        c["name"] = conflist["name"]
        c["cniVersion"] = conflist["cniVersion"]
        var rc = JSONObject()
        for (capability, enabled) in plugin["capabilities"]?.objectValue?.entries ?? [] where enabled == .bool(true) {
            if let value = runtimeConfig[capability] { rc[capability] = value }
        }
        if !rc.isEmpty { c["runtimeConfig"] = .object(rc) }
        if let prevResult { c["prevResult"] = prevResult }
        return JSON.object(c).serialized()
    }

    var plugins: [JSONObject] { conflist["plugins"]!.arrayValue!.map { $0.objectValue! } }

    /// ADD through the chain; returns the final result, or the failing run.
    func add(netns: String, containerID: String) -> (result: JSON?, failure: PluginRun?) {
        var prev: JSON?
        for plugin in plugins {
            let run = net.run("ADD", netns: netns, containerID: containerID,
                              config: pluginConfig(plugin, prevResult: prev), plugin: plugin["type"]!.stringValue!)
            if run.status != 0 { return (nil, run) }
            prev = run.json
        }
        return (prev, nil)
    }

    func command(_ command: String, netns: String, containerID: String, cached: JSON?) -> PluginRun? {
        let order = command == "DEL" ? plugins.reversed() : plugins
        for plugin in order {
            let run = net.run(command, netns: netns, containerID: containerID,
                              config: pluginConfig(plugin, prevResult: cached), plugin: plugin["type"]!.stringValue!)
            if run.status != 0 { return run }
        }
        return nil
    }
}

/// The host's iptables rules and chains and nftables tables, as they were
/// before the first of the tests now running that change them; whatever was
/// added since is removed when the last of them is done (base chains that the
/// reference portmap and firewall plugins leave behind, tables iptables-nft
/// makes by merely listing one). Tests run side by side, so one that finished
/// first must not remove another's rules: the first holder records, the last
/// cleans. `added(in:)` is what came since this holder's own snapshot.
final class IPTablesSnapshot: @unchecked Sendable {
    static let tables = ["nat", "filter", "mangle"]
    private static let lock = NSLock()
    nonisolated(unsafe) private static var holders = 0
    nonisolated(unsafe) private static var baseline: [String: Set<String>] = [:]
    nonisolated(unsafe) private static var baselineTables: Set<String> = []
    let before: [String: Set<String>]
    private var held = true

    init() {
        before = IPTablesSnapshot.rules()
        IPTablesSnapshot.lock.withLock {
            if IPTablesSnapshot.holders == 0 {
                IPTablesSnapshot.baselineTables = IPTablesSnapshot.nftTables()
                IPTablesSnapshot.baseline = IPTablesSnapshot.rules()
            }
            IPTablesSnapshot.holders += 1
        }
    }

    static func rules() -> [String: Set<String>] {
        Dictionary(uniqueKeysWithValues: tables.map {
            ($0, Set(shell(["iptables", "-t", $0, "-S"]).out.split(separator: "\n").map(String.init)))
        })
    }

    func added(in table: String) -> [String] {
        shell(["iptables", "-t", table, "-S"]).out.split(separator: "\n").map(String.init)
            .filter { !before[table, default: []].contains($0) }
    }

    static func nftTables() -> Set<String> {
        Set(shell(["nft", "list", "tables"]).out.split(separator: "\n").map(String.init))
    }

    func restore() {
        IPTablesSnapshot.lock.withLock {
            guard held else { return }
            held = false
            IPTablesSnapshot.holders -= 1
            if IPTablesSnapshot.holders == 0 { IPTablesSnapshot.removeAdded() }
        }
    }

    private static func removeAdded() {
        for table in tables {
            let new = shell(["iptables", "-t", table, "-S"]).out.split(separator: "\n").map(String.init)
                .filter { !baseline[table, default: []].contains($0) }
            for rule in new where rule.hasPrefix("-A ") {
                shell(["sh", "-c", "iptables -t \(table) -D " + rule.dropFirst(3)])
            }
            for chain in new where chain.hasPrefix("-N ") {
                shell(["iptables", "-t", table, "-F", String(chain.dropFirst(3))])
            }
            for chain in new where chain.hasPrefix("-N ") {
                shell(["iptables", "-t", table, "-X", String(chain.dropFirst(3))])
            }
        }
        // Not the names table: the names suites, outside this group, may be using
        // it right now (each removes its own chain, and the table when it is empty).
        for table in nftTables().subtracting(baselineTables) where table.hasPrefix("table ") && !table.hasSuffix(" berth-names") {
            shell(["sh", "-c", "nft delete " + table])
        }
    }
}

/// Tests that change nftables or iptables. They run side by side, each on
/// rules of its own network; what the host had before them is put back by
/// IPTablesSnapshot and HostForwarding once the last of them is done.
@Suite("firewall-touching tests", .ownThreads, .enabled(if: runningAsRoot, "needs root for namespaces, links and rules"))
struct FirewallTouchingTests {}

extension FirewallTouchingTests {
@Suite("berth in a plugin chain", .ownThreads)
struct ChainTests {
    @Test("a conflist of berth then the reference portmap: ADD, CHECK, then DEL in reverse cleans everything")
    func berthThenPortmap() throws {
        let net = TestNetwork()
        let iptables = IPTablesSnapshot()
        defer {
            iptables.restore()
            net.cleanUp()
        }
        let ns = net.makeNamespace()
        let id = "chain-\(net.id)"
        let berth = try JSON.parse(net.config()).objectValue!
        let conflist: JSONObject = [
            "cniVersion": .string("1.0.0"), "name": .string(net.name),
            "plugins": .array([
                .object(berth),
                .object(["type": .string("portmap"), "capabilities": .object(["portMappings": .bool(true)])]),
            ]),
        ]
        let mapping: JSON = .array([.object(["hostPort": .int(18080), "containerPort": .int(80), "protocol": .string("tcp")])])
        let runner = ConflistRunner(net: net, conflist: conflist, runtimeConfig: ["portMappings": mapping])

        let (result, failure) = runner.add(netns: ns, containerID: id)
        try #require(failure == nil, "\(failure?.stdout ?? "")")
        let final = try #require(result)
        // portmap passes berth's result on; the address is reachable.
        #expect(final["interfaces"]?.arrayValue?.count == 3)
        let address = try #require(firstAddress(final))
        #expect(net.ping(from: ns, to: "\(net.subnetBase).1"))
        #expect(iptables.added(in: "nat").contains { $0.contains(id) && $0.contains("18080") })

        // CHECK of berth's own part of the chain against the final result. (The
        // reference portmap 1.1.1 fails its own CHECK on IPv4-only networks: it
        // looks for an IPv6 chain it never made.)
        let check = net.run("CHECK", netns: ns, containerID: id, config: runner.pluginConfig(berth, prevResult: final))
        #expect(check.status == 0, "\(check.stdout)")

        let delFailure = runner.command("DEL", netns: ns, containerID: id, cached: final)
        #expect(delFailure == nil, "\(delFailure?.stdout ?? "")")
        #expect(!iptables.added(in: "nat").contains { $0.contains(id) })
        #expect(net.portsOfBridge().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(net.dataDir)/\(net.name)/\(address)"))
    }
}
}

extension FirewallTouchingTests.ChainTests {
    @Test("berth then portmap, tuning, bandwidth and firewall: ADD, CHECK of the whole chain, a host port forwarded to the container's server, DEL in reverse cleans everything")
    func fullChain() throws {
        let net = TestNetwork()
        let firewall = IPTablesSnapshot()
        var server: Process?
        defer {
            if let server { kill(server.processIdentifier, SIGKILL) }
            server?.waitUntilExit()
            firewall.restore()
            net.cleanUp()
        }
        let ns = net.makeNamespace()
        let id = "full-\(net.id)"
        // ifb devices only: other suites add and remove veths and bridges meanwhile.
        func ifbLinks() -> Set<String> {
            Set(shell(["ip", "-o", "link", "show", "type", "ifb"]).out.split(separator: "\n")
                .compactMap { $0.split(separator: ":").dropFirst().first.map { $0.trimmingCharacters(in: .whitespaces) } })
        }
        let ifbBefore = ifbLinks()
        let berth = try JSON.parse(net.config(ipam: #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","subnet":"\#(net.subnetBase).0/24"}"#)).objectValue!
        let plugins: [JSON] = [
            .object(berth),
            try JSON.parse(#"{"type":"portmap","capabilities":{"portMappings":true},"snat":true}"#),
            try JSON.parse(#"{"type":"tuning","sysctl":{"net.ipv4.conf.eth0.arp_notify":"1"}}"#),
            try JSON.parse(#"{"type":"bandwidth","capabilities":{"bandwidth":true}}"#),
            try JSON.parse(#"{"type":"firewall","backend":"iptables"}"#),
        ]
        let conflist: JSONObject = ["cniVersion": .string("1.0.0"), "name": .string(net.name), "plugins": .array(plugins)]
        let hostPort = 18000 + Int(getpid() % 1000)
        let runner = ConflistRunner(net: net, conflist: conflist, runtimeConfig: [
            "portMappings": .array([.object(["hostPort": .int(hostPort), "containerPort": .int(8080), "protocol": .string("tcp")])]),
            "bandwidth": .object(["ingressRate": .int(100_000_000), "ingressBurst": .int(1_000_000),
                                  "egressRate": .int(100_000_000), "egressBurst": .int(1_000_000)]),
        ])

        let (result, failure) = runner.add(netns: ns, containerID: id)
        try #require(failure == nil, "\(failure?.stdout ?? "")")
        let final = try #require(result)
        #expect(final["interfaces"]?.arrayValue?.count ?? 0 >= 3)
        #expect(net.inNamespace(ns, ["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]).out.hasPrefix("1"))

        // CHECK through the whole chain, as libcni runs it, but for portmap: Debian's
        // portmap 1.1.1 fails its own CHECK whenever ip6tables exists (it looks for an
        // IPv6 chain it never made for an IPv4-only container), with any main plugin.
        var checkable = conflist
        checkable["plugins"] = .array(plugins.filter { $0["type"] != .string("portmap") })
        let check = ConflistRunner(net: net, conflist: checkable, runtimeConfig: runner.runtimeConfig)
            .command("CHECK", netns: ns, containerID: id, cached: final)
        #expect(check == nil, "\(check?.stdout ?? "")")

        // A server in the container, reached through the host port on the bridge's own address.
        let address = try #require(firstAddress(final))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", URL(fileURLWithPath: ns).lastPathComponent,
                       "python3", "-m", "http.server", "8080", "--bind", address]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        server = p
        let gateway = "\(net.subnetBase).1"
        var reached = false
        for _ in 0..<20 where !reached {
            let probe = shell(["python3", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://\(gateway):\(hostPort)/', timeout=1).status == 200 else 1)"])
            reached = probe.status == 0
            if !reached { usleep(200_000) }
        }
        #expect(reached, "host port \(hostPort) on \(gateway) did not reach the container's server: \(shell(["iptables", "-t", "nat", "-S"]).out) \(net.inNamespace(ns, ["ss", "-ltn"]).out)")

        let del = runner.command("DEL", netns: ns, containerID: id, cached: final)
        #expect(del == nil, "\(del?.stdout ?? "")")
        #expect(net.portsOfBridge().isEmpty)
        #expect(!firewall.added(in: "nat").contains { $0.contains(id) })
        #expect(!firewall.added(in: "filter").contains { $0.contains(address) })
        // bandwidth's ifb device is gone too.
        #expect(ifbLinks().subtracting(ifbBefore).isEmpty, "\(ifbLinks().subtracting(ifbBefore))")
    }
}
