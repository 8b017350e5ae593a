import Foundation
import Testing
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet
import BerthTestSupport

@Suite("labs end to end", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and bridges"))
struct LabEndToEndTests {
    static let binDir = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path

    func topology(_ name: String) -> Topology {
        let third = Int.random(in: 0...250)
        return Topology(name: name, networks: [
            .init(name: "front", subnet: IPPrefix("10.236.\(third).0/24")!),
            .init(name: "back", subnet: IPPrefix("10.236.\(third + 1).0/24")!),
        ], hosts: [
            .init(name: "f1", networks: ["front"], addresses: ["front": IPAddress("10.236.\(third).11")!]),
            .init(name: "f2", networks: ["front"]),
            .init(name: "both", networks: ["front", "back"]),
            .init(name: "b1", networks: ["back"], addresses: ["back": IPAddress("10.236.\(third + 1).21")!]),
        ])
    }

    @Test("the Swift API: hosts of one network reach each other, a host on both reaches either side, down leaves nothing")
    func swiftAPI() throws {
        let t = topology("bt\(getpid() % 100000)")
        let lab = Lab(t, searchPath: [LabEndToEndTests.binDir])
        defer { try? lab.down() }
        try lab.up()
        let front = t.networks[0].subnet.address.description.dropLast(2), back = t.networks[1].subnet.address.description.dropLast(2)
        #expect(try lab.run(on: "f2", ["ping", "-c", "1", "-W", "2", "\(front).11"]).status == 0)
        #expect(try lab.run(on: "both", ["ping", "-c", "1", "-W", "2", "\(front).11"]).status == 0)
        #expect(try lab.run(on: "both", ["ping", "-c", "1", "-W", "2", "\(back).21"]).status == 0)
        let addresses = try lab.run(on: "both", ["ip", "-4", "-o", "addr"]).output
        #expect(addresses.contains(" eth0 ") && addresses.contains(" eth1 "))
        #expect(Lab.list().contains(t.name))

        try lab.down()
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(t.name)-"))
        #expect(!Lab.list().contains(t.name))
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(lab.bridgeName(0))"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(lab.bridgeName(1))"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(t.name)"))
        let records = (try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/berth/attachments")) ?? []
        #expect(!records.contains { $0.contains("lab-\(t.name)-") })
    }

    @Test("berthctl lab up, exec, down from a YAML file; down also cleans up after a partial up")
    func cli() throws {
        let lab = try LabFixture("bc"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try """
        name: \(name)
        networks:
          - name: n1
            subnet: 10.235.\(third).0/24
        hosts:
          - name: a
            networks: [n1]
          - name: b
            networks: [n1]
            addresses: {n1: 10.235.\(third).99}
        """.write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        #expect(up.status == 0, "\(up.err)")
        #expect(up.out.contains("2 hosts on 1 networks"))
        #expect(berthctl(["lab", "exec", name, "a", "--", "ping", "-c", "1", "-W", "2", "10.235.\(third).99"]).status == 0)
        #expect(berthctl(["lab", "down", file]).status == 0)
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))

        // A partial up: the plugins are not on CNI_PATH, so the first attachment fails after
        // the first namespace was made. down removes it.
        let partial = berthctl(["lab", "up", file], cniPath: "/nonexistent")
        #expect(partial.status != 0)
        #expect(partial.err.contains("lab down"))
        #expect(NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(berthctl(["lab", "down", name]).status == 0)
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))
    }

    @Test("lab check pings every pair that shares a network (a matrix, --json), honours --expect isolation, and fails on a miss; lab graph draws every host, network and interface; up and ls say what was made as JSON")
    func checkAndGraph() throws {
        let lab = try LabFixture("bk"), name = lab.name, third = lab.third, file = lab.file, dir = lab.dir
        defer { lab.cleanUp() }
        try """
        name: \(name)
        networks:
          - name: n1
            subnet: 10.233.\(third).0/24
          - name: n2
            subnet: 10.233.\(third + 1).0/24
        hosts:
          - name: a
            networks: [n1]
          - name: b
            networks: [n1, n2]
          - name: c
            networks: [n2]
        """.write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", "--json", file], cniPath: LabEndToEndTests.binDir)
        try #require(up.status == 0, "\(up.err)")
        let made = try JSON.parse(up.out)
        #expect(made["hosts"]?.arrayValue?.count == 3 && made["networks"]?.arrayValue?.count == 2, "\(up.out)")
        let hostB = made["hosts"]?.arrayValue?.first { $0["name"]?.stringValue == "b" }
        #expect(hostB?["interfaces"]?.arrayValue?.last?["address"]?.stringValue?.hasPrefix("10.233.\(third + 1).") == true, "\(up.out)")
        let ls = try JSON.parse(berthctl(["lab", "ls", "--json"]).out).arrayValue ?? []
        #expect(ls.contains { $0["name"]?.stringValue == name && $0["hosts"]?.arrayValue?.count == 3 })

        let isolation = "\(dir)/expect"
        try "# a and c share no network and no router\na c\nc a\n".write(toFile: isolation, atomically: false, encoding: .utf8)
        let check = berthctl(["lab", "check", file, "--expect", isolation])
        #expect(check.status == 0, "\(check.out)\(check.err)")
        #expect(check.out.contains("6 pings: 6 as expected, 0 missed"), "\(check.out)")
        // Host b loses its address on n1: a and b no longer reach each other.
        #expect(ip(["netns", "exec", "lab-\(name)-b", "ip", "addr", "flush", "dev", "eth0"]).status == 0)
        let broken = berthctl(["lab", "check", file, "--json"])
        #expect(broken.status == 1)
        let report = try JSON.parse(broken.out)
        #expect(report["missed"]?.intValue == 2, "\(broken.out)")
        #expect(report["pairs"]?.arrayValue?.contains { $0["from"]?.stringValue == "a" && $0["reached"]?.boolValue == false } == true)

        let svg = "\(dir)/lab.svg"
        let graph = berthctl(["lab", "graph", file, "--output", svg])
        #expect(graph.status == 0, "\(graph.err)")
        let drawing = (try? String(contentsOfFile: svg, encoding: .utf8)) ?? ""
        for node in ["host:a", "host:b", "host:c", "net:n1", "net:n2"] {
            #expect(drawing.contains("<title>\(node)</title>"), "\(node) is not drawn")
        }
        for edge in ["host:a&#45;&#45;net:n1", "host:b&#45;&#45;net:n1", "host:b&#45;&#45;net:n2", "host:c&#45;&#45;net:n2"] {
            #expect(drawing.contains("<title>\(edge)</title>"), "edge \(edge) is not drawn")
        }
        #expect(drawing.contains("10.233.\(third + 1)."), "addresses are not drawn")
    }

    @Test("a lab file with mistakes is refused before anything is created")
    func refusedFile() throws {
        let name = "br\(getpid() % 100000)"
        let file = NSTemporaryDirectory() + "berthtest-badlab-\(name).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.234.1.0/24\nhosts:\n  - name: a\n    networks: [n2]\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        let r = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        #expect(r.status != 0)
        #expect(r.err.contains("hosts[0].networks[0]") && r.err.contains("line 7") && r.err.contains("n2"))
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))
    }
}

