import Foundation
import Testing
@testable import BerthRuntime
import BerthTestSupport

@Suite("Resource limits and cgroup layout")
struct CgroupUnitTests {
    @Test("sizes parse with binary units and reject nonsense")
    func sizes() {
        #expect(ResourceLimits.parseSize("512m") == 512 << 20)
        #expect(ResourceLimits.parseSize("2G") == 2 << 30)
        #expect(ResourceLimits.parseSize("4096") == 4096)
        #expect(ResourceLimits.parseSize("64k") == 64 << 10)
        #expect(ResourceLimits.parseSize("") == nil)
        #expect(ResourceLimits.parseSize("1.5g") == nil)
        #expect(ResourceLimits.parseSize("12mb") == nil)
        #expect(ResourceLimits.parseSize("99999999999999999999t") == nil)
    }

    @Test("CPUs become a CFS quota (at least 1 ms), shares become a v2 weight")
    func cpu() {
        #expect(ResourceLimits(cpus: 0.5).cpuQuota == 50_000)
        #expect(ResourceLimits(cpus: 0.001).cpuQuota == 1000)
        #expect(ResourceLimits(cpuShares: 1024).cpuWeight == 39)
        #expect(ResourceLimits(cpuShares: 2).cpuWeight == 1)
        #expect(ResourceLimits(cpuShares: 262144).cpuWeight == 10000)
    }

    static let hybrid = """
    24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
    31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
    32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
    35 31 0:30 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu
    36 31 0:31 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpuacct
    37 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
    38 31 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
    """

    @Test("a hybrid host: v1 controllers each on their own mount, cgroup2 beside them")
    func hybridLayout() {
        let layout = CgroupLayout.parse(mountinfo: CgroupUnitTests.hybrid)
        #expect(!layout.isUnified)
        #expect(layout.unified == "/sys/fs/cgroup/unified")
        #expect(layout.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(layout.v1["cpu"] == "/sys/fs/cgroup/cpu")
        let cg = Cgroup(name: "c1", layout: layout)
        #expect(cg.directories["pids"] == "/sys/fs/cgroup/pids/berth/c1")
        // The cgroup2 tree holds no controller here, but freeze, kill and events work there.
        #expect(cg.directories["unified"] == "/sys/fs/cgroup/unified/berth/c1")
    }

    @Test("the container sits at the same path in every v1 hierarchy: cpuset, devices, named ones like systemd's")
    func everyHierarchy() {
        let mounts = CgroupUnitTests.hybrid + """

        39 31 0:34 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
        40 31 0:35 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices
        41 31 0:36 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid - cgroup cgroup rw,net_cls,net_prio
        42 31 0:37 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
        """
        let layout = CgroupLayout.parse(mountinfo: mounts)
        #expect(!layout.isUnified)
        #expect(layout.v1["xattr"] == nil)
        let cg = Cgroup(name: "c1", layout: layout)
        #expect(Set(cg.directories.values) == Set(["unified", "cpu", "cpuacct", "memory", "pids", "cpuset", "devices",
                                                    "net_cls,net_prio", "systemd"].map { "/sys/fs/cgroup/\($0)/berth/c1" }))
        // A v2 host with only systemd's named v1 hierarchy left is still a v2 host.
        let v2 = CgroupLayout.parse(mountinfo: "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
                                    + "42 31 0:37 / /run/systemd-v1 rw - cgroup cgroup rw,name=systemd")
        #expect(v2.isUnified)
        #expect(Cgroup(name: "x", layout: v2).directories == ["unified": "/sys/fs/cgroup/berth/x"])
    }

    @Test("CPU lists parse as the kernel writes them and are written back the same way; nonsense is refused")
    func cpuLists() {
        #expect(ResourceLimits.parseCPUList("0-2,5") == [0, 1, 2, 5])
        #expect(ResourceLimits.parseCPUList("3") == [3])
        #expect(ResourceLimits.parseCPUList("1,0,1\n") == [0, 1])
        for bad in ["", "a", "2-1", "1,,2", "-1", "1-", "0x1", "1 2", "1-2-3", "99999999"] {
            #expect(ResourceLimits.parseCPUList(bad) == nil, "\(bad)")
        }
        #expect(ResourceLimits.formatCPUList([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8")
        #expect(ResourceLimits.formatCPUList([4]) == "4")
    }

    @Test("a cgroup v2 host: one tree; a joint cpu,cpuacct v1 mount is found for both; escapes in paths are decoded")
    func otherLayouts() {
        let v2 = CgroupLayout.parse(mountinfo: "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate")
        #expect(v2.isUnified)
        #expect(Cgroup(name: "x", layout: v2).directories == ["unified": "/sys/fs/cgroup/berth/x"])
        let joint = CgroupLayout.parse(mountinfo: "35 31 0:30 / /sys/fs/cgroup/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct")
        #expect(joint.v1["cpu"] == "/sys/fs/cgroup/cpu acct")
        #expect(joint.v1["cpuacct"] == "/sys/fs/cgroup/cpu acct")
    }
}

