#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

/// cgroup v1 (a hybrid or legacy host): each controller has a tree of its
/// own (cpu and cpuacct may share one), and limits go to each controller's
/// files. A cgroup2 tree without controllers, where the host has one,
/// gives the cgroup `cgroup.freeze`, `cgroup.kill` and `cgroup.events`;
/// where it cannot be written (a container's read-only mount) the v1
/// freezer serves.
struct CgroupV1Driver: CgroupDriver {
    let directories: [String: String]

    init(name: String, layout: CgroupLayout) {
        var dirs: [String: String] = [:]
        if let root = layout.unified { dirs["unified"] = "\(root)/\(Cgroup.parentName)/\(name)" }
        for (controller, mount) in layout.v1 { dirs[controller] = "\(mount)/\(Cgroup.parentName)/\(name)" }
        directories = dirs
    }

    init(directories: [String: String]) { self.directories = directories }

    /// The cgroup2 directory, when `create` could make it.
    var cgroup2Directory: String? {
        directories["unified"].flatMap { access($0, F_OK) == 0 ? $0 : nil }
    }

    func create(limits: ResourceLimits) throws(SystemError) {
        for dir in Set(directories.values) {
            do {
                try makeWithParent(dir)
            } catch {
                // The controller-less cgroup2 tree only adds freezing and
                // killing: where it cannot be written, the v1 freezer serves.
                if dir != directories["unified"] { throw error }
            }
        }
        if let dir = directories["cpuset"] {
            // A new v1 cpuset cgroup has no CPUs and no memory nodes, and no
            // process can join it until it has: both levels take their parent's.
            let parent = String(dir[..<dir.lastIndex(of: "/")!])
            try inheritCpuset(parent)
            try inheritCpuset(dir)
        }
    }

    /// Fills the empty `cpuset.cpus` and `cpuset.mems` of `dir` from its parent's.
    private func inheritCpuset(_ dir: String) throws(SystemError) {
        let parent = String(dir[..<dir.lastIndex(of: "/")!])
        for file in ["cpuset.cpus", "cpuset.mems"] where try readText("\(dir)/\(file)").trimmingWhitespace.isEmpty {
            try writeFile(try readText("\(parent)/\(file)").trimmingWhitespace, to: "\(dir)/\(file)")
        }
    }

    func apply(_ limits: ResourceLimits) throws(SystemError) {
        if let dir = directories["cpu"] {
            if let quota = limits.cpuQuota {
                try writeFile("\(ResourceLimits.cpuPeriod)", to: "\(dir)/cpu.cfs_period_us")
                try writeFile("\(quota)", to: "\(dir)/cpu.cfs_quota_us")
            }
            if let shares = limits.cpuShares { try writeFile("\(shares)", to: "\(dir)/cpu.shares") }
        }
        if let dir = directories["memory"], let memory = limits.memory {
            try writeFile("\(memory)", to: "\(dir)/memory.limit_in_bytes")
            try? writeFile("\(memory)", to: "\(dir)/memory.memsw.limit_in_bytes")
        }
        if let dir = directories["pids"], let pids = limits.pids { try writeFile("\(pids)", to: "\(dir)/pids.max") }
        if let cpus = limits.cpusetCpus {
            guard let dir = directories["cpuset"] else {
                throw SystemError("find the cpuset controller for the container's CPU set (no cpuset hierarchy is mounted)", errno: ENOENT)
            }
            try writeFile(cpus, to: "\(dir)/cpuset.cpus")
        }
    }

    /// `cgroup.freeze` of the cgroup2 directory, or else the v1 freezer's `freezer.state`.
    func freeze(_ frozen: Bool) throws(SystemError) {
        if let dir = cgroup2Directory(having: "cgroup.freeze") {
            try writeFile(frozen ? "1" : "0", to: "\(dir)/cgroup.freeze")
        } else if let dir = directories["freezer"] {
            try writeFile(frozen ? "FROZEN" : "THAWED", to: "\(dir)/freezer.state")
        } else {
            throw SystemError("find a freezer (neither cgroup.freeze nor a v1 freezer)", errno: ENOENT)
        }
    }

    func isFrozen() -> Bool {
        if let dir = cgroup2Directory(having: "cgroup.freeze") {
            return (try? readText("\(dir)/cgroup.freeze"))?.trimmingWhitespace == "1"
        }
        guard let dir = directories["freezer"], let state = try? readText("\(dir)/freezer.state") else { return false }
        return !state.hasPrefix("THAWED")
    }

    func usage() -> Cgroup.Usage {
        let cpu = directories["cpuacct"].flatMap { number("\($0)/cpuacct.usage") } ?? 0
        let memory = directories["memory"]
        // v1 writes "no limit" as the largest page-aligned number.
        let limit = memory.flatMap { number("\($0)/memory.limit_in_bytes") }.flatMap { $0 >= (1 << 62) ? nil : $0 }
        return Cgroup.Usage(cpuNanoseconds: cpu, memoryBytes: memory.flatMap { number("\($0)/memory.usage_in_bytes") } ?? 0,
                            memoryLimit: limit, pids: Int(directories["pids"].flatMap { number("\($0)/pids.current") } ?? 0))
    }

    func oomKills() -> Int {
        guard let file = directories["memory"].map({ "\($0)/memory.oom_control" }), let text = try? readText(file) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }
}