enum NamedNamespacesSnapshot {
    static func any(prefix: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).contains { $0.hasPrefix(prefix) }
    }
}

extension LabEndToEndTests {
    @Test("two routers joined by a link: with autoRoutes every host reaches every other; lab check passes, and fails once a route is removed by hand")
    func routedLab() throws {
        let lab = try LabFixture("rt"), name = lab.name, third = lab.third, file = lab.file, dir = lab.dir
        defer { lab.cleanUp() }
        // Through placeholders: replacing 10.231.1. by 10.231.2. first would let the next step rewrite it again.
        try SampleTopologies.twoRouters.replacingOccurrences(of: "name: rt", with: "name: \(name)")
            .replacingOccurrences(of: "10.231.1.", with: "@left@").replacingOccurrences(of: "10.231.2.", with: "@right@")
            .replacingOccurrences(of: "10.231.9.", with: "@link@")
            .replacingOccurrences(of: "@left@", with: "10.231.\(third).").replacingOccurrences(of: "@right@", with: "10.231.\(third + 1).")
            .replacingOccurrences(of: "@link@", with: "10.231.\(third + 2).")
            .write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        try #require(up.status == 0, "\(up.err)")
        let check = berthctl(["lab", "check", file])
        #expect(check.status == 0, "\(check.out)\(check.err)")
        #expect(check.out.contains("12 pings: 12 as expected"), "every pair of the four hosts: \(check.out)")
        let h2 = try #require(Lab(try Topology.parse(try String(contentsOfFile: file, encoding: .utf8))).addresses()["h2"]?["right"])
        #expect(ip(["netns", "exec", "lab-\(name)-h1", "ping", "-c", "1", "-W", "2", h2]).status == 0)
        // r1 forgets the way to the right network: h1 and r1 lose h2 and r2's network.
        #expect(ip(["netns", "exec", "lab-\(name)-r1", "ip", "route", "del", "10.231.\(third + 1).0/24"]).status == 0)
        let broken = berthctl(["lab", "check", file, "--json"])
        #expect(broken.status == 1, "\(broken.out)")
        #expect((try? JSON.parse(broken.out))?["missed"]?.intValue ?? 0 > 0, "\(broken.out)")
        let dot = "\(dir)/lab.dot"
        #expect(berthctl(["lab", "graph", file, "-o", dot]).status == 0)
        let text = (try? String(contentsOfFile: dot, encoding: .utf8)) ?? ""
        #expect(text.contains("\"host:r1\" -- \"host:r2\"") && text.contains("doubleoctagon"), "\(text)")
    }
}

