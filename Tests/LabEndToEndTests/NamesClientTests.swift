import Foundation
import Testing
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet
import BerthTestSupport

/// Names through Berth's own clients: `berthctl attach --name`, `berthctl
/// run --name` and lab hosts, each getting a resolv.conf that points at the
/// network's server without the host's being touched.
@Suite("names through berthctl and labs", .ownThreads, .serialized,
       .enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/sbin/dnsmasq"), "needs root and dnsmasq"))
struct NamesClientTests {
    static let binDir = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path

    /// A conflist of `berth` with names on, in a directory of its own; removed with everything else by `cleanUp`.
    final class Fixture {
        let tag = String(format: "%05x", Int.random(in: 0...0xFFFFF))
        let confDir: String, ipamDir: String, runDir: String
        let network: String, bridge: String, subnet: String
        var namespaces: [String] = []

        init() throws {
            confDir = NSTemporaryDirectory() + "berthtest-namesconf-\(tag)"
            ipamDir = NSTemporaryDirectory() + "berthtest-namesipam-\(tag)"
            runDir = NSTemporaryDirectory() + "berthtest-namesrun-\(tag)"
            network = "berthtest-names-\(tag)"
            bridge = "btn\(tag)"
            subnet = "10.234.\(Int.random(in: 0...255))"
            try FileManager.default.createDirectory(atPath: confDir, withIntermediateDirectories: true)
            try #"{"cniVersion":"1.1.0","name":"\#(network)","plugins":[{"type":"berth","bridge":"\#(bridge)","isGateway":true,"names":true,"runDir":"\#(runDir)","ipam":{"type":"berth-ipam","dataDir":"\#(ipamDir)","subnet":"\#(subnet).0/24"}}]}"#
                .write(toFile: "\(confDir)/net.conflist", atomically: false, encoding: .utf8)
        }

        func berthctl(_ args: [String]) -> (status: Int32, out: String, err: String) {
            BerthTestSupport.berthctl(args, cniPath: "\(NamesClientTests.binDir):/usr/lib/cni")
        }

        func cleanUp() {
            for ns in namespaces {
                _ = berthctl(["detach", network, ns])
                _ = ip(["netns", "del", ns])
                try? FileManager.default.removeItem(atPath: "/etc/netns/\(ns)")
            }
            let gc = #"{"cniVersion":"1.1.0","name":"\#(network)","type":"berth","bridge":"\#(bridge)","isGateway":true,"names":true,"runDir":"\#(runDir)","cni.dev/valid-attachments":[]}"#
            shell(["\(productsDirectory)/berth"], input: gc, environment: ["CNI_COMMAND": "GC", "CNI_PATH": productsDirectory])
            _ = ip(["link", "del", bridge])
            for dir in [confDir, ipamDir, runDir] { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    @Test("berthctl attach --name: the namespace gets /etc/netns/NAME/resolv.conf, so ip netns exec and berthctl netns exec resolve the other by name; detach takes it away")
    func attach() throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        for (ns, name) in [("bta-\(f.tag)", "Alpha_1"), ("btb-\(f.tag)", "beta")] {
            f.namespaces.append(ns)
            _ = ip(["netns", "add", ns])
            let a = f.berthctl(["attach", f.network, ns, "--name", name, "--cni-conf-dir", f.confDir])
            try #require(a.status == 0, "\(a.err)")
        }
        let resolv = try String(contentsOfFile: "/etc/netns/bta-\(f.tag)/resolv.conf", encoding: .utf8)
        #expect(resolv.contains("nameserver \(f.subnet).1") && resolv.contains("search berth.internal"), "\(resolv)")
        let viaIP = shell(["ip", "netns", "exec", "bta-\(f.tag)", "getent", "hosts", "beta"])
        #expect(viaIP.status == 0 && viaIP.out.contains("\(f.subnet)."), "\(viaIP.out)")
        let viaBerthctl = f.berthctl(["netns", "exec", "btb-\(f.tag)", "--", "getent", "hosts", "alpha-1.berth.internal"])
        #expect(viaBerthctl.status == 0 && viaBerthctl.out.contains("\(f.subnet)."), "\(viaBerthctl.out) \(viaBerthctl.err)")
        // The host's own resolver configuration is untouched.
        #expect(!((try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? "").contains("\(f.subnet).1"))
        // berthctl dns ls: a row per name, and JSON.
        let table = f.berthctl(["dns", "ls", f.network, "--cni-conf-dir", f.confDir])
        let lines = table.out.split(separator: "\n")
        #expect(lines.first?.hasPrefix("NAME") == true && lines.count == 3, "\(table.out) \(table.err)")
        #expect(lines.contains { $0.hasPrefix("alpha-1.berth.internal ") && $0.contains("\(f.subnet).") }, "\(table.out)")
        let listed = try #require(try JSON.parse(f.berthctl(["dns", "ls", f.network, "--cni-conf-dir", f.confDir, "--json"]).out).arrayValue)
        #expect(Set(listed.compactMap { $0["names"]?.arrayValue?.first?.stringValue }) == ["alpha-1", "beta"])
        let unnamed = f.berthctl(["dns", "ls", "no-such-net-\(f.tag)", "--cni-conf-dir", f.confDir])
        #expect(unnamed.status != 0 && unnamed.err.contains("no-such-net-\(f.tag)"), "\(unnamed.err)")
        #expect(f.berthctl(["detach", f.network, "bta-\(f.tag)"]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: "/etc/netns/bta-\(f.tag)"))
    }

    @Test("berthctl run --name: two containers resolve each other by name through a resolv.conf bound over their own")
    func containers() throws {
        let f = try Fixture()
        let names = ["web-\(f.tag)", "db-\(f.tag)"]
        defer {
            for n in names { _ = f.berthctl(["rm", n]) }
            f.cleanUp()
        }
        for n in names {
            let run = f.berthctl(["run", "--detach", "--name", n, "--net", f.network, "--cni-conf-dir", f.confDir, "--", "sleep", "60"])
            try #require(run.status == 0, "\(run.err)")
        }
        let inside = f.berthctl(["exec", names[0], "--", "cat", "/etc/resolv.conf"])
        #expect(inside.out.contains("nameserver \(f.subnet).1"), "\(inside.out)")
        let found = f.berthctl(["exec", names[0], "--", "getent", "hosts", names[1]])
        #expect(found.status == 0 && found.out.contains("\(f.subnet)."), "\(found.out) \(found.err)")
        #expect(!((try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? "").contains("\(f.subnet).1"))
    }

    @Test("lab hosts on a network with names resolve each other (forward and reverse); lab down stops the server")
    func labHosts() throws {
        let third = Int.random(in: 0...250)
        let t = Topology(name: "bn\(getpid() % 100000)", networks: [
            .init(name: "front", subnet: IPPrefix("10.233.\(third).0/24")!, options: ["names": .bool(true)]),
        ], hosts: [
            .init(name: "h1", networks: ["front"], addresses: ["front": IPAddress("10.233.\(third).11")!]),
            .init(name: "h2", networks: ["front"], addresses: ["front": IPAddress("10.233.\(third).12")!]),
        ])
        let lab = Lab(t, searchPath: [NamesClientTests.binDir])
        defer { try? lab.down() }
        try lab.up()
        let forward = try lab.run(on: "h1", ["getent", "hosts", "h2"])
        #expect(forward.status == 0 && forward.output.contains("10.233.\(third).12"), "\(forward.output)")
        let reverse = try lab.run(on: "h2", ["getent", "hosts", "10.233.\(third).11"])
        #expect(reverse.output.contains("h1.berth.internal"), "\(reverse.output)")
        let pidFile = "/run/berth/dns/\(lab.networkName("front"))/dnsmasq.pid"
        let pid = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        try lab.down()
        #expect(cleanWait(2) { kill(pid, 0) != 0 }, "the lab's DNS server outlived it")
        #expect(!FileManager.default.fileExists(atPath: "/etc/netns/\(lab.namespace("h1"))"))
    }
}
