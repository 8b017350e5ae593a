import Foundation
import Testing
import BerthSystem
@testable import BerthRuntime
@testable import BerthCNIClient
import BerthTestSupport

/// A network with two namespaces a and b, under names unique to the test,
/// all removed by `cleanUp()` (attachments, namespaces, bridge, configs, IPAM data).
final class WiringFixture {
    let cni: String
    let confDir: String, ipamDir: String
    let bridge: String, network: String
    let a: String, b: String
    let subnet: String

    /// `plugin` is the conflist's plugin object, given BRIDGE, IPAMDIR and SUBNET to fill in.
    init(prefix: String, cniPath: String, plugin: String, subnetBase: String, cniVersion: String = "1.1.0") throws {
        let tag = "\(getpid() % 10000)"
        cni = cniPath
        confDir = NSTemporaryDirectory() + "berthtest-\(prefix)conf-\(tag)"
        ipamDir = NSTemporaryDirectory() + "berthtest-\(prefix)ipam-\(tag)"
        bridge = "bt\(prefix)\(tag)"
        network = "berthtest-\(prefix)-\(tag)"
        a = "berthtest-\(prefix)a-\(tag)"
        b = "berthtest-\(prefix)b-\(tag)"
        subnet = "\(subnetBase).\(Int.random(in: 0...255))"
        try FileManager.default.createDirectory(atPath: confDir, withIntermediateDirectories: true)
        let filled = plugin.replacingOccurrences(of: "BRIDGE", with: bridge).replacingOccurrences(of: "IPAMDIR", with: ipamDir)
            .replacingOccurrences(of: "SUBNET", with: "\(subnet).0/24")
        try #"{"cniVersion":"\#(cniVersion)","name":"\#(network)","plugins":[\#(filled)]}"#
            .write(toFile: "\(confDir)/net.conflist", atomically: false, encoding: .utf8)
    }

    /// A network of `berth` with `berth-ipam` (the built ones, then Debian's plugins on CNI_PATH).
    static func berth(prefix: String, subnetBase: String, capabilities: String = "") throws -> WiringFixture {
        let binDir = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path
        return try WiringFixture(prefix: prefix, cniPath: "\(binDir):/usr/lib/cni",
                                 plugin: #"{"type":"berth","bridge":"BRIDGE","isGateway":true\#(capabilities),"ipam":{"type":"berth-ipam","dataDir":"IPAMDIR","subnet":"SUBNET"}}"#,
                                 subnetBase: subnetBase)
    }

    func attach(_ ns: String, _ extra: [String] = []) -> (status: Int32, out: String, err: String) {
        berthctl(["attach", network, ns, "--cni-conf-dir", confDir] + extra, cniPath: cni)
    }

    func detach(_ ns: String) -> (status: Int32, out: String, err: String) {
        berthctl(["detach", network, ns], cniPath: cni)
    }

    func cleanUp() {
        _ = detach(a)
        _ = detach(b)
        _ = ip(["netns", "del", a])
        _ = ip(["netns", "del", b])
        _ = ip(["link", "del", bridge])
        try? FileManager.default.removeItem(atPath: confDir)
        try? FileManager.default.removeItem(atPath: ipamDir)
    }
}

