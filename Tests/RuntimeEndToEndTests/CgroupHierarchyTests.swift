import Foundation
import Testing
@testable import BerthRuntime
import BerthTestSupport

/// The cgroup code against this machine's real hierarchies, in cgroups the
/// tests make and remove themselves (under `berth/`, named berthtest-...).
@Suite("cgroups on the real hierarchies", .ownThreads, .enabled(if: getuid() == 0, "needs root to make cgroups"))
struct CgroupHierarchyTests {
    /// A `sleep` to put into a cgroup; killed by the caller.
    static func sleeper() throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["600"]
        try p.run()
        return p
    }

    static func uniqueName(_ kind: String) -> String {
        "berthtest-\(kind)-\(getpid())-\(UInt32.random(in: 0...UInt32.max) % 100_000)"
    }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Kills `p` and whatever else is in `cg` (thawed first), and removes `cg`.
    static func remove(_ cg: Cgroup, after p: Process) {
        kill(p.processIdentifier, SIGKILL)
        try? cg.freeze(false)
        cg.killAll()
        _ = eventually { !cg.isPopulated() }
        try? cg.remove()
    }

    /// Waits up to 3 s for `condition`.
    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<60 {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    @Test("cgroup v2 on the real cgroup2 hierarchy (no controllers here): placement, cgroup.procs, cgroup.events, cgroup.freeze, cgroup.kill, removal")
    func v2() throws {
        let root = try #require(try CgroupLayout.current().unified, "no cgroup2 hierarchy is mounted")
        // The cgroup2 tree alone: the v2 code, whether or not the tree holds controllers.
        let cg = Cgroup(name: Self.uniqueName("v2"), layout: CgroupLayout(unified: root, v1: [:]))
        let dir = try #require(cg.directories["unified"])
        let p = try Self.sleeper()
        defer { Self.remove(cg, after: p) }
        try cg.create(limits: ResourceLimits())
        try cg.add(pid: p.processIdentifier)
        #expect(Self.read("\(dir)/cgroup.procs").split(separator: "\n").contains("\(p.processIdentifier)"))
        #expect(Self.read("/proc/\(p.processIdentifier)/cgroup").contains("0::/berth/\(cg.name)\n"))
        #expect(cg.isPopulated() && Self.read("\(dir)/cgroup.events").contains("populated 1"))

        try cg.freeze(true)
        #expect(cg.isFrozen())
        #expect(Self.eventually { Self.read("\(dir)/cgroup.events").contains("frozen 1") }, "never frozen: \(Self.read("\(dir)/cgroup.events"))")
        try cg.freeze(false)
        #expect(!cg.isFrozen())
        #expect(Self.eventually { Self.read("\(dir)/cgroup.events").contains("frozen 0") })

        #expect(FileManager.default.fileExists(atPath: "\(dir)/cgroup.kill"), "this kernel has no cgroup.kill (5.14)")
        cg.killAll()
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL)
        #expect(Self.eventually { !cg.isPopulated() })
        #expect(Self.read("\(dir)/cgroup.events").contains("populated 0"))
        try cg.remove()
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test("a hybrid host whose cgroup2 tree cannot be written: the container lives in v1 alone, the v1 freezer pauses it")
    func unwritableCgroup2() throws {
        let layout = try CgroupLayout.current()
        try #require(layout.v1["freezer"] != nil, "no v1 freezer here")
        // /proc refuses mkdir: what a read-only cgroup2 mount does.
        let cg = Cgroup(name: Self.uniqueName("ro2"), layout: CgroupLayout(unified: "/proc", v1: layout.v1))
        let p = try Self.sleeper()
        defer { Self.remove(cg, after: p) }
        try cg.create(limits: ResourceLimits(pids: 10))
        try cg.add(pid: p.processIdentifier)
        #expect(Self.read("/proc/\(p.processIdentifier)/cgroup").contains(":pids:/berth/\(cg.name)\n"))
        try cg.freeze(true)
        let freezer = try #require(cg.directories["freezer"])
        #expect(cg.isFrozen() && Self.eventually { Self.read("\(freezer)/freezer.state").hasPrefix("FROZEN") })
        try cg.freeze(false)
        cg.killAll()
        p.waitUntilExit()
        #expect(Self.eventually { !cg.isPopulated() })
        try cg.remove()
        #expect(cg.directories.values.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
    }

    @Test("v1 hierarchies only: the freezer, and a cpuset cgroup that takes its parent's CPUs and memory nodes or the ones given")
    func v1() throws {
        let layout = try CgroupLayout.current()
        try #require(layout.v1["freezer"] != nil && layout.v1["cpuset"] != nil, "no v1 freezer or cpuset hierarchy here")
        let v1Only = CgroupLayout(unified: nil, v1: layout.v1)
        let cg = Cgroup(name: Self.uniqueName("v1"), layout: v1Only)
        let online = try #require(ResourceLimits.parseCPUList(Self.read("/sys/devices/system/cpu/online")))
        let last = try #require(online.last)
        let p = try Self.sleeper()
        defer { Self.remove(cg, after: p) }
        try cg.create(limits: ResourceLimits(cpusetCpus: "\(last)"))
        let cpuset = try #require(cg.directories["cpuset"])
        #expect(Self.read("\(cpuset)/cpuset.cpus").trimmingCharacters(in: .whitespacesAndNewlines) == "\(last)")
        let parentMems = Self.read("\(cpuset)/../cpuset.mems")
        #expect(!parentMems.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        #expect(Self.read("\(cpuset)/cpuset.mems") == parentMems)
        try cg.add(pid: p.processIdentifier)
        let status = Self.read("/proc/\(p.processIdentifier)/status")
        #expect(status.contains("Cpus_allowed_list:\t\(last)\n"), "\(status)")

        try cg.freeze(true)
        #expect(cg.isFrozen())
        let freezer = try #require(cg.directories["freezer"])
        #expect(Self.eventually { Self.read("\(freezer)/freezer.state").hasPrefix("FROZEN") })
        try cg.freeze(false)
        #expect(!cg.isFrozen())
        cg.killAll()
        p.waitUntilExit()
        #expect(Self.eventually { !cg.isPopulated() })
        try cg.remove()
        #expect(cg.directories.values.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
    }
}
