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
