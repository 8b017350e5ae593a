import Foundation
import Testing
import BerthTestSupport

@Suite("berthctl run killed while starting", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and cgroups"))
struct KilledRunTests {
    /// Everything a container called `name` on `f`'s network could have left.
    static func leftovers(_ name: String, _ f: WiringFixture) -> [String] {
        var found: [String] = []
        let fm = FileManager.default
        for path in ["/run/berth/containers/\(name)", "/run/berth/netns/\(name)"] where fm.fileExists(atPath: path) {
            found.append(path)
        }
        let controllers = (try? fm.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []
        for c in controllers where fm.fileExists(atPath: "/sys/fs/cgroup/\(c)/berth/\(name)") {
            found.append("/sys/fs/cgroup/\(c)/berth/\(name)")
        }
        for r in (try? fm.contentsOfDirectory(atPath: "/var/lib/berth/results")) ?? [] where r.contains(name) {
            found.append("/var/lib/berth/results/\(r)")
        }
        let ports = ip(["-o", "link", "show", "master", f.bridge]).out
        if !ports.isEmpty { found.append("ports on \(f.bridge): \(ports)") }
        let held = (try? fm.contentsOfDirectory(atPath: "\(f.ipamDir)/\(f.network)/addresses")) ?? []
        if !held.isEmpty { found.append("addresses held: \(held)") }
        let procs = Process()
        procs.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        procs.arguments = ["-f", "marker-\(name)"]
        let out = Pipe()
        procs.standardOutput = out
        try? procs.run()
        let pids = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        procs.waitUntilExit()
        if !pids.isEmpty { found.append("processes still running: \(pids)") }
        return found
    }

    @Test("berthctl run --net killed at 40 different instants of its start: berthctl rm leaves no state, cgroup, namespace, veth, address or process")
    func killedRuns() throws {
        let f = try WiringFixture.berth(prefix: "kr", subnetBase: "10.239")
        var names: [String] = []
        defer {
            for name in names { _ = berthctl(["rm", name], cniPath: f.cni) }
            f.cleanUp()
        }
        func start(_ name: String) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: berthctlPath)
            p.arguments = ["run", "--name", name, "--net", f.network, "--cni-conf-dir", f.confDir, "--",
                           "sh", "-c", "echo up; sleep 60; : marker-\(name)"]
            var env = ProcessInfo.processInfo.environment
            env["CNI_PATH"] = f.cni
            p.environment = env
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = Pipe()
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }

        // How long until the workload runs (the slowest of three starts, as
        // the other suites load the machine too): the kill instants spread
        // over 0 to 1.3 times that.
        var startup = 0.0
        for i in 0..<3 {
            let probeName = "berthtest-krp\(i)-\(getpid())"
            names.append(probeName)
            let began = Date()
            let probe = try start(probeName)
            let firstLine = (probe.standardOutput as! Pipe).fileHandleForReading.availableData
            startup = max(startup, Date().timeIntervalSince(began))
            #expect(String(decoding: firstLine, as: UTF8.self) == "up\n")
            kill(probe.processIdentifier, SIGKILL)
            probe.waitUntilExit()
            #expect(berthctl(["rm", probeName], cniPath: f.cni).status == 0)
            #expect(KilledRunTests.leftovers(probeName, f).isEmpty)
        }

        let trials = 40
        var removedByRm = 0
        for trial in 0..<trials {
            let name = "berthtest-kr\(getpid() % 10000)-\(trial)"
            names.append(name)
            let delay = UInt32(startup * 1.3 * 1_000_000 * Double(trial) / Double(trials))
            let p = try start(name)
            usleep(delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let rm = berthctl(["rm", name], cniPath: f.cni)
            if rm.status == 0 {
                removedByRm += 1
            } else {
                // Killed before it made anything: then there is nothing to remove, and rm says so.
                #expect(rm.err.contains("no container named \(name)"), "trial \(trial): \(rm.err)")
            }
            let left = KilledRunTests.leftovers(name, f)
            #expect(left.isEmpty, "trial \(trial) (killed after \(delay) µs): \(left)")
        }
        #expect(removedByRm >= trials / 4, "only \(removedByRm) runs had started anything before the kill")
        print("killed runs: \(trials) berthctl run killed at instants spread over 0-\(Int(startup * 1_300)) ms; rm cleaned \(removedByRm), the rest had made nothing")
    }

    @Test("rm of a detached container with a network leaves nothing, also once its monitor has detached the network too")
    func removeDetachedWithNetwork() throws {
        let f = try WiringFixture.berth(prefix: "rd", subnetBase: "10.237")
        let name = "berthtest-rd\(getpid() % 10000)"
        defer {
            _ = berthctl(["rm", name], cniPath: f.cni)
            f.cleanUp()
        }
        for round in 0..<8 {
            let run = berthctl(["run", "--detach", "--name", name, "--net", f.network, "--cni-conf-dir", f.confDir, "--",
                                "sh", "-c", "sleep 60; : marker-\(name)"], cniPath: f.cni)
            try #require(run.status == 0, "\(run.err)")
            let rm = berthctl(["rm", name], cniPath: f.cni)
            #expect(rm.status == 0, "round \(round): \(rm.err)")
            usleep(500_000)  // the monitor sees the container end, detaches, and saves the state once more
            let left = KilledRunTests.leftovers(name, f)
            #expect(left.isEmpty, "round \(round): \(left)")
            if !left.isEmpty { _ = berthctl(["rm", name], cniPath: f.cni) }
        }
    }
}

@Suite("runtime security review", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and cgroups"))
struct RuntimeSecurityTests {
    @Test("a container's root cannot move itself out of its cgroup, in run and in exec: /sys is read-only inside")
    func cannotLeaveCgroup() throws {
        let c = TestContainer()
        defer { c.remove() }
        let escape = "echo $$ > /sys/fs/cgroup/memory/cgroup.procs 2>/dev/null; echo $$ > /sys/fs/cgroup/unified/cgroup.procs 2>/dev/null; grep -E ':(memory|pids):' /proc/self/cgroup"
        let run = c.run(["--memory", "32m"], escape)
        #expect(run.out.contains("memory:/\n") && !run.out.contains(".."), "the workload left its cgroup: \(run.out)")
        try #require(berthctl(["rm", c.name]).status == 0)

        #expect(berthctl(["run", "--detach", "--name", c.name, "--memory", "32m", "--", "sleep", "30"]).status == 0)
        let exec = berthctl(["exec", c.name, "--", "sh", "-c", escape])
        #expect(exec.out.contains("memory:/") && !exec.out.contains(".."), "exec left the cgroup: \(exec.out)")
        let procs = c.cgroupFile("memory", "cgroup.procs") ?? ""
        #expect(!procs.isEmpty, "the container's cgroup lost its processes")
    }

    @Test("the runtime's state is private: its directory 0700, its files 0600")
    func privateState() throws {
        let c = TestContainer()
        defer { c.remove() }
        #expect(berthctl(["run", "--detach", "--name", c.name, "--", "sleep", "30"]).status == 0)
        let fm = FileManager.default
        let dir = "/run/berth/containers/\(c.name)"
        #expect((try fm.attributesOfItem(atPath: dir)[.posixPermissions] as? Int) == 0o700)
        #expect((try fm.attributesOfItem(atPath: "\(dir)/state.json")[.posixPermissions] as? Int) == 0o600)
    }
}
