import Foundation
import Testing
import BerthSystem
@testable import BerthRuntime
@testable import BerthCNIClient
import BerthTestSupport

/// The mount points of this machine's cgroup hierarchies (v1 and cgroup2).
func cgroupHierarchies() -> [String] {
    guard let layout = try? CgroupLayout.current() else { return [] }
    return Array(Set(layout.v1.values).union([layout.unified].compactMap { $0 })).sorted()
}

/// A container name unique to this test; `remove()` cleans it up.
struct TestContainer {
    let name = "berthtest-\(getpid())-\(UInt32.random(in: 0...UInt32.max) % 100_000)"
    func run(_ options: [String] = [], _ command: String) -> (status: Int32, out: String, err: String) {
        berthctl(["run", "--name", name] + options + ["--", "sh", "-c", command])
    }
    func remove() { _ = berthctl(["rm", name]) }
    func cgroupFile(_ controller: String, _ file: String) -> String? {
        try? String(contentsOfFile: "/sys/fs/cgroup/\(controller)/berth/\(name)/\(file)", encoding: .utf8)
    }
    /// The number after `key` in a flat-keyed cgroup file (cpu.stat, pids.events).
    func counter(_ controller: String, _ file: String, _ key: String) -> Int {
        let text = cgroupFile(controller, file) ?? ""
        return text.split(separator: "\n").first { $0.hasPrefix(key + " ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
    }
    /// Starts the container detached (`sleep` by default); returns the PID of its init.
    func startDetached(_ options: [String] = [], _ command: [String] = ["sleep", "30"]) -> Int32? {
        let r = berthctl(["run", "--detach", "--name", name] + options + ["--"] + command)
        guard r.status == 0, let json = try? JSONSerialization.jsonObject(with: Data(berthctl(["inspect", name]).out.utf8)) as? [String: Any]
        else { return nil }
        return (json["pid"] as? Int).map(Int32.init)
    }
}

@Suite("berthctl run end to end", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and cgroups"))
struct RuntimeEndToEndTests {
    @Test("the workload is PID 2 under the init, sees only its own processes, and has its own host name")
    func namespaces() {
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run(["--hostname", "inside"], "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'")
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first == "pid=2")
        #expect(lines.dropFirst().first == "inside")
        #expect((Int(lines.last ?? "") ?? 99) <= 4)  // init, sh, ls, grep
        #expect(ProcessInfo.processInfo.hostName != "inside")
    }

    @Test("the container's mounts are private: its fresh /proc is not seen by the host")
    func privateMounts() {
        let c = TestContainer()
        defer { c.remove() }
        let before = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let r = berthctl(["run", "--detach", "--name", c.name, "--", "sleep", "10"])
        #expect(r.status == 0, "\(r.err)")
        let during = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        // Other suites mount namespaces and lxcfs meanwhile: count only proc mounts.
        func procMounts(_ text: String) -> Int { text.split(separator: "\n").filter { $0.contains(" - proc ") }.count }
        #expect(procMounts(before) == procMounts(during))
        // Inside, /proc is its own: the host's processes are not in it.
        let inside = berthctl(["exec", c.name, "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'"]).out
        #expect((Int(inside.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 99) <= 5)
    }

    @Test("with --no-init the workload is PID 1")
    func noInit() {
        let c = TestContainer()
        defer { c.remove() }
        #expect(c.run(["--no-init"], "echo $$").out == "1\n")
    }

    @Test("exit codes pass through, 128+N for a workload killed by signal N")
    func exitCodes() {
        for (command, code) in [("exit 0", Int32(0)), ("exit 3", 3), ("kill -TERM $$", 143)] {
            let c = TestContainer()
            defer { c.remove() }
            #expect(c.run([], command).status == code, "\(command)")
            #expect(berthctl(["inspect", c.name]).out.contains("\"exitCode\": \(code)"))
        }
    }

    @Test("SIGTERM to run reaches the workload")
    func sigterm() throws {
        let c = TestContainer()
        defer { c.remove() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: berthctlPath)
        p.arguments = ["run", "--name", c.name, "--", "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        for _ in 0..<50 where !berthctl(["ps"]).out.contains(c.name) { usleep(100_000) }
        usleep(300_000)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 42)
    }

    @Test("limits land in the cgroup files: memory, CPU quota and shares, pids")
    func limitFiles() {
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run(["--memory", "64m", "--cpus", "0.25", "--cpu-shares", "512", "--pids-limit", "40"], "cat /proc/self/cgroup")
        #expect(r.status == 0, "\(r.err)")
        #expect(c.cgroupFile("memory", "memory.limit_in_bytes") == "67108864\n")
        #expect(c.cgroupFile("cpu", "cpu.cfs_quota_us") == "25000\n")
        #expect(c.cgroupFile("cpu", "cpu.cfs_period_us") == "100000\n")
        #expect(c.cgroupFile("cpu", "cpu.shares") == "512\n")
        #expect(c.cgroupFile("pids", "pids.max") == "40\n")
        // Its own cgroup is the root of its cgroup namespace.
        #expect(r.out.contains("pids:/\n"))
    }

    @Test("a CPU-bound workload over its quota is throttled")
    func throttling() {
        let c = TestContainer()
        defer { c.remove() }
        _ = c.run(["--cpus", "0.1"], "timeout 1 sh -c 'while :; do :; done'; true")
        #expect(c.counter("cpu", "cpu.stat", "nr_throttled") > 0, "\(c.cgroupFile("cpu", "cpu.stat") ?? "")")
    }

    @Test("a fork bomb stops at the pids limit")
    func pidsLimit() {
        let c = TestContainer()
        defer { c.remove() }
        // 60 background processes under a limit of 20: the shell's fork is refused
        // (dash gives up with "can't fork"), and the kernel counts the refusal.
        let r = c.run(["--pids-limit", "20"], "for i in $(seq 1 60); do sleep 1 & done; wait")
        #expect(r.status != 0)
        #expect(r.err.contains("fork"), "\(r.err)")
        #expect(c.counter("pids", "pids.events", "max") >= 1, "\(c.cgroupFile("pids", "pids.events") ?? "")")
    }

    @Test("a process over the memory limit is OOM-killed and reported by run and ps")
    func oomKill() {
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run(["--memory", "32m"], "head -c 200m /dev/zero | tail > /dev/null")
        #expect(r.status != 0)
        #expect(r.err.contains("OOM"))
        let inspect = berthctl(["inspect", c.name]).out
        #expect(inspect.contains("\"oomKills\"") && !inspect.contains("\"oomKills\": 0"), "\(inspect)")
        let ps = berthctl(["ps", "--json"]).out
        #expect(ps.contains(c.name))
    }

    @Test("1,000 orphaned grandchildren leave no zombies")
    func orphans() {
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run([], "for i in $(seq 1 1000); do (sh -c 'exit 0' &) ; done; sleep 1; ps -e -o stat= | grep -c '^Z' || true")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.split(separator: "\n").last == "0")
    }

    @Test("exec lands in the container's namespaces and in its cgroup, and passes the exit code through")
    func exec() throws {
        let c = TestContainer()
        defer { c.remove() }
        let pid = try #require(c.startDetached(["--hostname", "exectest", "--memory", "48m"]))
        let namespaces = ["ipc", "mnt", "net", "pid", "uts"]
        let expected = namespaces.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\($0)")) ?? "?" }
        let script = namespaces.map { "readlink /proc/self/ns/\($0)" }.joined(separator: "; ")
            + "; hostname; grep -qx $$ /sys/fs/cgroup/memory/berth/\(c.name)/cgroup.procs && echo in-cgroup; exit 9"
        let r = berthctl(["exec", c.name, "--", "sh", "-c", script])
        #expect(r.status == 9, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(Array(lines.prefix(5)) == expected.map { $0 }.enumerated().map { i, _ in expected[i] })
        #expect(lines.contains("exectest"))
        #expect(lines.contains("in-cgroup"))
        #expect(berthctl(["exec", "berthtest-nosuch", "--", "true"]).status != 0)
    }

    @Test("no file descriptor of the caller leaks into the container")
    func noDescriptorLeak() {
        let c = TestContainer()
        defer { c.remove() }
        // fd 7 is open, without close-on-exec, in berthctl's parent and so in berthctl.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "exec 7</dev/null; exec \(berthctlPath) run --name \(c.name) -- sh -c 'ls /proc/1/fd; echo --; ls /proc/$$/fd'"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try? p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let parts = text.components(separatedBy: "--\n")
        #expect(parts.count == 2)
        #expect(parts.first?.split(separator: "\n") == ["0", "1", "2"], "init: \(parts.first ?? "")")
        #expect(parts.last?.split(separator: "\n") == ["0", "1", "2"], "workload: \(parts.last ?? "")")
    }

    @Test("--detach returns once the command runs; ps shows it running, then exited with its code; kill reaches it")
    func detached() {
        let c = TestContainer()
        defer { c.remove() }
        let r = berthctl(["run", "--detach", "--name", c.name, "--", "sh", "-c", "echo started; trap 'exit 7' TERM; while :; do sleep 0.1; done"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == c.name + "\n")
        #expect(berthctl(["ps"]).out.split(separator: "\n").contains { $0.hasPrefix(c.name + " ") && $0.contains("running") })
        #expect(berthctl(["kill", c.name, "TERM"]).status == 0)
        var exited = false
        for _ in 0..<50 where !exited {
            exited = berthctl(["inspect", c.name]).out.contains("\"exitCode\": 7")
            if !exited { usleep(100_000) }
        }
        #expect(exited)
        #expect((try? String(contentsOfFile: "/run/berth/containers/\(c.name)/output.log", encoding: .utf8)) == "started\n")
        let bad = berthctl(["run", "--detach", "--name", c.name + "b", "--", "/no/such/program"])
        #expect(bad.status != 0)
        #expect(bad.err.contains("/no/such/program"))
    }

    @Test("rm leaves nothing: no cgroup directories, no state; a second rm is a one-line error")
    func removal() {
        let c = TestContainer()
        _ = c.run(["--memory", "16m"], "true")
        #expect(c.cgroupFile("memory", "memory.limit_in_bytes") != nil)
        let rm = berthctl(["rm", c.name])
        #expect(rm.status == 0, "\(rm.err)")
        #expect(c.cgroupFile("memory", "memory.limit_in_bytes") == nil)
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(c.name)"))
        let again = berthctl(["rm", c.name])
        #expect(again.status != 0)
        #expect(again.err.split(separator: "\n").count == 1 && again.err.contains(c.name))
    }

    @Test("rm of a running detached container leaves nothing, also once its monitor has seen the container end")
    func removeDetached() throws {
        let c = TestContainer()
        defer { c.remove() }
        for _ in 0..<5 {
            #expect(berthctl(["run", "--detach", "--name", c.name, "--", "sleep", "30"]).status == 0)
            let rm = berthctl(["rm", c.name])
            #expect(rm.status == 0, "\(rm.err)")
            usleep(300_000)  // the monitor wakes when the container dies and would save its state
            #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(c.name)"), "rm's state came back")
            #expect(!berthctl(["ps"]).out.contains(c.name))
        }
    }

    @Test("a missing command is a clear error and leaves nothing")
    func badCommand() {
        let c = TestContainer()
        defer { c.remove() }
        let r = berthctl(["run", "--name", c.name, "--", "/no/such/program"])
        #expect(r.status != 0)
        #expect(r.err.contains("/no/such/program"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(c.name)"))
        #expect(c.cgroupFile("memory", "cgroup.procs") == nil)
    }
}

@Suite("berthctl run with networks", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and cgroups"))
struct RuntimeNetworkTests {
    @Test("two containers on one Berth network reach each other; the network is detached when a container ends; rm leaves nothing")
    func twoContainers() throws {
        let tag = "\(getpid() % 10000)\(UInt32.random(in: 0...999))"
        let confDir = NSTemporaryDirectory() + "berthtest-conf-\(tag)"
        let ipamDir = NSTemporaryDirectory() + "berthtest-ipam-\(tag)"
        let bridge = "btrt\(tag)"
        let network = "berthtest-net-\(tag)"
        let routes = (try? String(contentsOfFile: "/proc/net/route", encoding: .utf8)) ?? ""
        var third = Int.random(in: 0...255)
        while routes.contains(String(format: "%02X%02X", third, 243)) { third = Int.random(in: 0...255) }
        let subnet = "10.243.\(third)"
        try FileManager.default.createDirectory(atPath: confDir, withIntermediateDirectories: true)
        try #"{"cniVersion":"1.0.0","name":"\#(network)","plugins":[{"type":"berth","bridge":"\#(bridge)","isGateway":true,"ipam":{"type":"berth-ipam","dataDir":"\#(ipamDir)","subnet":"\#(subnet).0/24"}}]}"#
            .write(toFile: "\(confDir)/net.conflist", atomically: false, encoding: .utf8)
        let first = TestContainer(), second = TestContainer()
        let binDir = URL(fileURLWithPath: berthctlPath).deletingLastPathComponent().path
        defer {
            first.remove()
            second.remove()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["link", "del", bridge]
            try? p.run()
            p.waitUntilExit()
            try? FileManager.default.removeItem(atPath: confDir)
            try? FileManager.default.removeItem(atPath: ipamDir)
        }
        let cniPath = "\(binDir):/usr/lib/cni"
        #expect(berthctl(["run", "--detach", "--name", first.name, "--net", network, "--cni-conf-dir", confDir, "--", "sleep", "60"],
                         cniPath: cniPath).status == 0)
        var address: String?
        for _ in 0..<50 where address == nil {
            let inspect = berthctl(["inspect", first.name]).out
            if let range = inspect.range(of: "\(subnet)."), let end = inspect[range.lowerBound...].firstIndex(of: "/") {
                address = String(inspect[range.lowerBound..<end])
            }
            if address == nil { usleep(100_000) }
        }
        let target = try #require(address)
        let r = berthctl(["run", "--name", second.name, "--net", network, "--cni-conf-dir", confDir, "--",
                          "sh", "-c", "ping -c 1 -W 2 \(target) >/dev/null && ping -c 1 -W 2 \(subnet).1 >/dev/null && echo reached"],
                         cniPath: cniPath)
        #expect(r.out.contains("reached"), "\(r.err)")
        // The second container has ended: its address is released and its result uncached.
        let allocations = (try? FileManager.default.contentsOfDirectory(atPath: "\(ipamDir)/\(network)/addresses")) ?? []
        #expect(allocations == [target])
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/netns/\(second.name)"))

        #expect(berthctl(["rm", first.name], cniPath: cniPath).status == 0)
        let ports = Process()
        ports.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        ports.arguments = ["-o", "link", "show", "master", bridge]
        let portsOut = Pipe()
        ports.standardOutput = portsOut
        try ports.run()
        let portList = String(decoding: portsOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ports.waitUntilExit()
        #expect(portList.isEmpty, "host veths left on the bridge: \(portList)")
        let after = (try? FileManager.default.contentsOfDirectory(atPath: "\(ipamDir)/\(network)/addresses")) ?? []
        #expect(after.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/netns/\(first.name)"))
        #expect(!FileManager.default.fileExists(atPath: "/var/lib/berth/results/\(network):\(first.name):eth0"))
    }

    @Test("a network of the reference bridge plugin works the same way")
    func referencePlugins() throws {
        let tag = "\(getpid() % 10000)\(UInt32.random(in: 0...999))"
        let confDir = NSTemporaryDirectory() + "berthtest-conf-\(tag)"
        let ipamDir = NSTemporaryDirectory() + "berthtest-ipam-\(tag)"
        let bridge = "btrr\(tag)"
        let network = "berthtest-ref-\(tag)"
        // isGateway false: the reference plugin would turn IPv4 forwarding on, which tests running
        // in parallel save and restore.
        let c = TestContainer()
        defer {
            c.remove()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["link", "del", bridge]
            try? p.run()
            p.waitUntilExit()
            try? FileManager.default.removeItem(atPath: confDir)
            try? FileManager.default.removeItem(atPath: ipamDir)
        }
        try FileManager.default.createDirectory(atPath: confDir, withIntermediateDirectories: true)
        try #"{"cniVersion":"1.0.0","name":"\#(network)","plugins":[{"type":"bridge","bridge":"\#(bridge)","isGateway":false,"ipam":{"type":"host-local","dataDir":"\#(ipamDir)","subnet":"10.242.\#(Int.random(in: 0...255)).0/24"}},{"type":"tuning","sysctl":{"net.ipv4.conf.eth0.arp_notify":"1"}}]}"#
            .write(toFile: "\(confDir)/ref.conflist", atomically: false, encoding: .utf8)
        let r = berthctl(["run", "--name", c.name, "--net", network, "--cni-conf-dir", confDir, "--",
                          "sh", "-c", "cat /proc/sys/net/ipv4/conf/eth0/arp_notify; ip -4 -o addr show dev eth0 | grep -c 10.242."],
                         cniPath: "/usr/lib/cni")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == "1\n1\n")
        let allocations = (try? FileManager.default.contentsOfDirectory(atPath: "\(ipamDir)/\(network)")) ?? []
        #expect(allocations.filter { $0.hasPrefix("10.") }.isEmpty, "host-local still holds \(allocations)")
    }

    @Test("an unknown network is a one-line error naming it and the directory, and leaves nothing")
    func unknownNetwork() {
        let c = TestContainer()
        defer { c.remove() }
        let r = berthctl(["run", "--name", c.name, "--net", "nosuchnet", "--cni-conf-dir", "/nonexistent-dir", "--", "true"])
        #expect(r.status != 0)
        #expect(r.err.contains("nosuchnet") && r.err.contains("/nonexistent-dir"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(c.name)"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/netns/\(c.name)"))
    }
}

@Suite("berthctl run isolation", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and cgroups"))
struct RuntimeIsolationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Builds a busybox root file system at `dir` with the project's script.
    static func makeRootfs(_ dir: String) throws {
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/bin/bash")
        make.arguments = ["\(repository)/scripts/make-rootfs.sh", dir]
        make.standardOutput = FileHandle.nullDevice
        try make.run()
        make.waitUntilExit()
        try #require(make.terminationStatus == 0, "scripts/make-rootfs.sh failed")
    }

    @Test("--rootfs pivots into a busybox root: the host's files are gone, /sys is read-only, /dev is minimal")
    func rootfs() throws {
        let dir = NSTemporaryDirectory() + "berthtest-rootfs-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try RuntimeIsolationTests.makeRootfs(dir)
        let c = TestContainer()
        defer { c.remove() }
        let r = berthctl(["run", "--name", c.name, "--rootfs", dir, "--", "/bin/sh", "-c",
                          "ls / | tr '\\n' ' '; echo; ls /dev | tr '\\n' ' '; echo; touch /sys/x 2>/dev/null && echo sys-writable || echo sys-readonly; test -e \(RuntimeIsolationTests.repository) && echo host-visible || echo host-hidden; echo hi > /dev/null && echo devnull-ok"])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("bin") == true && lines.first?.contains("work") == false)
        #expect(lines.dropFirst().first?.split(separator: " ").sorted() == ["full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero"])
        #expect(lines.contains("sys-readonly"))
        #expect(lines.contains("host-hidden"))
        #expect(lines.contains("devnull-ok"))
    }