@Suite("cgroup v2 files")
struct CgroupV2FileTests {
    @Test("on a v2 host the limits go to cpu.max, cpu.weight, memory.max, pids.max, and OOM kills come from memory.events")
    func v2Files() throws {
        // This machine is hybrid (all controllers on v1), so the v2 writes are checked against a
        // directory laid out as the kernel lays out a cgroup2 tree.
        let root = NSTemporaryDirectory() + "berthtest-cgroup2-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let layout = CgroupLayout(unified: root, v1: [:])
        let cgroup = Cgroup(name: "c1", layout: layout)
        let dir = try #require(cgroup.directories["unified"])
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for file in ["cpu.max", "cpu.weight", "memory.max", "memory.swap.max", "pids.max", "cgroup.procs"] {
            touchFile("\(dir)/\(file)")
        }
        #expect(cgroup.driver is CgroupV2Driver)
        try cgroup.driver.apply(ResourceLimits(memory: 64 << 20, cpus: 1.5, cpuShares: 512, pids: 30))
        func read(_ f: String) -> String { (try? String(contentsOfFile: "\(dir)/\(f)", encoding: .utf8)) ?? "" }
        #expect(read("cpu.max") == "150000 100000")
        #expect(read("cpu.weight") == "20")
        #expect(read("memory.max") == "67108864")
        #expect(read("memory.swap.max") == "0")
        #expect(read("pids.max") == "30")
        try "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n".write(toFile: "\(dir)/memory.events", atomically: false, encoding: .utf8)
        #expect(cgroup.oomKills() == 2)
    }

    @Test("on a v1 host the limits go to each controller's files, and OOM kills come from memory.oom_control")
    func v1Files() throws {
        let root = NSTemporaryDirectory() + "berthtest-cgroup1-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let layout = CgroupLayout(unified: nil, v1: ["cpu": "\(root)/cpu", "cpuacct": "\(root)/cpu", "memory": "\(root)/memory",
                                                     "pids": "\(root)/pids"])
        let cgroup = Cgroup(name: "c1", layout: layout)
        #expect(cgroup.driver is CgroupV1Driver)
        let files = ["cpu": ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares", "cpuacct.usage"],
                     "memory": ["memory.limit_in_bytes", "memory.usage_in_bytes"], "pids": ["pids.max", "pids.current"]]
        for (controller, names) in files {
            let dir = try #require(cgroup.directories[controller])
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for name in names { touchFile("\(dir)/\(name)") }
        }
        try cgroup.driver.apply(ResourceLimits(memory: 64 << 20, cpus: 1.5, cpuShares: 512, pids: 30))
        func read(_ controller: String, _ f: String) -> String {
            (try? String(contentsOfFile: "\(cgroup.directories[controller]!)/\(f)", encoding: .utf8)) ?? ""
        }
        #expect(read("cpu", "cpu.cfs_quota_us") == "150000" && read("cpu", "cpu.cfs_period_us") == "100000")
        #expect(read("cpu", "cpu.shares") == "512")
        #expect(read("memory", "memory.limit_in_bytes") == "67108864")
        #expect(read("pids", "pids.max") == "30")
        try "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n".write(toFile: "\(cgroup.directories["memory"]!)/memory.oom_control",
                                                                 atomically: false, encoding: .utf8)
        #expect(cgroup.oomKills() == 3)
        try "9223372036854771712\n".write(toFile: "\(cgroup.directories["memory"]!)/memory.limit_in_bytes", atomically: false, encoding: .utf8)
        #expect(cgroup.usage().memoryLimit == nil, "v1's 'no limit' reads as none")
    }

    @Test("a cgroup read back from a container's state gets the driver of its directories")
    func driverFromState() {
        #expect(Cgroup(name: "c", directories: ["unified": "/sys/fs/cgroup/berth/c"]).driver is CgroupV2Driver)
        #expect(Cgroup(name: "c", directories: ["unified": "/sys/fs/cgroup/unified/berth/c", "memory": "/sys/fs/cgroup/memory/berth/c"])
                    .driver is CgroupV1Driver)
        let hybrid = CgroupLayout(unified: "/sys/fs/cgroup/unified", v1: ["memory": "/sys/fs/cgroup/memory", "name=systemd": "/sys/fs/cgroup/systemd"])
        #expect(Cgroup(name: "c", layout: hybrid).driver is CgroupV1Driver)
        #expect(Cgroup(name: "c", layout: CgroupLayout(unified: "/sys/fs/cgroup", v1: ["name=systemd": "/x"])).driver is CgroupV2Driver)
    }
}
