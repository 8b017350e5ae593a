import Foundation
import Testing
import BerthCNI
import BerthSystem
import BerthJSON
import BerthTestSupport

/// Runs `berth` through `sh -c` so that a test can shape its descriptors:
/// `redirections` is appended to the command ("<&-", ">&-", "2>FILE").
func berthWithRedirections(_ redirections: String, env: [String: String], stdin: String) -> (status: Int32, out: String) {
    shell(["sh", "-c", "exec \"$0\" \(redirections)", "\(productsDirectory)/berth"], input: stdin, environment: env)
}

extension TestNetwork {
    /// The environment a runtime gives `berth` for this test.
    func environment(_ command: String, netns: String, containerID: String, ifname: String = "eth0") -> [String: String] {
        ["CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
         "CNI_PATH": "\(productsDirectory):\(referencePluginDirectory)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
    }

    /// The berth-ipam records and address files of this test's network.
    func storeEntries() -> (records: [String], addresses: [String]) {
        let store = "\(dataDir)/\(name)"
        return (((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/attachments")) ?? []).sorted(),
                ((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/addresses")) ?? []).sorted())
    }

    /// host-local's address files for this test's network (not its lock or cursor).
    func hostLocalAddresses() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(dataDir)/\(name)")) ?? [])
            .filter { $0.first?.isNumber == true }.sorted()
    }

    /// The lock files of this test's attachments that are still there.
    func lockFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: LockFile.defaultDirectory)) ?? [])
            .filter { $0.hasPrefix(name) || $0 == "bridge:\(bridge)" }
    }

    /// The IPv4 addresses of `ifname` inside `netns`.
    func addresses(in netns: String, ifname: String = "eth0") -> [String] {
        inNamespace(netns, ["ip", "-4", "-o", "addr", "show", "dev", ifname]).out.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard let i = words.firstIndex(of: "inet"), i + 1 < words.count else { return nil }
            return String(words[i + 1].split(separator: "/")[0])
        }
    }
}

extension FirewallTouchingTests {
@Suite("hardening: one attachment, privilege, undelivered results, refused ADDs", .ownThreads)
struct HardeningTests {
    @Test("ten ADDs of one attachment at once: one wins, the others fail without touching its address, CHECK passes, DEL leaves nothing",
          arguments: ["berth-ipam", "host-local"])
    func concurrentAddsOfOneAttachment(ipam: String) throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ipamJSON = ipam == "berth-ipam" ? net.berthIPAM
            : #"{"type":"host-local","subnet":"\#(net.subnetBase).0/24","dataDir":"\#(net.dataDir)"}"#
        let config = net.config(ipam: ipamJSON)
        let ns = net.makeNamespace()
        let id = "race-\(net.id)"
        final class Runs: @unchecked Sendable {
            let lock = NSLock()
            var all: [PluginRun] = []
        }
        let runs = Runs()
        DispatchQueue.concurrentPerform(iterations: 10) { _ in
            let r = net.run("ADD", netns: ns, containerID: id, config: config)
            runs.lock.withLock { runs.all.append(r) }
        }
        let winners = runs.all.filter { $0.status == 0 }
        try #require(winners.count == 1, "\(winners.count) ADDs succeeded")
        for loser in runs.all where loser.status != 0 {
            #expect(loser.errorCode == 4 && loser.message.contains("already exists"), "\(loser.stdout)")
        }
        let address = try #require(firstAddress(winners[0].json))
        #expect(net.addresses(in: ns) == [address])
        if ipam == "berth-ipam" {
            #expect(net.storeEntries().addresses == [address], "\(net.storeEntries())")
        } else {
            #expect(net.hostLocalAddresses() == [address])
        }
        let check = net.run("CHECK", netns: ns, containerID: id, config: net.config(config, prevResult: winners[0].stdout))
        #expect(check.status == 0, "CHECK of the winner: \(check.stdout)")
        // No other container can be given the winner's address.
        let other = net.makeNamespace()
        let second = net.run("ADD", netns: other, containerID: "other-\(net.id)", config: config)
        #expect(second.status == 0 && firstAddress(second.json) != address, "\(second.stdout)")
        for (netns, container) in [(ns, id), (other, "other-\(net.id)")] {
            #expect(net.run("DEL", netns: netns, containerID: container, config: config).status == 0)
        }
        #expect(net.portsOfBridge().isEmpty)
        #expect(ipam == "berth-ipam" ? net.storeEntries().addresses.isEmpty : net.hostLocalAddresses().isEmpty)
        #expect(net.lockFiles().isEmpty, "lock files left: \(net.lockFiles())")
    }