extension LabEndToEndTests {
    static let kernelHasNetem = Lab.kernelHasNetem()

    @Test("a rate on a host's interface limits a real transfer between two hosts to about that rate")
    func rateShaping() throws {
        let lab = try LabFixture("sh"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try """
        name: \(name)
        networks:
          - name: n1
            subnet: 10.229.\(third).0/24
        hosts:
          - name: a
            networks: [n1]
            shaping: {n1: {rate: 8mbit}}
          - name: b
            networks: [n1]
            addresses: {n1: 10.229.\(third).20}
        """.write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        try #require(up.status == 0, "\(up.err)")
        let qdisc = ip(["netns", "exec", "lab-\(name)-a", "tc", "qdisc", "show", "dev", "eth0"]).out
        #expect(qdisc.contains("tbf") && qdisc.contains("rate 8Mbit"), "\(qdisc)")

        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        server.arguments = ["netns", "exec", "lab-\(name)-b", "python3", "-c", """
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9100)); s.listen(1); s.settimeout(20)
        c, _ = s.accept(); n = 0
        while True:
            d = c.recv(65536)
            if not d: break
            n += len(d)
        print(n)
        """]
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        usleep(300_000)
        // 2,000,000 bytes at 8 Mbit/s: 2 s.
        let client = ip(["netns", "exec", "lab-\(name)-a", "python3", "-c", """
        import socket, time
        s = socket.create_connection(('10.229.\(third).20', 9100), timeout=20); t = time.time()
        s.sendall(b'x' * 2000000); s.shutdown(socket.SHUT_WR); s.recv(1); print(time.time() - t)
        """])
        server.waitUntilExit()
        let received = Int(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let seconds = try #require(Double(client.out.trimmingCharacters(in: .whitespacesAndNewlines)), "\(client.out)")
        let mbit = Double(received) * 8 / seconds / 1e6
        print("rate shaping: 2,000,000 bytes in \(seconds) s, \(mbit) Mbit/s for a rate of 8 Mbit/s")
        #expect(received == 2_000_000)
        #expect(mbit > 5.5 && mbit < 9.0, "measured \(mbit) Mbit/s for a rate of 8 Mbit/s")
    }

    @Test("delay, jitter or loss on a kernel without netem: the lab is refused before anything is made, naming sch_netem and the key")
    func netemRefused() throws {
        try #require(!LabEndToEndTests.kernelHasNetem, "this kernel has netem: the working path runs instead")
        let lab = try LabFixture("nm"), name = lab.name, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.228.1.0/24\nhosts:\n  - name: a\n    networks: [n1]\n  - name: b\n    networks: [n1]\n    shaping: {n1: {delay: 20ms}}\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        #expect(up.status != 0)
        #expect(up.err.contains("sch_netem") && up.err.contains("hosts[1].shaping.n1"), "\(up.err)")
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(!NamedNamespacesSnapshot.any(prefix: "berth-probe-"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))
    }

    @Test("delay through netem shows in the round trip time",
          .enabled(if: LabEndToEndTests.kernelHasNetem, "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set)"))
    func netemDelay() throws {
        let lab = try LabFixture("nd"), name = lab.name, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.228.2.0/24\nhosts:\n  - name: a\n    networks: [n1]\n  - name: b\n    networks: [n1]\n    addresses: {n1: 10.228.2.20}\n    shaping: {n1: {delay: 50ms}}\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        let ping = ip(["netns", "exec", "lab-\(name)-a", "ping", "-c", "2", "-W", "2", "10.228.2.20"]).out
        #expect(ping.contains("time=5") || ping.contains("time=6"), "\(ping)")
    }
}

extension LabEndToEndTests {
    @Test("a host's cpus and memory are a cgroup of its own; lab exec runs inside it, exec --detach starts a server that lab down stops")
    func hostLimits() throws {
        let lab = try LabFixture("lm"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.227.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n    cpus: 0.5\n    memory: 64m\n  - name: b\n    networks: [n1]\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        try #require(up.status == 0, "\(up.err)")
        let cg = try Lab(Topology(name: name)).cgroup("a")
        let dirs = cg.directories
        try #require(!dirs.isEmpty)
        if cg.layout.isUnified, let unified = dirs["unified"] {
            #expect((try? String(contentsOfFile: "\(unified)/cpu.max", encoding: .utf8))?.hasPrefix("50000 100000") == true)
            #expect((try? String(contentsOfFile: "\(unified)/memory.max", encoding: .utf8))?.hasPrefix("67108864") == true)
        } else {
            #expect((try? String(contentsOfFile: "\(dirs["cpu"] ?? "")/cpu.cfs_quota_us", encoding: .utf8))?.hasPrefix("50000") == true)
            #expect((try? String(contentsOfFile: "\(dirs["memory"] ?? "")/memory.limit_in_bytes", encoding: .utf8))?.hasPrefix("67108864") == true)
        }
        // What runs on the host is in its cgroup; a host without limits has none.
        let inside = berthctl(["lab", "exec", name, "a", "--", "cat", "/proc/self/cgroup"])
        #expect(inside.status == 0 && inside.out.contains("/berth/lab-\(name)-a"), "\(inside.out)")
        #expect(!berthctl(["lab", "exec", name, "b", "--", "cat", "/proc/self/cgroup"]).out.contains("lab-\(name)-b"))
        let started = berthctl(["lab", "exec", "--detach", name, "a", "--", "sleep", "300"])
        let pid = try #require(Int32(started.out.trimmingCharacters(in: .whitespacesAndNewlines)), "\(started.out)\(started.err)")
        #expect(kill(pid, 0) == 0)
        #expect(cg.pids().contains(pid), "the detached server is not in the host's cgroup")
        #expect(berthctl(["lab", "down", file]).status == 0)
        usleep(100_000)
        // Gone, or a zombie left for whatever reaps orphans here.
        let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: ")").last?
            .split(separator: " ").first.map(String.init)
        #expect(state == nil || state == "Z", "lab down left the detached server running (state \(state ?? "?"))")
        #expect(dirs.values.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "lab down left the host's cgroup")
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
    }
}

/// A lab file under a name unique to the test (and a free third octet for
/// its subnets); `cleanUp()` takes the lab down and removes the file.
/// A lab with a unique name and third octet, and a directory of its own holding `lab.yaml` and
/// whatever else the test writes; `cleanUp` takes the lab down and removes the directory.
struct LabFixture {
    let name: String
    let third = Int.random(in: 0...250)  // tests use up to third + 2
    let dir: String
    var file: String { "\(dir)/lab.yaml" }

    init(_ prefix: String) throws {
        name = "\(prefix)\(getpid() % 100000)"
        dir = NSTemporaryDirectory() + "berthtest-lab-\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func cleanUp() {
        _ = berthctl(["lab", "down", file])
        try? FileManager.default.removeItem(atPath: dir)
    }
}
