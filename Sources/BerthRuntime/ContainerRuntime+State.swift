#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthCNIClient
import BerthJSON
import BerthSystem
import CBerthSys

extension ContainerRuntime {
    // MARK: State

    /// Writes `state.json` whole or not at all (scratch file, then rename).
    static func saveState(_ state: ContainerState) throws(RuntimeError) {
        do {
            let dir = try DirectoryHandle(path: stateDirectory(state.name), create: false)
            let scratch = try dir.writeScratch(Array(state.json().serialized(pretty: true).utf8))
            try dir.publish(scratch, as: "state.json", in: dir)
        } catch {
            throw RuntimeError("cannot save the state of container \(state.name): \(error)")
        }
    }

    static func removeState(_ name: String) {
        removeStateDirectory(stateDirectory(name))
    }

    /// Removes a state directory: its known files, scratch files of a killed save, itself.
    static func removeStateDirectory(_ dir: String) {
        if let handle = try? DirectoryHandle(path: dir, create: false), let names = try? handle.names() {
            for name in names { _ = try? handle.remove(name) }
        }
        rmdir(dir)
    }

    /// The recorded state of `name`, with a running container's liveness re-checked.
    public static func state(_ name: String) throws(RuntimeError) -> ContainerState {
        if CNIEnvironment.containerIDProblem(name) != nil { throw RuntimeError("no container named \(name)") }
        guard let fd = try? OwnedDescriptor(openingForReading: "\(stateDirectory(name))/state.json"),
              let bytes = try? fd.readAll() else {
            throw RuntimeError("no container named \(name)")
        }
        guard let json = try? JSON.parse(bytes), var state = ContainerState(json: json) else {
            throw RuntimeError("the state of container \(name) is unreadable")
        }
        if state.status == .running && Glibc.kill(state.pid, 0) != 0 {
            state.status = .exited
        } else if state.status == .running && Cgroup(existing: state).isFrozen() {
            state.status = .paused
        }
        state.oomKills = max(state.oomKills, Cgroup(existing: state).oomKills())
        return state
    }

    /// Every container with recorded state, by name.
    public static func list() -> [ContainerState] {
        guard let dir = try? DirectoryHandle(path: stateRoot, create: false), let names = try? dir.names() else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted().compactMap { try? state($0) }
    }

    /// A container's resource use, sampled twice `interval` seconds apart for the CPU share.
    public struct Stats: Sendable {
        public var name: String
        public var status: ContainerState.Status
        /// Percent of one CPU over the interval.
        public var cpuPercent: Double
        public var memoryBytes: UInt64
        public var memoryLimit: UInt64?
        public var pids: Int
        public var oomKills: Int
    }

    /// The stats of `names` (every container when empty), over one interval.
    public static func stats(_ names: [String], interval: Double = 0.5) throws(RuntimeError) -> [Stats] {
        var states: [ContainerState] = []
        if names.isEmpty {
            states = list()
        } else {
            for name in names { states.append(try state(name)) }
        }
        let groups = states.map { Cgroup(existing: $0) }
        let before = groups.map { $0.usage() }
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        usleep(UInt32(interval * 1_000_000))
        clock_gettime(CLOCK_MONOTONIC, &end)
        let elapsed = Double(end.tv_sec - start.tv_sec) * 1e9 + Double(end.tv_nsec - start.tv_nsec)
        return zip(zip(states, groups), before).map { pair, first in
            let (s, cg) = pair
            let now = cg.usage()
            let used = Double(now.cpuNanoseconds &- min(first.cpuNanoseconds, now.cpuNanoseconds))
            return Stats(name: s.name, status: s.status, cpuPercent: elapsed > 0 ? used / elapsed * 100 : 0,
                         memoryBytes: now.memoryBytes, memoryLimit: now.memoryLimit, pids: now.pids,
                         oomKills: max(s.oomKills, cg.oomKills()))
        }
    }
}