    @Test("without privilege ADD is a CNI error naming the operation and the privilege, exit 1, and changes nothing",
          arguments: [("an ordinary user", ["--reuid=65534", "--regid=65534", "--clear-groups"], "root"),
                      ("root without CAP_SYS_ADMIN", ["--inh-caps=-sys_admin", "--bounding-set=-sys_admin"], "CAP_SYS_ADMIN"),
                      ("root without CAP_NET_ADMIN", ["--inh-caps=-net_admin", "--bounding-set=-net_admin"], "CAP_NET_ADMIN")])
    func withoutPrivilege(who: String, setpriv: [String], named: String) throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let config = net.config(ipam: net.berthIPAM, extra: #","ipMasq":true"#)
        let before = machineState(net: net, netns: ns)
        var env = net.environment("ADD", netns: ns, containerID: "priv-\(net.id)")
        env["PATH"] = "/usr/bin:/bin"
        let r = shell(["setpriv"] + setpriv + ["\(productsDirectory)/berth"], input: config, environment: env)
        let json = try #require(try? JSON.parse(r.out), "\(who): not a CNI error: \(r.out)")
        #expect(r.status == 1, "\(who): exit status \(r.status)")
        #expect(json["code"]?.intValue == 5, "\(who): \(r.out)")
        #expect((json["msg"]?.stringValue ?? "").contains(named), "\(who): \(r.out)")
        #expect(machineState(net: net, netns: ns) == before, "\(who): the machine changed")
        #expect(net.lockFiles().isEmpty, "\(who): lock files left: \(net.lockFiles())")
    }

