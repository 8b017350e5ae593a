#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthSystem
import CBerthLaunch
import CBerthSys

/// What a person does with a container after `run`: signal it, run more in
/// it, start it detached, remove it.
extension ContainerRuntime {
    /// Sends `signal` to the container's PID 1 (the init passes it on to the workload).
    public static func kill(_ name: String, signal: Int32) throws(RuntimeError) {
        let s = try state(name)
        guard s.status == .running else { throw RuntimeError("container \(name) is not running") }
        if Glibc.kill(s.pid, signal) != 0 { throw RuntimeError("cannot signal container \(name): \(SystemError.last("kill"))") }
    }

    /// Runs `command` inside a running container: in all its namespaces and
    /// in its cgroup, so it counts against the limits. Returns its exit code.
    public static func exec(_ name: String, command: [String], environment: [String] = []) throws(RuntimeError) -> Int32 {
        try RuntimeError.requireRoot("running a command in a container")
        let s = try state(name)
        guard s.status == .running else { throw RuntimeError("container \(name) is not running") }
        if command.isEmpty { throw RuntimeError("no command to run") }
        var spawn = Spawn(path: nil, arguments: command, environment: withDefaultPath(environment))
        spawn.cgroups = Cgroup(existing: s).placement
        spawn.enterPID = s.pid
        spawn.resetsSignals = true
        let pid: pid_t
        do { pid = try spawn.start() } catch { throw RuntimeError("cannot enter container \(name): \(error)") }
        let status = berth_wait_forwarding(pid)
        if status < 0 { throw RuntimeError("cannot wait for the command in container \(name): \(SystemError.last("waitpid"))") }
        let code = berth_exit_code(status)
        if code == 125 { throw RuntimeError("cannot enter container \(name): joining its cgroup or namespaces failed") }
        return code
    }

    /// Starts `arguments` (a `berthctl run` without --detach) as a monitor in
    /// its own session, waits until it reports the container running (or an
    /// error), and returns. The monitor stays the container's parent.
    public static func runDetached(executable: String, arguments: [String]) throws(RuntimeError) {
        var fds: [Int32] = [0, 0]
        if berth_pipe_cloexec(&fds) != 0 { throw RuntimeError("cannot create a pipe: \(SystemError.last("pipe2"))") }
        var environment = processEnvironment()
        environment["BERTH_READY_FD"] = "3"
        var spawn = Spawn(path: executable, arguments: [executable] + arguments,
                          environment: environment.map { "\($0.key)=\($0.value)" })
        spawn.stdin = .null
        spawn.passing = (fds[1], 3)
        spawn.newSession = true
        spawn.reportsExecFailure = true
        let started = Result { () throws(SystemError) in try spawn.start() }
        close(fds[1])
        defer { close(fds[0]) }
        guard case .success(let pid) = started else {
            if case .failure(let error) = started { throw RuntimeError("cannot start the container's monitor: \(error)") }
            return
        }
        let report = String(decoding: (try? readAllBytes(from: fds[0])) ?? [], as: UTF8.self)
        if report.hasPrefix("ok") { return }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        throw RuntimeError(report.isEmpty ? "the container's monitor exited before the container started" : report)
    }

    /// In a monitor started by `runDetached`: tells the waiting caller how the start went.
    public static func reportToLauncher(_ text: String) {
        guard processEnvironment()["BERTH_READY_FD"] == "3" else { return }
        var bytes = Array(text.utf8)
        _ = write(3, &bytes, bytes.count)
        close(3)
    }

    /// Freezes every process of a running container (`pause`), or thaws a paused one.
    public static func pause(_ name: String, _ frozen: Bool) throws(RuntimeError) {
        try RuntimeError.requireRoot(frozen ? "pausing a container" : "unpausing a container")
        let s = try state(name)
        guard s.status == (frozen ? .running : .paused) else {
            throw RuntimeError("container \(name) is \(s.status.rawValue), not \(frozen ? "running" : "paused")")
        }
        do {
            try Cgroup(existing: s).freeze(frozen)
        } catch {
            throw RuntimeError("cannot \(frozen ? "pause" : "unpause") container \(name): \(error)")
        }
    }

    /// Stops the container if it runs, then removes its cgroup and state.
    public static func remove(_ name: String) throws(RuntimeError) {
        try RuntimeError.requireRoot("removing a container")
        let s: ContainerState
        do {
            s = try state(name)
        } catch {
            // A `run` killed before it recorded anything leaves only its empty directory.
            let dir = stateDirectory(name)
            guard CNIEnvironment.containerIDProblem(name) == nil, access(dir, F_OK) == 0,
                  access("\(dir)/state.json", F_OK) != 0 else { throw error }
            removeState(name)
            return
        }
        // The state moves aside first: a detached container's monitor, which
        // saves the state once more when the container dies, then finds no
        // directory to write into instead of recreating the state after rm.
        let dir = stateDirectory(name), aside = "\(stateRoot)/.removing-\(name)"
        if rename(dir, aside) != 0 { throw RuntimeError("cannot remove \(dir): \(SystemError.last("rename"))") }
        let cgroup = Cgroup(existing: s)
        // A frozen process does not die until thawed.
        if s.status == .paused { try? cgroup.freeze(false) }
        if (s.status == .running || s.status == .paused) && s.pid > 0 { _ = Glibc.kill(s.pid, SIGKILL) }
        cgroup.killAll()
        var removed = false
        for attempt in 0..<200 {
            if !cgroup.isPopulated(), (try? cgroup.remove()) != nil { removed = true; break }
            if attempt % 20 == 19 { cgroup.killAll() }  // one forked before the kill reached it
            usleep(25_000)
        }
        if !removed {
            rename(aside, dir)
            throw RuntimeError("cannot remove the cgroup of \(name): processes are still in it")
        }
        detachNetworks(s)
        removeStateDirectory(aside)
    }
}

extension Cgroup {
    /// The cgroup recorded in a container's state.
    init(existing state: ContainerState) {
        self.init(name: state.name, directories: state.cgroups)
    }
}
