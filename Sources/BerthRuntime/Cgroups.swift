#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

/// The resource limits of a container.
public struct ResourceLimits: Equatable, Sendable {
    /// Memory limit in bytes.
    public var memory: UInt64?
    /// CPU time as a number of CPUs (0.5 = half of one CPU), enforced by the CFS quota.
    public var cpus: Double?
    /// Relative CPU weight, in cgroup v1 shares (2-262144; 1024 is the default).
    public var cpuShares: Int?
    /// Maximum number of processes.
    public var pids: Int?
    /// The CPUs the container may run on, as the kernel writes a list ("0-2,5").
    public var cpusetCpus: String?

    public init(memory: UInt64? = nil, cpus: Double? = nil, cpuShares: Int? = nil, pids: Int? = nil,
                cpusetCpus: String? = nil) {
        self.memory = memory
        self.cpus = cpus
        self.cpuShares = cpuShares
        self.pids = pids
        self.cpusetCpus = cpusetCpus
    }

    /// The smallest memory limit a container can start under (labs use the same).
    public static let minimumMemory: UInt64 = 4 << 20

    /// Why these limits can never work on a machine with `onlineCPUs` CPUs,
    /// naming the limit (berthctl names its flag), or nil. Checked before
    /// anything is made. `withInit`: Berth's init is PID 1 beside the
    /// command, so two processes at least.
    public func problem(onlineCPUs: Int, withInit: Bool = true) -> FieldProblem? {
        if let memory, memory < ResourceLimits.minimumMemory {
            return FieldProblem("memory", "\(memory) bytes is below the least a container can start with (4m)")
        }
        if let cpus {
            let most = Double(max(1, onlineCPUs))
            if !cpus.isFinite || cpus < 0.01 || cpus > most {
                return FieldProblem("cpus", "must be between 0.01 and \(Int(most)) (this machine has \(Int(most)) CPUs), not \(cpus)")
            }
        }
        if let cpuShares, !(2...262144).contains(cpuShares) { return FieldProblem("cpuShares", "must be within 2-262144, not \(cpuShares)") }
        if let pids {
            let least = withInit ? 2 : 1
            if pids < least {
                return FieldProblem("pids", "must be at least \(least) (\(withInit ? "Berth's init and the command" : "the command")), not \(pids)")
            }
        }
        return nil
    }

    /// With lxcfs, a `cpus` limit without a CPU set also pins the container
    /// to that many CPUs (rounded up; the first online ones): lxcfs shows
    /// the quota as CPUs in /proc, but `nproc` and anything else that asks
    /// sched_getaffinity count the CPUs the container may run on, and the two
    /// should agree (lxcfs's users give a cpuset for the same reason).
    public static func withImpliedCPUSet(_ limits: ResourceLimits, lxcfs: Bool, online: String) -> ResourceLimits {
        guard lxcfs, limits.cpusetCpus == nil, let cpus = limits.cpus, let list = parseCPUList(online) else { return limits }
        let count = max(1, Int(cpus.rounded(.up)))
        guard count < list.count else { return limits }
        var out = limits
        out.cpusetCpus = formatCPUList(Array(list.prefix(count)))
        return out
    }

    /// The CPUs this machine has online (sysconf).
    public static var onlineCPUs: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The CFS period used for `cpus`, in microseconds.
    public static let cpuPeriod = 100_000

    /// The CFS quota for `cpus` (at least 1000 us, the kernel's minimum).
    public var cpuQuota: Int? {
        cpus.map { max(1000, Int(($0 * Double(ResourceLimits.cpuPeriod)).rounded())) }
    }

    /// cgroup v2 `cpu.weight` for `cpuShares` (the mapping runc and systemd use).
    public var cpuWeight: Int? {
        cpuShares.map { 1 + (($0 - 2) * 9999) / 262142 }
    }

    /// The CPU numbers of a list like "0-2,5" (what `cpuset.cpus` and
    /// /sys/devices/system/cpu/online hold), sorted, without repeats; nil
    /// when it is not such a list (empty, a reversed range, a stray character).
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus = Set<Int>()
        for part in text.trimmingWhitespace.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                  bounds.allSatisfy({ !$0.isEmpty && $0.count <= 5 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                  let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]), low <= high else { return nil }
            cpus.formUnion(low...high)
        }
        return cpus.isEmpty ? nil : cpus.sorted()
    }

    /// `cpus` written as the kernel writes a CPU list: ranges joined by commas.
    public static func formatCPUList(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < cpus.count {
            var j = i
            while j + 1 < cpus.count && cpus[j + 1] == cpus[j] + 1 { j += 1 }
            parts.append(j == i ? "\(cpus[i])" : "\(cpus[i])-\(cpus[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// Parses "512m", "1g", "1048576", "64k" (binary units).
    public static func parseSize(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        var digits = Substring(lower)
        var multiplier: UInt64 = 1
        if let last = lower.last, !last.isNumber {
            switch last {
            case "k": multiplier = 1 << 10
            case "m": multiplier = 1 << 20
            case "g": multiplier = 1 << 30
            case "t": multiplier = 1 << 40
            default: return nil
            }
            digits = digits.dropLast()
            if digits.last == "i" || digits.last == "b" { return nil }
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let n = UInt64(digits) else { return nil }
        let (value, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : value
    }
}

/// Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.
///
/// On a cgroup v2 ("unified") host one cgroup2 file system holds every
/// controller. On a hybrid or legacy host each v1 controller has its own
/// mount (cpu and cpuacct may share one), and a cgroup2 file system without
/// controllers may sit beside them (/sys/fs/cgroup/unified).
public struct CgroupLayout: Equatable, Sendable {
    /// The cgroup2 mount, if any.
    public var unified: String?
    /// v1 hierarchy -> its mount point, by controller name, or "name=NAME"
    /// for a named hierarchy without controllers (systemd's).
    public var v1: [String: String]

    /// The controllers a v1 mount option can name.
    static let v1Controllers: Set<String> = ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
                                             "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"]

    /// True when the v2 hierarchy holds the controllers (no v1 controller mounted).
    public var isUnified: Bool { unified != nil && !v1.keys.contains { !$0.hasPrefix("name=") } }

    public static func parse(mountinfo: String) -> CgroupLayout {
        var layout = CgroupLayout(unified: nil, v1: [:])
        for line in mountinfo.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(of: "-"), fields.count > dash + 3, fields.count > 4 else { continue }
            let mountPoint = unescape(String(fields[4]))
            let fsType = fields[dash + 1]
            if fsType == "cgroup2" {
                if layout.unified == nil { layout.unified = mountPoint }
            } else if fsType == "cgroup" {
                for option in fields[dash + 3].split(separator: ",") {
                    let name = String(option)
                    if CgroupLayout.v1Controllers.contains(name) || name.hasPrefix("name="), layout.v1[name] == nil {
                        layout.v1[name] = mountPoint
                    }
                }
            }
        }
        return layout
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var chars = Array(s)[...]
        while let c = chars.popFirst() {
            if c == "\\", chars.count >= 3, let code = UInt8(String(chars.prefix(3)), radix: 8) {
                out.append(Character(Unicode.Scalar(code)))
                chars = chars.dropFirst(3)
            } else {
                out.append(c)
            }
        }
        return out
    }

    public static func current() throws(SystemError) -> CgroupLayout {
        let bytes = try OwnedDescriptor(openingForReading: "/proc/self/mountinfo").readAll()
        return parse(mountinfo: String(decoding: bytes, as: UTF8.self))
    }
}

/// A container's cgroup, at the same path `berth/NAME` in every hierarchy:
/// the cgroup2 one and, on a hybrid or legacy host, every v1 one (as runc
/// does; lxcfs, for one, reads the CPU quota at the container's cpuset path).
///
/// Limits go to the hierarchy holding the controllers: v2 on a unified host,
/// v1 otherwise. The cgroup2 directory, also on a hybrid host where that
/// hierarchy has no controllers, serves what needs none: `cgroup.freeze`,
/// `cgroup.kill` and `cgroup.events`.
public struct Cgroup: Sendable {
    public static let parentName = "berth"

    public let name: String
    public let layout: CgroupLayout
    /// The directories, keyed by v1 controller (or "name=NAME"), and "unified" for v2.
    public let directories: [String: String]

    public init(name: String, layout: CgroupLayout) {
        self.name = name
        self.layout = layout
        var dirs: [String: String] = [:]
        if let root = layout.unified { dirs["unified"] = "\(root)/\(Cgroup.parentName)/\(name)" }
        if !layout.isUnified {
            for (controller, mount) in layout.v1 { dirs[controller] = "\(mount)/\(Cgroup.parentName)/\(name)" }
        }
        directories = dirs
    }

    /// Creates the directories and writes the limits.
    public func create(limits: ResourceLimits) throws(SystemError) {
        if directories.isEmpty { throw SystemError("find a cgroup hierarchy in /proc/self/mountinfo", errno: ENOENT) }
        if layout.isUnified, let root = layout.unified {
            // Controllers must be enabled on every level above the container's cgroup.
            let parent = "\(root)/\(Cgroup.parentName)"
            try makeDirectory(parent)
            let wanted = ["cpu", "memory", "pids"] + (limits.cpusetCpus == nil ? [] : ["cpuset"])
            for dir in [root, parent] {
                for controller in wanted { try? write("+\(controller)", to: "\(dir)/cgroup.subtree_control") }
            }
        }
        for dir in Set(directories.values) {
            do {
                try makeWithParent(dir)
            } catch {
                // On a hybrid host the controller-less cgroup2 tree only adds
                // cgroup.freeze and cgroup.kill: where it cannot be written
                // (a container's read-only mount), the v1 freezer serves.
                if !(dir == directories["unified"] && !layout.isUnified) { throw error }
            }
        }
        if !layout.isUnified, let dir = directories["cpuset"] {
            // A new v1 cpuset cgroup has no CPUs and no memory nodes, and no
            // process can join it until it has: both levels take their parent's.
            let parent = String(dir[..<dir.lastIndex(of: "/")!])
            try inheritCpuset(parent)
            try inheritCpuset(dir)
        }
        try apply(limits)
    }

    /// Creates `dir` and its parent. `rm` of the last container removes the
    /// parent: it is made again if that raced us.
    private func makeWithParent(_ dir: String) throws(SystemError) {
        let parent = String(dir[..<dir.lastIndex(of: "/")!])
        for attempt in 0..<3 {
            try makeDirectory(parent)
            if mkdir(dir, 0o755) == 0 || errno == EEXIST { return }
            if errno != ENOENT || attempt == 2 { throw SystemError.last("create cgroup \(dir)") }
        }
    }

    /// Fills the empty `cpuset.cpus` and `cpuset.mems` of v1 cgroup `dir` from its parent's.
    private func inheritCpuset(_ dir: String) throws(SystemError) {
        let parent = String(dir[..<dir.lastIndex(of: "/")!])
        for file in ["cpuset.cpus", "cpuset.mems"] where try readText("\(dir)/\(file)").trimmingWhitespace.isEmpty {
            try write(try readText("\(parent)/\(file)").trimmingWhitespace, to: "\(dir)/\(file)")
        }
    }

    func apply(_ limits: ResourceLimits) throws(SystemError) {
        if layout.isUnified, let dir = directories["unified"] {
            if let quota = limits.cpuQuota { try write("\(quota) \(ResourceLimits.cpuPeriod)", to: "\(dir)/cpu.max") }
            if let weight = limits.cpuWeight { try write("\(weight)", to: "\(dir)/cpu.weight") }
            if let memory = limits.memory {
                try write("\(memory)", to: "\(dir)/memory.max")
                try? write("0", to: "\(dir)/memory.swap.max")
            }
            if let pids = limits.pids { try write("\(pids)", to: "\(dir)/pids.max") }
            if let cpus = limits.cpusetCpus { try write(cpus, to: "\(dir)/cpuset.cpus") }
            return
        }
        if let dir = directories["cpu"] {
            if let quota = limits.cpuQuota {
                try write("\(ResourceLimits.cpuPeriod)", to: "\(dir)/cpu.cfs_period_us")
                try write("\(quota)", to: "\(dir)/cpu.cfs_quota_us")
            }
            if let shares = limits.cpuShares { try write("\(shares)", to: "\(dir)/cpu.shares") }
        }
        if let dir = directories["memory"], let memory = limits.memory {
            try write("\(memory)", to: "\(dir)/memory.limit_in_bytes")
            try? write("\(memory)", to: "\(dir)/memory.memsw.limit_in_bytes")
        }
        if let dir = directories["pids"], let pids = limits.pids { try write("\(pids)", to: "\(dir)/pids.max") }
        if let cpus = limits.cpusetCpus {
            guard let dir = directories["cpuset"] else {
                throw SystemError("find the cpuset controller for the container's CPU set (no cpuset hierarchy is mounted)", errno: ENOENT)
            }
            try write(cpus, to: "\(dir)/cpuset.cpus")
        }
    }

    /// The cgroup2 directory a process can be put in: on a unified host
    /// always; on a hybrid one only when `create` could make it.
    var cgroup2Directory: String? {
        directories["unified"].flatMap { layout.isUnified || access($0, F_OK) == 0 ? $0 : nil }
    }

    /// The v1 directories (each once: cpu and cpuacct may share one).
    var v1Directories: [String] {
        Set(directories.filter { $0.key != "unified" }.values).sorted()
    }

    /// Moves process `pid` into every directory of this cgroup.
    public func add(pid: pid_t) throws(SystemError) {
        for dir in v1Directories + [cgroup2Directory].compactMap({ $0 }) { try write("\(pid)", to: "\(dir)/cgroup.procs") }
    }

    /// How a new process joins this cgroup without waiting on the kernel.
    public var placement: CgroupPlacement {
        CgroupPlacement(v1: v1Directories, cgroup2: cgroup2Directory)
    }

    /// The cgroup2 directory when the kernel has `file` in it (cgroup.freeze
    /// since 5.2, cgroup.kill since 5.14).
    private func v2Directory(having file: String) -> String? {
        guard let dir = directories["unified"], access("\(dir)/\(file)", F_OK) == 0 else { return nil }
        return dir
    }

    /// Freezes (pauses) or thaws every process of the cgroup: `cgroup.freeze`
    /// of the cgroup2 directory, or else the v1 freezer's `freezer.state`.
    public func freeze(_ frozen: Bool) throws(SystemError) {
        if let dir = v2Directory(having: "cgroup.freeze") {
            try write(frozen ? "1" : "0", to: "\(dir)/cgroup.freeze")
        } else if let dir = directories["freezer"] {
            try write(frozen ? "FROZEN" : "THAWED", to: "\(dir)/freezer.state")
        } else {
            throw SystemError("find a freezer for cgroup \(name) (neither cgroup.freeze nor a v1 freezer)", errno: ENOENT)
        }
    }

    /// Kills every process of the cgroup: all at once by `cgroup.kill` (no
    /// fork can escape it), then one by one whatever is left in any hierarchy
    /// (a `run` killed while placing its container leaves it in some only).
    public func killAll() {
        if let dir = v2Directory(having: "cgroup.kill") { try? write("1", to: "\(dir)/cgroup.kill") }
        for pid in pids() { kill(pid, SIGKILL) }
    }

    /// Whether a process is still in the cgroup, in any hierarchy.
    public func isPopulated() -> Bool {
        if let dir = directories["unified"], let events = try? readText("\(dir)/cgroup.events"),
           events.split(separator: "\n").contains("populated 1") {
            return true
        }
        return !pids().isEmpty
    }

    /// Whether the cgroup is frozen (or freezing).
    public func isFrozen() -> Bool {
        if let dir = v2Directory(having: "cgroup.freeze") {
            return (try? readText("\(dir)/cgroup.freeze"))?.trimmingWhitespace == "1"
        }
        guard let dir = directories["freezer"], let state = try? readText("\(dir)/freezer.state") else { return false }
        return !state.hasPrefix("THAWED")
    }

    /// What the cgroup uses now: CPU time so far, memory and its limit, processes.
    public struct Usage: Equatable, Sendable {
        /// CPU time used so far, in nanoseconds.
        public var cpuNanoseconds: UInt64
        public var memoryBytes: UInt64
        /// nil when unlimited.
        public var memoryLimit: UInt64?
        public var pids: Int
    }

    public func usage() -> Usage {
        func number(_ path: String) -> UInt64? {
            (try? readText(path)).flatMap { UInt64($0.trimmingWhitespace) }
        }
        if layout.isUnified, let dir = directories["unified"] {
            let stat = (try? readText("\(dir)/cpu.stat")) ?? ""
            let usec = stat.split(separator: "\n").first { $0.hasPrefix("usage_usec ") }.flatMap { UInt64($0.split(separator: " ")[1]) } ?? 0
            return Usage(cpuNanoseconds: usec * 1000, memoryBytes: number("\(dir)/memory.current") ?? 0,
                         memoryLimit: number("\(dir)/memory.max"), pids: Int(number("\(dir)/pids.current") ?? 0))
        }
        let cpu = directories["cpuacct"].flatMap { number("\($0)/cpuacct.usage") } ?? 0
        let memory = directories["memory"]
        // v1 writes "no limit" as the largest page-aligned number.
        let limit = memory.flatMap { number("\($0)/memory.limit_in_bytes") }.flatMap { $0 >= (1 << 62) ? nil : $0 }
        return Usage(cpuNanoseconds: cpu, memoryBytes: memory.flatMap { number("\($0)/memory.usage_in_bytes") } ?? 0,
                     memoryLimit: limit, pids: Int(directories["pids"].flatMap { number("\($0)/pids.current") } ?? 0))
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    public func oomKills() -> Int {
        let file = layout.isUnified ? directories["unified"].map { "\($0)/memory.events" }
                                    : directories["memory"].map { "\($0)/memory.oom_control" }
        guard let file, let text = try? readText(file) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }

    /// The processes in the cgroup, in any of its hierarchies: a `run`
    /// killed while it was adding its container to them leaves it in some only.
    public func pids() -> [pid_t] {
        var all = Set<pid_t>()
        for dir in Set(directories.values) {
            guard let text = try? readText("\(dir)/cgroup.procs") else { continue }
            all.formUnion(text.split(separator: "\n").compactMap { pid_t($0) })
        }
        return all.sorted()
    }

    /// Removes the directories (the cgroup must be empty). Missing ones are fine.
    /// The shared `berth` parent goes too once it is empty.
    public func remove() throws(SystemError) {
        for dir in Set(directories.values) where rmdir(dir) != 0 && errno != ENOENT {
            throw SystemError.last("remove cgroup \(dir)")
        }
        for dir in Set(directories.values) {
            rmdir(String(dir[..<dir.lastIndex(of: "/")!]))  // fails harmlessly while other containers use it
        }
    }

    // MARK: Files

    func makeDirectory(_ path: String) throws(SystemError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError.last("create cgroup \(path)") }
    }
}

func write(_ text: String, to path: String) throws(SystemError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { throw SystemError.last("open \(path)") }
    let handle = OwnedDescriptor(adopting: fd)
    do {
        try handle.writeAll(Array(text.utf8))
    } catch {
        throw SystemError("write \"\(text)\" to \(path)", errno: error.errno)
    }
}

func readText(_ path: String) throws(SystemError) -> String {
    String(decoding: try OwnedDescriptor(openingForReading: path).readAll(), as: UTF8.self)
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }
}

