#if canImport(Glibc)
import Glibc
#endif
import BerthSystem

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
