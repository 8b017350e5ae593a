#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import Dispatch
import BerthNetlink
import BerthCNIClient
import BerthRuntime
import BerthSystem
import CBerthSys
import BerthJSON
import BerthNet

/// The lab's cgroups: a host with limits has a cgroup of its own, and what runs on it goes there.
extension Lab {
    /// The cgroup of `host` (its limits), under the runtime's parent.
    func cgroup(_ host: String) throws(LabError) -> Cgroup {
        do {
            return Cgroup(name: namespace(host), layout: try CgroupLayout.current())
        } catch {
            throw LabError("cannot read the cgroup mounts: \(error)")
        }
    }

    /// A cgroup with its limits for every host that has some.
    func makeCgroups() throws(LabError) {
        for host in topology.hosts {
            guard let limits = host.limits else { continue }
            do {
                try cgroup(host.name).create(limits: limits)
            } catch {
                throw LabError("host \(host.name): cgroup: \(error)")
            }
        }
    }

    /// Where a process on `host` goes: its cgroup, if it has one (only hosts with limits do).
    func placement(_ host: String) -> CgroupPlacement {
        guard let cg = try? cgroup(host) else { return CgroupPlacement() }
        let exists = { (dir: String) in access(dir, F_OK) == 0 }
        return CgroupPlacement(v1: cg.placement.v1.filter(exists), cgroup2: cg.placement.cgroup2.flatMap { exists($0) ? $0 : nil })
    }

    /// Kills the processes in the lab's cgroups and removes them.
    func removeCgroups(prefix: String) {
        guard let layout = try? CgroupLayout.current() else { return }
        var names = Set<String>()
        for mount in [layout.unified].compactMap({ $0 }) + Array(layout.v1.values) {
            let parent = "\(mount)/\(Cgroup.parentName)"
            guard let dir = try? DirectoryHandle(path: parent, create: false), let entries = try? dir.names() else { continue }
            names.formUnion(entries.filter { $0.hasPrefix(prefix) })
        }
        for name in names {
            let cg = Cgroup(name: name, layout: layout)
            for _ in 0..<100 {
                cg.killAll()
                if (try? cg.remove()) != nil { break }
                usleep(20_000)
            }
        }
    }

    /// How many processes the OOM killer has killed on `host` (in its cgroup; 0 without limits).
    public func oomKills(_ host: String) -> Int {
        guard let cg = try? cgroup(host) else { return 0 }
        return cg.oomKills()
    }
}