@Suite("berthctl netns and attach", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and links"))
struct WiringTests {
    @Test("netns add/ls/exec/del use /run/netns, so ip netns sees berthctl's namespaces and the other way round")
    func netnsCompatibility() {
        let mine = "berthtest-ns-\(getpid())", theirs = "berthtest-ipns-\(getpid())"
        defer {
            _ = berthctl(["netns", "del", mine])
            _ = ip(["netns", "del", theirs])
        }
        #expect(berthctl(["netns", "add", mine]).status == 0)
        #expect(ip(["netns", "list"]).out.contains(mine))
        #expect(ip(["netns", "add", theirs]).status == 0)
        #expect(berthctl(["netns", "ls"]).out.split(separator: "\n").contains { $0 == theirs })
        let inside = berthctl(["netns", "exec", mine, "--", "ip", "-o", "link"])
        #expect(inside.status == 0)
        #expect(inside.out.contains("lo") && !inside.out.contains("eth0"))
        #expect(berthctl(["netns", "exec", theirs, "--", "sh", "-c", "exit 4"]).status == 4)
        #expect(berthctl(["netns", "add", mine]).err.contains("exists"))
        #expect(berthctl(["netns", "del", mine]).status == 0)
        #expect(!ip(["netns", "list"]).out.contains(mine))
        #expect(berthctl(["netns", "del", mine]).err.split(separator: "\n").count == 1)
    }

    @Test("attach and detach through a whole chain, with a requested address and MAC; check, status, gc, ls")
    func attachDetach() throws {
        let f = try WiringFixture.berth(prefix: "wr", subnetBase: "10.241", capabilities: #","capabilities":{"ips":true,"mac":true}"#)
        defer { f.cleanUp() }
        let (cni, confDir, ipamDir, bridge, network, a, b, subnet) = (f.cni, f.confDir, f.ipamDir, f.bridge, f.network, f.a, f.b, f.subnet)
        _ = ip(["netns", "add", a])
        #expect(berthctl(["netns", "add", b]).status == 0)

        let ra = berthctl(["attach", network, a, "--cni-conf-dir", confDir], cniPath: cni)
        #expect(ra.status == 0, "\(ra.err)")
        let rb = berthctl(["attach", network, "/run/netns/\(b)", "--ip", "\(subnet).77/24", "--mac", "0a:58:00:00:00:77", "--cni-conf-dir", confDir], cniPath: cni)
        #expect(rb.status == 0, "\(rb.err)")
        #expect(rb.out.contains("\(subnet).77/24") && rb.out.contains("0a:58:00:00:00:77"))
        #expect(berthctl(["netns", "exec", a, "--", "ping", "-c", "1", "-W", "2", "\(subnet).77"]).status == 0)

        let listing = berthctl(["ls"]).out
        #expect(listing.contains("/run/netns/\(a)") && listing.contains("\(subnet).77/24"))
        #expect(berthctl(["check", network, a], cniPath: cni).status == 0)
        #expect(berthctl(["status", network, "--cni-conf-dir", confDir], cniPath: cni).status == 0)
        #expect(berthctl(["gc", network, "--cni-conf-dir", confDir], cniPath: cni).status == 0)
        // GC kept both: they are recorded attachments.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(ipamDir)/\(network)/addresses").count) == 2)

        let again = berthctl(["attach", network, a, "--cni-conf-dir", confDir], cniPath: cni)
        #expect(again.status != 0 && again.err.contains("already"))

        // Detach after the namespace is gone still releases everything.
        _ = ip(["netns", "del", a])
        #expect(berthctl(["detach", network, a], cniPath: cni).status == 0)
        #expect(berthctl(["detach", network, b], cniPath: cni).status == 0)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(ipamDir)/\(network)/addresses").count) == 0)
        #expect(!berthctl(["ls"]).out.contains(network))
        #expect(ip(["-o", "link", "show", "master", bridge]).out.isEmpty)
    }

    @Test("attach works with the reference bridge plugin and host-local too")
    func referencePlugins() throws {
        // isGateway false: with it the reference plugin turns IPv4 forwarding on.
        let f = try WiringFixture(prefix: "wf", cniPath: "/usr/lib/cni",
                                  plugin: #"{"type":"bridge","bridge":"BRIDGE","ipam":{"type":"host-local","dataDir":"IPAMDIR","subnet":"SUBNET"}}"#,
                                  subnetBase: "10.238", cniVersion: "1.0.0")  // Debian's reference plugins stop at 1.0.0
        defer { f.cleanUp() }
        let (cni, confDir, bridge, network, a, b, subnet) = (f.cni, f.confDir, f.bridge, f.network, f.a, f.b, f.subnet)
        _ = berthctl(["netns", "add", a])
        _ = berthctl(["netns", "add", b])
        #expect(berthctl(["attach", network, a, "--cni-conf-dir", confDir], cniPath: cni).status == 0)
        let rb = berthctl(["attach", network, b, "--cni-conf-dir", confDir], cniPath: cni)
        #expect(rb.status == 0, "\(rb.err)")
        let target = try #require(rb.out.range(of: "\(subnet).").map { String(rb.out[$0.lowerBound...].prefix { $0 != "/" }) })
        #expect(berthctl(["netns", "exec", a, "--", "ping", "-c", "1", "-W", "2", target]).status == 0)
        #expect(berthctl(["detach", network, a], cniPath: cni).status == 0)
        #expect(berthctl(["detach", network, b], cniPath: cni).status == 0)
        #expect(ip(["-o", "link", "show", "master", bridge]).out.isEmpty)
    }

    @Test("errors name what is wrong: unknown network and the directory, missing namespace, plugin not on CNI_PATH")
    func errors() throws {
        let ns = "berthtest-we-\(getpid())"
        let confDir = NSTemporaryDirectory() + "berthtest-weconf-\(getpid())"
        defer {
            _ = ip(["netns", "del", ns])
            try? FileManager.default.removeItem(atPath: confDir)
        }
        try FileManager.default.createDirectory(atPath: confDir, withIntermediateDirectories: true)
        try #"{"cniVersion":"1.0.0","name":"berthtest-noplugin","plugins":[{"type":"no-such-plugin"}]}"#
            .write(toFile: "\(confDir)/n.conflist", atomically: false, encoding: .utf8)
        _ = ip(["netns", "add", ns])
        let unknown = berthctl(["attach", "berthtest-nonet", ns, "--cni-conf-dir", confDir])
        #expect(unknown.err.contains("berthtest-nonet") && unknown.err.contains(confDir))
        let missing = berthctl(["attach", "berthtest-noplugin", "berthtest-missing-ns", "--cni-conf-dir", confDir])
        #expect(missing.err.contains("berthtest-missing-ns"))
        let noPlugin = berthctl(["attach", "berthtest-noplugin", ns, "--cni-conf-dir", confDir], cniPath: "/nonexistent")
        #expect(noPlugin.err.contains("no-such-plugin") && noPlugin.err.contains("CNI_PATH"))
        #expect(!berthctl(["ls"]).out.contains("berthtest-noplugin"))
        // The plugin's own CNI error, with its code.
        try #"{"cniVersion":"1.0.0","name":"berthtest-badconf","plugins":[{"type":"berth","mtu":"big"}]}"#
            .write(toFile: "\(confDir)/b.conflist", atomically: false, encoding: .utf8)
        let binDir = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path
        let bad = berthctl(["attach", "berthtest-badconf", ns, "--cni-conf-dir", confDir], cniPath: binDir)
        #expect(bad.err.contains("CNI error 7") && bad.err.contains("mtu"), "\(bad.err)")
    }
}