    @Test("a result that cannot be written is a failure (exit 1, a message on stderr) and the ADD is undone",
          arguments: ["stdout closed", "broken pipe"])
    func undeliverableResult(how: String) throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let ns = net.makeNamespace()
        let config = net.config(ipam: net.berthIPAM, extra: #","ipMasq":true"#)
        let errors = NSTemporaryDirectory() + "berthtest-stderr-\(net.id)"
        defer { try? FileManager.default.removeItem(atPath: errors) }
        let env = net.environment("ADD", netns: ns, containerID: "lost-\(net.id)")
        let status: Int32
        if how == "stdout closed" {
            status = berthWithRedirections(">&- 2>\(errors)", env: env, stdin: config).status
        } else {
            // The reader is gone before berth writes; SIGPIPE ignored, as some runtimes run plugins.
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "trap '' PIPE; exec \"$0\" 2>\(errors)", "\(productsDirectory)/berth"]
            p.environment = env
            let input = Pipe(), output = Pipe()
            p.standardInput = input
            p.standardOutput = output
            try output.fileHandleForReading.close()
            try p.run()
            input.fileHandleForWriting.write(Data(config.utf8))
            try input.fileHandleForWriting.close()
            p.waitUntilExit()
            status = p.terminationStatus
        }
        #expect(status == 1, "\(how): exit status \(status)")
        let message = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(message.contains("stdout"), "\(how): stderr says \(message)")
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0, "\(how): eth0 was left")
        #expect(net.portsOfBridge().isEmpty, "\(how): a veth was left")
        #expect(net.storeEntries().addresses.isEmpty, "\(how): the address is still allocated")
        #expect(berthNFTRules(containing: "berth:\(net.name):lost-\(net.id):eth0").isEmpty, "\(how): a rule was left")
        #expect(net.lockFiles().isEmpty)
    }

    @Test("VERSION answers with stdin closed; other commands say stdin is closed")
    func closedStdin() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let version = berthWithRedirections("<&-", env: ["CNI_COMMAND": "VERSION"], stdin: "")
        #expect(version.status == 0)
        #expect(try JSON.parse(version.out)["supportedVersions"]?.arrayValue?.count == 7, "\(version.out)")
        let ns = net.makeNamespace()
        let add = berthWithRedirections("<&-", env: net.environment("ADD", netns: ns, containerID: "stdin-\(net.id)"), stdin: "")
        let json = try #require(try? JSON.parse(add.out), "\(add.out)")
        #expect(add.status == 1 && json["code"]?.intValue == 5 && add.out.contains("stdin"), "\(add.out)")
    }

    @Test("DEL after a refused ADD succeeds: lo and an interface of another kind stay, what the attachment holds is released",
          arguments: [("lo", ""), ("eth1", "bridge")])
    func delAfterRefusedAdd(ifname: String, makeKind: String) throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let ns = net.makeNamespace()
        if !makeKind.isEmpty { net.inNamespace(ns, ["ip", "link", "add", ifname, "type", makeKind]) }
        let config = net.config(ipam: net.berthIPAM, extra: #","ipMasq":true"#)
        let id = "refused-\(net.id)"
        let add = net.run("ADD", netns: ns, containerID: id, ifname: ifname, config: config)
        #expect(add.status == 1 && add.errorCode == 4, "\(add.stdout)")
        for _ in 0..<2 {
            let del = net.run("DEL", netns: ns, containerID: id, ifname: ifname, config: config)
            #expect(del.status == 0, "DEL \(ifname): \(del.stdout)")
        }
        #expect(net.inNamespace(ns, ["ip", "link", "show", ifname]).status == 0, "\(ifname) was removed")
        #expect(berthNFTRules(containing: "berth:\(net.name):\(id):\(ifname)").isEmpty)
        guard !makeKind.isEmpty else { return }
        // An attachment that holds an address and a rule under that name, whose
        // interface was replaced by one of another kind: DEL releases them and
        // leaves the interface.
        let other = net.makeNamespace()
        let held = net.run("ADD", netns: other, containerID: id, ifname: ifname, config: config)
        try #require(held.status == 0, "\(held.stdout)")
        #expect(net.storeEntries().addresses.count == 1)
        net.inNamespace(other, ["ip", "link", "del", ifname])
        net.inNamespace(other, ["ip", "link", "add", ifname, "type", makeKind])
        let del = net.run("DEL", netns: other, containerID: id, ifname: ifname, config: config)
        #expect(del.status == 0, "\(del.stdout)")
        #expect(net.storeEntries().addresses.isEmpty && net.storeEntries().records.isEmpty, "\(net.storeEntries())")
        #expect(berthNFTRules(containing: "berth:\(net.name):\(id):\(ifname)").isEmpty)
        #expect(net.inNamespace(other, ["ip", "link", "show", ifname]).status == 0, "the \(makeKind) was removed")
    }

    @Test("a delegated IPAM that refuses its range leaves no new bridge behind",
          arguments: [#""subnet":"10.300.0.0/24""#,
                      #""ranges":[[{"subnet":"SUBNET.0/24","rangeStart":"SUBNET.200","rangeEnd":"SUBNET.100"}]]"#,
                      #""ranges":[[{"subnet":"SUBNET.0/24"}],[{"subnet":"SUBNET.0/25"}]]"#])
    func delegatedIPAMFailureLeavesNoBridge(range: String) throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let ns = net.makeNamespace()
        let ipam = #"{"type":"host-local","dataDir":"\#(net.dataDir)",\#(range.replacingOccurrences(of: "SUBNET", with: net.subnetBase))}"#
        let r = net.run("ADD", netns: ns, containerID: "bad-\(net.id)", config: net.config(ipam: ipam))
        #expect(r.status == 1 && r.message.contains("host-local"), "\(r.stdout)")
        #expect(shell(["ip", "link", "show", net.bridge]).status != 0, "bridge \(net.bridge) was left behind")
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
        #expect(net.lockFiles().isEmpty)
    }

    @Test("a bridge another ADD made is not removed by a failing ADD")
    func failingAddKeepsASharedBridge() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let (ns, id, _) = try net.addContainer()
        let bad = net.run("ADD", netns: net.makeNamespace(), containerID: "bad-\(net.id)",
                          config: net.config(ipam: #"{"type":"host-local","subnet":"10.300.0.0/24"}"#))
        #expect(bad.status == 1)
        #expect(net.portsOfBridge().count == 1)
        #expect(net.ping(from: ns, to: "\(net.subnetBase).1"))
        #expect(net.run("DEL", netns: ns, containerID: id, config: net.config()).status == 0)
    }

    @Test("a delegated IPAM's gateway outside its address's subnet is error 7 naming both, and the IPAM's allocation is released")
    func delegatedGatewayOutsideSubnet() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let released = NSTemporaryDirectory() + "berthtest-released-\(net.id)"
        defer { try? FileManager.default.removeItem(atPath: released) }
        let (dir, _) = try net.fakePlugin("far-gateway-ipam", script: """
        #!/bin/sh
        case "$CNI_COMMAND" in
        ADD) echo '{"cniVersion":"1.0.0","ips":[{"address":"\(net.subnetBase).5/24","gateway":"10.9.9.1"}]}' ;;
        DEL) echo "$CNI_CONTAINERID" > \(released) ;;
        esac
        """)
        let ns = net.makeNamespace()
        var env = net.environment("ADD", netns: ns, containerID: "gw-\(net.id)")
        env["CNI_PATH"] = "\(productsDirectory):\(dir)"
        let r = shell(["\(productsDirectory)/berth"], input: net.config(ipam: #"{"type":"far-gateway-ipam"}"#), environment: env)
        let json = try #require(try? JSON.parse(r.out), "\(r.out)")
        #expect(r.status == 1 && json["code"]?.intValue == 7, "\(r.out)")
        let msg = json["msg"]?.stringValue ?? ""
        #expect(msg.contains("10.9.9.1") && msg.contains("\(net.subnetBase).5/24"), "\(msg)")
        #expect((try? String(contentsOfFile: released, encoding: .utf8)) == "gw-\(net.id)\n", "the IPAM plugin's DEL was not called")
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
        #expect(shell(["ip", "-o", "addr", "show", "dev", net.bridge]).out.isEmpty)
    }

    @Test("duplicate address detection is off on the container interface (accept_dad, enhanced_dad 0) unless enabledad")
    func dadSysctls() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        func sysctl(_ ns: String, _ key: String) -> String {
            net.inNamespace(ns, ["cat", "/proc/sys/net/ipv6/conf/eth0/\(key)"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let (ns, id, _) = try net.addContainer(config: net.config(ipam: net.berthIPAM))
        #expect(sysctl(ns, "accept_dad") == "0")
        #expect(sysctl(ns, "enhanced_dad") == "0")
        #expect(net.run("DEL", netns: ns, containerID: id, config: net.config(ipam: net.berthIPAM)).status == 0)

        let withDAD = net.config(ipam: net.berthIPAM, extra: #","enabledad":true"#)
        let (ns2, id2, _) = try net.addContainer(config: withDAD, id: "dad-\(net.id)")
        let defaults = net.inNamespace(ns2, ["cat", "/proc/sys/net/ipv6/conf/default/accept_dad"]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(sysctl(ns2, "accept_dad") == defaults && defaults != "0", "enabledad: accept_dad \(sysctl(ns2, "accept_dad"))")
        #expect(sysctl(ns2, "enhanced_dad") == "1")
        #expect(net.run("DEL", netns: ns2, containerID: id2, config: withDAD).status == 0)
    }
}
}
