#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

/// A container's cgroup, at the same path `berth/NAME` in every hierarchy:
/// the cgroup2 one and, on a hybrid or legacy host, every v1 one (as runc
/// does; lxcfs, for one, reads the CPU quota at the container's cpuset path).
///
/// What differs between the versions is a driver's: `CgroupV2Driver` on a
/// unified host (one tree holds every controller), `CgroupV1Driver` on a
/// hybrid or legacy one (limits in the v1 controllers' trees; the cgroup2
/// directory, where there is one, serves what needs no controller:
/// `cgroup.freeze`, `cgroup.kill` and `cgroup.events`). What is alike
/// (directories, membership, killing, removal) is here.
public struct Cgroup: Sendable {
    public static let parentName = "berth"

    public let name: String
    public let layout: CgroupLayout
    let driver: any CgroupDriver

    public init(name: String, layout: CgroupLayout) {
        self.name = name
        self.layout = layout
        driver = layout.isUnified ? CgroupV2Driver(name: name, layout: layout) : CgroupV1Driver(name: name, layout: layout)
    }

    /// The cgroup at `directories` (as a container's state recorded them):
    /// only a cgroup2 directory means v2.
    init(name: String, directories: [String: String]) {
        self.name = name
        // Which hierarchies, not where they are mounted: enough to tell v2 from v1.
        layout = CgroupLayout(unified: directories["unified"].map { _ in "" },
                              v1: directories.filter { $0.key != "unified" }.mapValues { _ in "" })
        if layout.isUnified, let dir = directories["unified"] {
            driver = CgroupV2Driver(directory: dir)
        } else {
            driver = CgroupV1Driver(directories: directories)
        }
    }

    /// The directories, keyed by v1 controller (or "name=NAME"), and "unified" for v2.
    public var directories: [String: String] { driver.directories }

    /// Creates the directories and writes the limits.
    public func create(limits: ResourceLimits) throws(SystemError) {
        if directories.isEmpty { throw SystemError("find a cgroup hierarchy in /proc/self/mountinfo", errno: ENOENT) }
        try driver.create(limits: limits)
        try driver.apply(limits)
    }

    /// Moves process `pid` into every directory of this cgroup.
    public func add(pid: pid_t) throws(SystemError) {
        for dir in placement.v1 + [placement.cgroup2].compactMap({ $0 }) { try writeFile("\(pid)", to: "\(dir)/cgroup.procs") }
    }

    /// How a new process joins this cgroup without waiting on the kernel.
    public var placement: CgroupPlacement {
        CgroupPlacement(v1: Set(directories.filter { $0.key != "unified" }.values).sorted(), cgroup2: driver.cgroup2Directory)
    }

    /// Freezes (pauses) or thaws every process of the cgroup.
    public func freeze(_ frozen: Bool) throws(SystemError) { try driver.freeze(frozen) }

    /// Whether the cgroup is frozen (or freezing).
    public func isFrozen() -> Bool { driver.isFrozen() }

    /// Kills every process of the cgroup: all at once by `cgroup.kill` (no
    /// fork can escape it), then one by one whatever is left in any hierarchy
    /// (a `run` killed while placing its container leaves it in some only).
    public func killAll() {
        if let dir = driver.cgroup2Directory(having: "cgroup.kill") { try? writeFile("1", to: "\(dir)/cgroup.kill") }
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

    /// What the cgroup uses now: CPU time so far, memory and its limit, processes.
    public struct Usage: Equatable, Sendable {
        /// CPU time used so far, in nanoseconds.
        public var cpuNanoseconds: UInt64
        public var memoryBytes: UInt64
        /// nil when unlimited.
        public var memoryLimit: UInt64?
        public var pids: Int
    }

    public func usage() -> Usage { driver.usage() }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    public func oomKills() -> Int { driver.oomKills() }

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
}

/// What differs between cgroup v1 and v2: which directories a cgroup has,
/// how they are made ready for limits, where the limits go, how it freezes,
/// and how its usage and OOM kills are read.
protocol CgroupDriver: Sendable {
    /// The directories, keyed by v1 controller (or "name=NAME"), and "unified" for cgroup2.
    var directories: [String: String] { get }
    /// The cgroup2 directory a process can be put in, if any.
    var cgroup2Directory: String? { get }
    /// Creates the directories, ready for `apply`.
    func create(limits: ResourceLimits) throws(SystemError)
    /// Writes `limits` to the controllers' files.
    func apply(_ limits: ResourceLimits) throws(SystemError)
    func freeze(_ frozen: Bool) throws(SystemError)
    func isFrozen() -> Bool
    func usage() -> Cgroup.Usage
    func oomKills() -> Int
}

extension CgroupDriver {
    /// The cgroup2 directory when the kernel has `file` in it (cgroup.freeze
    /// since 5.2, cgroup.kill since 5.14).
    func cgroup2Directory(having file: String) -> String? {
        guard let dir = directories["unified"], access("\(dir)/\(file)", F_OK) == 0 else { return nil }
        return dir
    }

    /// Creates `dir` and its parent. `rm` of the last container removes the
    /// parent: it is made again if that raced us.
    func makeWithParent(_ dir: String) throws(SystemError) {
        let parent = String(dir[..<dir.lastIndex(of: "/")!])
        for attempt in 0..<3 {
            try makeCgroupDirectory(parent)
            if mkdir(dir, 0o755) == 0 || errno == EEXIST { return }
            if errno != ENOENT || attempt == 2 { throw SystemError.last("create cgroup \(dir)") }
        }
    }

    /// The first line of `path` as a number.
    func number(_ path: String) -> UInt64? {
        (try? readText(path)).flatMap { UInt64($0.trimmingWhitespace) }
    }
}

func makeCgroupDirectory(_ path: String) throws(SystemError) {
    if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError.last("create cgroup \(path)") }
}

func writeFile(_ text: String, to path: String) throws(SystemError) {
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

