#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

/// cgroup v2 (a unified host): one tree holds every controller; limits go
/// to cpu.max, cpu.weight, memory.max, pids.max and cpuset.cpus, once the
/// controllers are enabled on every level above the container's cgroup.
struct CgroupV2Driver: CgroupDriver {
    let directory: String

    init(name: String, layout: CgroupLayout) {
        directory = "\(layout.unified!)/\(Cgroup.parentName)/\(name)"
    }

    init(directory: String) { self.directory = directory }

    var directories: [String: String] { ["unified": directory] }
    var cgroup2Directory: String? { directory }

    func create(limits: ResourceLimits) throws(SystemError) {
        let parent = String(directory[..<directory.lastIndex(of: "/")!])
        let root = String(parent[..<parent.lastIndex(of: "/")!])
        try makeCgroupDirectory(parent)
        let wanted = ["cpu", "memory", "pids"] + (limits.cpusetCpus == nil ? [] : ["cpuset"])
        for dir in [root, parent] {
            for controller in wanted { try? writeFile("+\(controller)", to: "\(dir)/cgroup.subtree_control") }
        }
        try makeWithParent(directory)
    }

    func apply(_ limits: ResourceLimits) throws(SystemError) {
        let dir = directory
        if let quota = limits.cpuQuota { try writeFile("\(quota) \(ResourceLimits.cpuPeriod)", to: "\(dir)/cpu.max") }
        if let weight = limits.cpuWeight { try writeFile("\(weight)", to: "\(dir)/cpu.weight") }
        if let memory = limits.memory {
            try writeFile("\(memory)", to: "\(dir)/memory.max")
            try? writeFile("0", to: "\(dir)/memory.swap.max")
        }
        if let pids = limits.pids { try writeFile("\(pids)", to: "\(dir)/pids.max") }
        if let cpus = limits.cpusetCpus { try writeFile(cpus, to: "\(dir)/cpuset.cpus") }
    }

    func freeze(_ frozen: Bool) throws(SystemError) {
        guard let dir = cgroup2Directory(having: "cgroup.freeze") else {
            throw SystemError("find cgroup.freeze in \(directory) (the kernel has it since 5.2)", errno: ENOENT)
        }
        try writeFile(frozen ? "1" : "0", to: "\(dir)/cgroup.freeze")
    }

    func isFrozen() -> Bool {
        (try? readText("\(directory)/cgroup.freeze"))?.trimmingWhitespace == "1"
    }

    func usage() -> Cgroup.Usage {
        let stat = (try? readText("\(directory)/cpu.stat")) ?? ""
        let usec = stat.split(separator: "\n").first { $0.hasPrefix("usage_usec ") }.flatMap { UInt64($0.split(separator: " ")[1]) } ?? 0
        return Cgroup.Usage(cpuNanoseconds: usec * 1000, memoryBytes: number("\(directory)/memory.current") ?? 0,
                            memoryLimit: number("\(directory)/memory.max"), pids: Int(number("\(directory)/pids.current") ?? 0))
    }

    func oomKills() -> Int {
        guard let text = try? readText("\(directory)/memory.events") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }
}