    @Test("the workload has no_new_privs and only Docker's default capabilities, in run and in exec")
    func capabilities() throws {
        let c = TestContainer(), running = TestContainer()
        defer {
            c.remove()
            running.remove()
        }
        let r = c.run([], "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
        #expect(r.out.contains("CapEff:\t00000000a80425fb"))
        #expect(r.out.contains("CapBnd:\t00000000a80425fb"))
        #expect(r.out.contains("NoNewPrivs:\t1"))
        _ = try #require(running.startDetached())
        #expect(berthctl(["exec", running.name, "--", "grep", "CapEff", "/proc/self/status"]).out.contains("00000000a80425fb"))
    }

    @Test("with lxcfs (started by the test) /proc/meminfo inside shows the memory limit, with and without --rootfs")
    func lxcfs() throws {
        var lxcfs: Process?
        if access("/var/lib/lxcfs/proc/meminfo", R_OK) != 0 {
            let without = TestContainer()
            let refused = without.run(["--lxcfs"], "true")
            #expect(refused.status != 0)
            #expect(refused.err.contains("lxcfs") && refused.err.contains("/var/lib/lxcfs"))
            #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(without.name)"))
            try FileManager.default.createDirectory(atPath: "/var/lib/lxcfs", withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/lxcfs")
            p.arguments = ["--foreground", "--enable-cfs", "/var/lib/lxcfs"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            lxcfs = p
            for _ in 0..<50 where access("/var/lib/lxcfs/proc/meminfo", R_OK) != 0 { usleep(100_000) }
        }
        defer {
            if let lxcfs {
                kill(lxcfs.processIdentifier, SIGKILL)  // SIGTERM may be ignored, inherited from the test runner
                lxcfs.waitUntilExit()
                umount2("/var/lib/lxcfs", Int32(MNT_DETACH))
            }
        }
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run(["--memory", "96m", "--lxcfs"], "grep MemTotal /proc/meminfo")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("98304 kB"), "\(r.out)")

        // With --rootfs too: lxcfs's files are bound before pivot_root detaches the old root.
        let dir = NSTemporaryDirectory() + "berthtest-lxcfsroot-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try RuntimeIsolationTests.makeRootfs(dir)
        let rooted = TestContainer()
        defer { rooted.remove() }
        let inRoot = berthctl(["run", "--name", rooted.name, "--rootfs", dir, "--memory", "96m", "--lxcfs", "--",
                               "/bin/sh", "-c", "grep MemTotal /proc/meminfo"])
        #expect(inRoot.status == 0, "\(inRoot.err)")
        #expect(inRoot.out.contains("98304 kB"), "with --rootfs: \(inRoot.out)")

        // The CPU view (lxcfs --enable-cfs reads the quota at the container's cpuset path).
        guard lxcfs != nil else { return }  // an lxcfs this test did not start may run without --enable-cfs
        let online = try #require(ResourceLimits.parseCPUList((try? String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)) ?? ""))
        try #require(online.count > 1, "one CPU: a limit to 1 CPU shows nothing")
        // nproc counts the CPUs it may run on (sched_getaffinity): with --cpus, lxcfs's view and the affinity agree.
        let view = "grep -c ^processor /proc/cpuinfo; grep -c '^cpu[0-9]' /proc/stat; cat /sys/devices/system/cpu/online; nproc"
        for options in [["--cpus", "0.5"], ["--cpuset-cpus", "\(online.last!)"]] {
            let one = TestContainer()
            defer { one.remove() }
            let r = one.run(options + ["--lxcfs"], view)
            #expect(r.status == 0, "\(r.err)")
            #expect(r.out.split(separator: "\n") == ["1", "1", "0", "1"], "\(options): \(r.out)")
        }
        let all = TestContainer()
        defer { all.remove() }
        let unlimited = all.run(["--lxcfs"], view)
        #expect(unlimited.out.split(separator: "\n").first.map(String.init) == "\(online.count)", "without a CPU limit: \(unlimited.out)")
    }

    @Test("--cpuset-cpus pins the container; it sits at berth/NAME in every hierarchy; a CPU the machine lacks or a bad list is refused")
    func cpuset() throws {
        let online = try #require(ResourceLimits.parseCPUList((try? String(contentsOfFile: "/sys/devices/system/cpu/online", encoding: .utf8)) ?? ""))
        let c = TestContainer()
        defer { c.remove() }
        let pid = try #require(c.startDetached(["--cpuset-cpus", "\(online.last!)"]))
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        #expect(status.contains("Cpus_allowed_list:\t\(online.last!)\n"), "\(status)")
        let inside = berthctl(["exec", c.name, "--", "grep", "Cpus_allowed_list", "/proc/self/status"])
        #expect(inside.out.hasSuffix("\t\(online.last!)\n"), "\(inside.out)\(inside.err)")
        // Every hierarchy, v1 and cgroup2, has the init at the same path.
        let lines = ((try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(line.hasSuffix(":/berth/\(c.name)"), "\(line)")
        }
        // exec's command joins every one of them too: inside the container's
        // cgroup namespace each is its root.
        let execLines = berthctl(["exec", c.name, "--", "cat", "/proc/self/cgroup"]).out.split(separator: "\n")
        #expect(execLines.count == lines.count && execLines.allSatisfy { $0.hasSuffix(":/") }, "\(execLines)")

        let missing = TestContainer()
        defer { missing.remove() }
        let refused = missing.run(["--cpuset-cpus", "\(online.last! + 1)"], "true")
        #expect(refused.status != 0 && refused.err.contains("online CPUs are"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(missing.name)"))
        for bad in ["x", "2-1", "1,,2"] {
            let r = missing.run(["--cpuset-cpus", bad], "true")
            #expect(r.status != 0 && r.err.contains("--cpuset-cpus \(bad)"), "\(bad): \(r.err)")
        }
    }

    @Test("berthctl exec and netns exec pass no descriptor but stdio to the command")
    func noInheritedDescriptors() throws {
        let c = TestContainer()
        defer { c.remove() }
        _ = try #require(c.startDetached())
        let ns = "berthtest-fd-\(getpid())"
        #expect(berthctl(["netns", "add", ns]).status == 0)
        defer { _ = berthctl(["netns", "del", ns]) }
        for command in [["exec", c.name], ["netns", "exec", ns]] {
            // Descriptor 7 open in berthctl's caller; `ls` itself holds 3 for the directory.
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "exec 7</etc/hostname; exec \"$0\" \"$@\"", berthctlPath] + command + ["--", "ls", "/proc/self/fd"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            #expect(text.split(separator: "\n") == ["0", "1", "2", "3"], "\(command): \(text)")
        }
        #expect(berthctl(["netns", "del", ns]).status == 0)
    }

    @Test("--user-ns: root inside is an unprivileged uid outside")
    func userNamespace() throws {
        let c = TestContainer()
        defer { c.remove() }
        let r = c.run(["--user-ns"], "id -u; cat /proc/self/uid_map; stat -c %u /proc/self")
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(lines.first == "0")
        #expect(lines.dropFirst().first == "0 100000 65536")

        // Such a child cannot join its cgroups itself: run moves it into every one.
        let detached = TestContainer()
        defer { detached.remove() }
        let pid = try #require(detached.startDetached(["--user-ns"]))
        let cgroups = ((try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(!cgroups.isEmpty && cgroups.allSatisfy { $0.hasSuffix(":/berth/\(detached.name)") }, "\(cgroups)")
    }

    @Test("a non-root user gets a one-line message")
    func nonRoot() {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", berthctlPath, "run", "--", "true"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try? p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0)
        #expect(text.contains("needs root"))
        #expect(text.split(separator: "\n").count == 1)
    }
}

extension RuntimeNetworkTests {
    @Test("run --rm removes the container once it exits, whatever its exit: state, cgroups, network; with a network and stopped by a signal too")
    func runRemove() throws {
        let f = try WiringFixture.berth(prefix: "rm", subnetBase: "10.242")
        defer { f.cleanUp() }
        let c = TestContainer(), d = TestContainer()
        defer {
            c.remove()
            d.remove()
        }
        func gone(_ name: String) -> [String] {
            var left: [String] = []
            if FileManager.default.fileExists(atPath: "/run/berth/containers/\(name)") { left.append("state") }
            for hierarchy in cgroupHierarchies() where FileManager.default.fileExists(atPath: "\(hierarchy)/berth/\(name)") {
                left.append("\(hierarchy) cgroup")
            }
            if FileManager.default.fileExists(atPath: "/run/berth/netns/\(name)") { left.append("pinned namespace") }
            let held = (try? FileManager.default.contentsOfDirectory(atPath: "\(f.ipamDir)/\(f.network)/addresses")) ?? []
            if !held.isEmpty { left.append("addresses \(held)") }
            if !ip(["-o", "link", "show", "master", f.bridge]).out.isEmpty { left.append("bridge ports") }
            return left
        }
        let r = berthctl(["run", "--rm", "--name", c.name, "--memory", "64m", "--net", f.network, "--cni-conf-dir", f.confDir,
                          "--", "sh", "-c", "exit 3"], cniPath: f.cni)
        #expect(r.status == 3, "\(r.err)")
        #expect(gone(c.name).isEmpty, "left after an exit with status 3: \(gone(c.name))")
        #expect(berthctl(["inspect", c.name]).status != 0)

        // Stopped by a signal: berthctl passes it on, the workload ends, the container goes.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: berthctlPath)
        p.arguments = ["run", "--rm", "--name", d.name, "--net", f.network, "--cni-conf-dir", f.confDir, "--", "sleep", "60"]
        var env = ProcessInfo.processInfo.environment
        env["CNI_PATH"] = f.cni
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let running = (0..<100).contains { _ in
            usleep(50_000)
            return berthctl(["inspect", d.name]).out.contains("\"running\"")
        }
        #expect(running, "the container did not start")
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGTERM, "exit status \(p.terminationStatus)")
        #expect(gone(d.name).isEmpty, "left after SIGTERM: \(gone(d.name))")
    }
}

extension RuntimeEndToEndTests {
    @Test("pause freezes every process of a container and ps says paused; unpause thaws it; a paused container can be removed")
    func pauseAndUnpause() throws {
        let c = TestContainer()
        defer { c.remove() }
        let counter = NSTemporaryDirectory() + "berthtest-counter-\(c.name)"
        defer {
            try? FileManager.default.removeItem(atPath: counter)
            try? FileManager.default.removeItem(atPath: counter + ".tmp")
        }
        let started = berthctl(["run", "--detach", "--name", c.name, "--", "sh", "-c",
                                "i=0; while :; do i=$((i+1)); echo $i > \(counter).tmp; mv \(counter).tmp \(counter); sleep 0.02; done"])
        try #require(started.status == 0, "\(started.err)")
        func count() -> Int { Int(((try? String(contentsOfFile: counter, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }
        func state() -> String? {
            (try? JSONSerialization.jsonObject(with: Data(berthctl(["inspect", c.name]).out.utf8)) as? [String: Any])?["status"] as? String
        }
        usleep(300_000)
        #expect(berthctl(["pause", c.name]).status == 0)
        #expect(state() == "paused")
        #expect(berthctl(["ps"]).out.split(separator: "\n").contains { $0.hasPrefix(c.name) && $0.contains("paused") })
        usleep(100_000)
        let frozenAt = count()
        usleep(500_000)
        #expect(count() == frozenAt, "the counter moved while paused")
        #expect(berthctl(["pause", c.name]).status != 0, "pausing a paused container must fail")
        #expect(berthctl(["unpause", c.name]).status == 0)
        #expect(state() == "running")
        usleep(400_000)
        #expect(count() > frozenAt, "the counter did not move after unpause")
        #expect(berthctl(["pause", c.name]).status == 0)
        // On this hybrid host the freeze is the cgroup2 tree's, which holds no controller.
        #expect((try? String(contentsOfFile: "/sys/fs/cgroup/unified/berth/\(c.name)/cgroup.freeze", encoding: .utf8)) == "1\n")
        let removed = berthctl(["rm", c.name])
        #expect(removed.status == 0, "\(removed.err)")
        for hierarchy in cgroupHierarchies() {
            #expect(!FileManager.default.fileExists(atPath: "\(hierarchy)/berth/\(c.name)"))
        }
    }
}

extension RuntimeEndToEndTests {
    @Test("stats shows CPU % (bounded by --cpus), memory use and limit, processes: --json and --no-stream")
    func stats() throws {
        let c = TestContainer()
        defer { c.remove() }
        let started = berthctl(["run", "--detach", "--name", c.name, "--cpus", "0.5", "--memory", "64m", "--", "sh", "-c", "while :; do :; done"])
        try #require(started.status == 0, "\(started.err)")
        usleep(300_000)
        let r = berthctl(["stats", "--json", c.name])
        let list = try #require((try? JSONSerialization.jsonObject(with: Data(r.out.utf8))) as? [[String: Any]], "\(r.out)\(r.err)")
        let s = try #require(list.first)
        let cpu = (s["cpuPercent"] as? Double) ?? (s["cpuPercent"] as? NSNumber)?.doubleValue ?? -1
        #expect(cpu > 25 && cpu < 75, "a busy loop under --cpus 0.5 used \(cpu) % of a CPU")
        #expect((s["memoryLimit"] as? NSNumber)?.int64Value == 64 << 20, "\(s)")
        #expect(((s["memoryBytes"] as? NSNumber)?.int64Value ?? 0) > 0)
        #expect(((s["pids"] as? NSNumber)?.intValue ?? 0) >= 2, "init and the workload: \(s)")
        #expect(s["status"] as? String == "running")
        let table = berthctl(["stats", "--no-stream", c.name]).out
        #expect(table.hasPrefix("NAME") && table.contains(c.name) && table.contains("64.00MiB"), "\(table)")
    }
}
