import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// A dual-stack network with names on: its own bridge, subnets, run
/// directory (where the names and the DNS server's files live) and the
/// resolv.conf files written for its namespaces, all removed by `cleanUp`.
final class NamesNetwork: @unchecked Sendable {
    let net = TestNetwork()
    let runDir: String
    let domain: String
    private var resolvDirs: [String] = []

    init(domain: String = "berth.internal") {
        runDir = NSTemporaryDirectory() + "berthtest-names-\(net.id)"
        self.domain = domain
    }

    var config: String {
        let ipam = #"{"type":"berth-ipam","dataDir":"\#(net.dataDir)","ranges":[[{"subnet":"\#(net.subnetBase).0/24"}],[{"subnet":"\#(net.subnet6Base)::/64"}]]}"#
        return net.config(version: "1.1.0", ipam: ipam, extra: #","runDir":"\#(runDir)","names":{"domain":"\#(domain)"}"#)
    }
    var gateway4: String { "\(net.subnetBase).1" }
    var gateway6: String { "\(net.subnet6Base)::1" }
    var directory: String { "\(runDir)/dns/\(net.name)" }

    /// The server's pid, from its pid file (nil when there is none).
    var serverPID: Int32? {
        (try? String(contentsOfFile: "\(directory)/dnsmasq.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// ADD of a new namespace as `id`, with CNI_ARGS `args`; its resolv.conf written from the result's dns, as a runtime does.
    func add(_ id: String, args: String? = nil, config: String? = nil) throws -> (netns: String, result: JSON) {
        let ns = net.makeNamespace()
        let add = net.run("ADD", netns: ns, containerID: id, config: config ?? self.config, args: args)
        try #require(add.status == 0, "ADD \(id): \(add.stdout)")
        let result = try #require(add.json)
        let dns = result["dns"]
        let servers = dns?["nameservers"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let search = dns?["search"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let dir = "/etc/netns/\(URL(fileURLWithPath: ns).lastPathComponent)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        resolvDirs.append(dir)
        let text = servers.map { "nameserver \($0)\n" }.joined() + (search.isEmpty ? "" : "search \(search.joined(separator: " "))\n")
        try text.write(toFile: "\(dir)/resolv.conf", atomically: true, encoding: .utf8)
        return (ns, result)
    }

    func del(_ netns: String, _ id: String) -> PluginRun { net.run("DEL", netns: netns, containerID: id, config: config) }

    /// `getent` in the namespace (its resolv.conf is bind-mounted by `ip netns exec`).
    func getent(_ netns: String, _ args: [String]) -> (status: Int32, out: String) {
        net.inNamespace(netns, ["getent"] + args)
    }

    func cleanUp() {
        // GC with nothing valid forgets every name and stops the server.
        let gc = #"{"cniVersion":"1.1.0","name":"\#(net.name)","type":"berth","bridge":"\#(net.bridge)","isGateway":true,"runDir":"\#(runDir)","names":true,"cni.dev/valid-attachments":[]}"#
        shell(["\(productsDirectory)/berth"], input: gc, environment: ["CNI_COMMAND": "GC", "CNI_PATH": productsDirectory])
        if let pid = serverPID { kill(pid, SIGKILL) }
        // A redirect chain of this network's bridge still in `inet berth-names`
        // (seen when a host server held port 53 meanwhile; docs/names.md) goes too,
        // and the table with the last chain.
        let listing = shell(["nft", "list", "table", "inet", "berth-names"]).out
        var chain: String?
        for line in listing.split(separator: "\n") {
            let words = line.trimmingCharacters(in: .whitespaces).split(separator: " ")  // nft indents with tabs
            if words.first == "chain", words.count > 1 { chain = String(words[1]) }
            if line.contains("iifname \"\(net.bridge)\""), let name = chain { shell(["nft", "delete", "chain", "inet", "berth-names", name]) }
        }
        if !shell(["nft", "list", "table", "inet", "berth-names"]).out.contains("chain ") {
            shell(["nft", "delete", "table", "inet", "berth-names"])
        }
        net.cleanUp()
        for dir in resolvDirs { try? FileManager.default.removeItem(atPath: dir) }
        try? FileManager.default.removeItem(atPath: runDir)
    }
}

@Suite("names on a network (dnsmasq)", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/sbin/dnsmasq") && FileManager.default.fileExists(atPath: "/bin/busybox"),
                "needs root, dnsmasq and busybox (scripts/setup.sh installs them)"))
struct NamesTests {
    @Test("two attachments resolve each other by name with the system resolver (A, AAAA, reverse, the search domain); another network's name is NXDOMAIN; a DEL's name is gone within a second; the last DEL stops the server")
    func resolveEachOther() throws {
        let n = NamesNetwork(), other = NamesNetwork()
        defer { n.cleanUp(); other.cleanUp() }
        let (web, webResult) = try n.add("web-\(n.net.id)", args: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=Web_1")
        let dbConfig = n.config.replacingOccurrences(of: #""names""#, with: #""args":{"cni":{"aliases":["db","primary"]}},"names""#)
        let (db, dbResult) = try n.add("db-\(n.net.id)", args: "K8S_POD_NAME=database", config: dbConfig)
        let (stranger, _) = try other.add("x-\(other.net.id)", args: "K8S_POD_NAME=stranger")
        // The result's dns: the network's server on both gateways, its domain searched.
        #expect(webResult["dns"]?["nameservers"] == .array([.string(n.gateway4), .string(n.gateway6)]), "\(webResult)")
        #expect(webResult["dns"]?["domain"] == .string("berth.internal") && webResult["dns"]?["search"] == .array([.string("berth.internal")]))
        let web4 = try #require(firstAddress(webResult)), web6 = try #require(firstAddress(webResult, family: .v6))
        let db4 = try #require(firstAddress(dbResult)), db6 = try #require(firstAddress(dbResult, family: .v6))
        // A and AAAA, by the short name (search domain) and the full one, and each alias; '_' became '-'.
        for (name, v4, v6) in [("web-1", web4, web6), ("database.berth.internal", db4, db6), ("db", db4, db6), ("primary", db4, db6)] {
            let a = n.getent(web, ["ahostsv4", name]), aaaa = n.getent(web, ["ahostsv6", name])
            #expect(a.status == 0 && a.out.contains(v4), "A \(name): \(a.out)")
            #expect(aaaa.status == 0 && aaaa.out.contains(v6), "AAAA \(name): \(aaaa.out)")
        }
        #expect(n.getent(db, ["hosts", "web-1"]).out.contains(web6) || n.getent(db, ["hosts", "web-1"]).out.contains(web4))
        // Reverse, both families: the full name.
        for address in [web4, web6] {
            let ptr = n.getent(db, ["hosts", address])
            #expect(ptr.status == 0 && ptr.out.contains("web-1.berth.internal"), "PTR \(address): \(ptr.out)")
        }
        // busybox nslookup against the server itself, over IPv6.
        let look = n.net.inNamespace(web, ["busybox", "nslookup", "database.berth.internal", n.gateway6])
        #expect(look.out.contains(db4) && look.out.contains(db6), "\(look.out)")
        // A name of another network is not known here, nor this network's there.
        #expect(n.getent(web, ["hosts", "stranger"]).status != 0)
        #expect(other.getent(stranger, ["hosts", "web-1"]).status != 0)
        #expect(n.net.inNamespace(web, ["busybox", "nslookup", "stranger.berth.internal", n.gateway4]).out.contains("NXDOMAIN"))
        // DEL: the name is gone within a second; the server stays for the other attachment.
        let pid = try #require(n.serverPID)
        #expect(n.del(db, "db-\(n.net.id)").status == 0)
        #expect(cleanWait(1) { n.getent(web, ["hosts", "database"]).status != 0 }, "database still resolves a second after its DEL")
        #expect(kill(pid, 0) == 0 && n.serverPID == pid)
        // The last DEL stops the server and leaves no directory.
        #expect(n.del(web, "web-\(n.net.id)").status == 0)
        #expect(cleanWait(5) { kill(pid, 0) != 0 }, "the server outlived the network's last attachment")
        #expect(!FileManager.default.fileExists(atPath: n.directory), "\(n.directory) stays")
    }

    @Test("the server killed (SIGKILL): the next ADD starts it again, with every name")
    func serverComesBack() throws {
        let n = NamesNetwork()
        defer { n.cleanUp() }
        let (a, aResult) = try n.add("a-\(n.net.id)", args: "K8S_POD_NAME=alpha")
        let first = try #require(n.serverPID)
        kill(first, SIGKILL)
        #expect(cleanWait(2) { n.getent(a, ["hosts", "alpha"]).status != 0 }, "nothing answers once it is killed")
        let (b, _) = try n.add("b-\(n.net.id)", args: "K8S_POD_NAME=beta")
        let second = try #require(n.serverPID)
        #expect(second != first)
        let alpha = n.getent(b, ["ahostsv4", "alpha"]), alpha4 = try #require(firstAddress(aResult))
        #expect(alpha.status == 0 && alpha.out.contains(alpha4), "\(alpha.out)")
        #expect(n.getent(a, ["hosts", "beta"]).status == 0)
    }

    @Test("bad input changes nothing: a name that is no DNS name (4 from CNI_ARGS, 7 from the config), a bad domain, names without isGateway")
    func badInput() throws {
        let n = NamesNetwork()
        defer { n.cleanUp() }
        let ns = n.net.makeNamespace()
        let badArg = n.net.run("ADD", netns: ns, containerID: "bad1", config: n.config, args: "K8S_POD_NAME=web!")
        #expect(badArg.errorCode == 4 && badArg.stdout.contains("CNI_ARGS K8S_POD_NAME"), "\(badArg.stdout)")
        let aliasConfig = n.config.replacingOccurrences(of: #""names""#, with: #""args":{"cni":{"aliases":["-no-"]}},"names""#)
        let badAlias = n.net.run("ADD", netns: ns, containerID: "bad2", config: aliasConfig)
        #expect(badAlias.errorCode == 7 && badAlias.stdout.contains("args.cni.aliases"), "\(badAlias.stdout)")
        let badDomain = n.net.run("ADD", netns: ns, containerID: "bad3", config: n.config.replacingOccurrences(of: "berth.internal", with: "bad_domain"))
        #expect(badDomain.errorCode == 7 && badDomain.stdout.contains("names.domain"), "\(badDomain.stdout)")
        let noGateway = n.net.run("ADD", netns: ns, containerID: "bad4", config: n.config.replacingOccurrences(of: #""isGateway":true"#, with: #""isGateway":false"#))
        #expect(noGateway.errorCode == 7 && noGateway.stdout.contains("needs \\\"isGateway\\\""), "\(noGateway.stdout)")
        #expect(ip(["link", "show", n.net.bridge]).status != 0, "a refused ADD made the bridge")
        #expect(!FileManager.default.fileExists(atPath: n.directory) && n.serverPID == nil)
    }

    @Test("1,000 names on one network all resolve, from ten attachments of a hundred aliases each")
    func thousandNames() throws {
        let n = NamesNetwork()
        defer { n.cleanUp() }
        var first: String?
        var addresses: [String: String] = [:]
        for i in 0..<10 {
            let aliases = (0..<99).map { "\"n\(i)-\($0)\"" }.joined(separator: ",")
            let config = n.config.replacingOccurrences(of: #""names""#, with: #""args":{"cni":{"aliases":[\#(aliases)]}},"names""#)
            let (ns, result) = try n.add("k\(i)-\(n.net.id)", args: "K8S_POD_NAME=pod\(i)", config: config)
            first = first ?? ns
            addresses["pod\(i)"] = firstAddress(result)
            addresses["n\(i)-98"] = firstAddress(result)
            addresses["n\(i)-0"] = firstAddress(result)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(n.directory)/hosts.d")
        #expect(files.count == 10)
        for (name, address) in addresses {
            let a = n.getent(try #require(first), ["ahostsv4", name])
            #expect(a.out.contains(address), "\(name): \(a.out)")
        }
    }
}

extension FirewallTouchingTests {
    @Test("a DNS server already on the host's port 53 (every address) does not stop the network's: it takes a port of its own, queries to the gateway's port 53 reach it, and it listens on nothing but the gateways")
    func hostServerOnPort53() throws {
        let n = NamesNetwork()
        let hostPID = NSTemporaryDirectory() + "berthtest-hostdns-\(n.net.id).pid"
        defer {
            if let pid = (try? String(contentsOfFile: hostPID, encoding: .utf8)).flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) { kill(pid, SIGTERM) }
            try? FileManager.default.removeItem(atPath: hostPID)
            n.cleanUp()
        }
        // The host's own server, as Debian's dnsmasq package runs one: every address, port 53, no upstream.
        // It can bind only while no other test's network server holds a gateway's port 53 (names
        // tests run side by side), so it is tried until then.
        var host = (status: Int32(-1), out: "")
        _ = cleanWait(120) {
            host = shellMerged(["/usr/sbin/dnsmasq", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=53", "--pid-file=\(hostPID)",
                                "--user=nobody", "--address=/hostonly.berthtest/192.0.2.1"])
            if host.status == 0 || !host.out.contains("in use") { return true }
            usleep(250_000)
            return false
        }
        try #require(host.status == 0, "the host's dnsmasq: \(host.out)")
        let (a, aResult) = try n.add("a-\(n.net.id)", args: "K8S_POD_NAME=alpha")
        let (b, _) = try n.add("b-\(n.net.id)", args: "K8S_POD_NAME=beta")
        let pid = try #require(n.serverPID)
        let alpha = n.getent(b, ["ahostsv4", "alpha"]), alpha4 = try #require(firstAddress(aResult))
        #expect(alpha.status == 0 && alpha.out.contains(alpha4), "\(alpha.out)")
        #expect(n.getent(a, ["ahostsv6", "beta"]).status == 0, "over IPv6 too")
        // Berth's server listens on the gateways only, on a port of its own.
        let sockets = shell(["ss", "-H", "-lnup"]).out.split(separator: "\n").filter { $0.contains("pid=\(pid),") }
        #expect(!sockets.isEmpty && sockets.allSatisfy { $0.contains(n.gateway4 + ":") || $0.contains("[\(n.gateway6)]:") }, "\(sockets)")
        #expect(!sockets.contains { $0.contains(":53 ") }, "port 53 is the host's: \(sockets)")
        // The redirect goes with the server.
        let mine = "iifname \"\(n.net.bridge)\""
        #expect(shell(["nft", "list", "table", "inet", "berth-names"]).out.contains(mine))
        #expect(n.del(a, "a-\(n.net.id)").status == 0 && n.del(b, "b-\(n.net.id)").status == 0)
        #expect(cleanWait(2) { kill(pid, 0) != 0 })
        #expect(!shell(["nft", "list", "table", "inet", "berth-names"]).out.contains(mine))
    }
}
