#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthCNIClient
import BerthSystem
import CBerthLaunch

/// Starts, lists, signals and removes containers. A container's life:
/// `run` records its state, makes its cgroup, starts its first process in new
/// namespaces (paused), maps its users, puts it in the cgroup, attaches its
/// networks, lets it go and waits for it; `rm` undoes whatever a `run` made,
/// also after a killed one, from the recorded state.
public enum ContainerRuntime {
    /// Where container state lives.
    public static let stateRoot = "/run/berth/containers"

    static func stateDirectory(_ name: String) -> String { "\(stateRoot)/\(name)" }
    /// The resolv.conf of a container whose networks gave DNS servers (bind-mounted over its /etc/resolv.conf).
    static func resolvConf(_ name: String) -> String { "\(stateDirectory(name))/resolv.conf" }

    /// Runs a container in the foreground: returns the workload's exit code
    /// (128+N when killed by signal N). Signals the caller receives are
    /// passed on to it. `started` is told once the workload runs.
    public static func run(_ given: ContainerSpec, started: (ContainerState) -> Void = { _ in }) throws(RuntimeError) -> Int32 {
        try RuntimeError.requireRoot("running a container")
        try validate(given)
        var spec = given
        spec.limits = ResourceLimits.withImpliedCPUSet(spec.limits, lxcfs: spec.lxcfs,
                                                      online: (try? readText("/sys/devices/system/cpu/online"))?.trimmingWhitespace ?? "")
        let dir = try makeStateDirectory(spec)
        let cgroup: Cgroup
        do {
            cgroup = Cgroup(name: spec.name, layout: try CgroupLayout.current())
        } catch {
            rmdir(dir)
            throw RuntimeError("cannot read the cgroup mounts: \(error)")
        }
        // Recorded before anything is made, and again before each further
        // step: `berthctl rm` then finds whatever a killed `run` left behind
        // (cgroup, networks, pinned namespace).
        var state = ContainerState(spec: spec, pid: 0, cgroup: cgroup)
        state.status = .creating
        do {
            try saveState(state)
            try cgroup.create(limits: spec.limits)
        } catch {
            try? cgroup.remove()
            removeState(spec.name)
            throw RuntimeError("cannot set up the cgroup: \(error)")
        }
        let child: StartedContainer
        do {
            child = try start(spec, cgroup: cgroup)
        } catch {
            try? cgroup.remove()
            removeState(spec.name)
            throw error
        }
        do {
            try prepare(child, spec: spec, cgroup: cgroup, state: &state)
        } catch {
            child.abandon(cgroup: cgroup)
            throw error
        }
        if let failure = child.release() {
            detachNetworks(state)
            child.abandon(cgroup: cgroup)
            if failure.what == "execute the workload" { throw RuntimeError.cannotExecute(spec.command[0], errno: failure.errno) }
            throw RuntimeError("could not \(failure.what) (\(spec.command[0])): \(String(cString: strerror(failure.errno)))")
        }
        started(state)

        let status = berth_wait_forwarding(child.pid)
        let code = status < 0 ? 255 : berth_exit_code(status)
        state.status = .exited
        state.exitCode = Int(code)
        state.oomKills = cgroup.oomKills()
        // The container has ended: its networks are detached now, as libcni's users do.
        detachNetworks(state)
        state.networks = []
        do {
            try saveState(state)
        } catch {
            writeStandardError("container \(spec.name) exited with \(code), but its state could not be saved: \(error)")
        }
        return code
    }

    private static func validate(_ spec: ContainerSpec) throws(RuntimeError) {
        if let problem = ContainerSpec.nameProblem(spec.name) { throw RuntimeError(problem) }
        if let hostname = spec.hostname, let problem = ContainerSpec.hostnameProblem(hostname) { throw RuntimeError(problem) }
        if let problem = spec.limits.problem(onlineCPUs: ResourceLimits.onlineCPUs, withInit: spec.useInit) {
            throw RuntimeError(problem)
        }
        if spec.command.isEmpty { throw RuntimeError("no command to run") }
        if let rootfs = spec.rootfs {
            var st = stat()
            guard rootfs.hasPrefix("/"), stat(rootfs, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw RuntimeError(FieldProblem("rootfs", "\(rootfs) is not an absolute path to a directory"))
            }
        }
        if let list = spec.limits.cpusetCpus {
            guard let wanted = ResourceLimits.parseCPUList(list) else {
                throw RuntimeError(FieldProblem("cpusetCpus", "\(list) is not a list of CPUs like 0-2,5"))
            }
            let onlineText = (try? readText("/sys/devices/system/cpu/online"))?.trimmingWhitespace ?? ""
            if let online = ResourceLimits.parseCPUList(onlineText), !Set(wanted).isSubset(of: online) {
                throw RuntimeError(FieldProblem("cpusetCpus", "\(list): this machine's online CPUs are \(onlineText)"))
            }
        }
        if spec.lxcfs && access("\(ContainerSpec.lxcfsDirectory)/proc/meminfo", R_OK) != 0 {
            throw RuntimeError(FieldProblem("lxcfs", "is asked for, but lxcfs is not serving \(ContainerSpec.lxcfsDirectory) (install lxcfs and start it: lxcfs \(ContainerSpec.lxcfsDirectory))"))
        }
    }

    /// Creates the container's state directory (which claims its name) and,
    /// for a detached run, sends this process's output to its log there.
    private static func makeStateDirectory(_ spec: ContainerSpec) throws(RuntimeError) -> String {
        let dir = stateDirectory(spec.name)
        do {
            try DirectoryHandle.makeDirectories(stateRoot)
        } catch {
            throw RuntimeError("cannot create \(stateRoot): \(error)")
        }
        if mkdir(dir, 0o700) != 0 {
            if errno == EEXIST { throw RuntimeError("a container named \(spec.name) exists already (remove it first)") }
            throw RuntimeError("cannot create \(dir): \(SystemError.last("mkdir"))")
        }
        if spec.logOutput {
            let log = open("\(dir)/output.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if log >= 0 {
                dup2(log, 1)
                dup2(log, 2)
                close(log)
            }
        }
        return dir
    }

    /// Everything between the first process's start and its release: the
    /// user mapping, the cgroup, the networks (recorded before any plugin
    /// runs: DEL is idempotent, so rm may run it for all of them).
    private static func prepare(_ child: StartedContainer, spec: ContainerSpec, cgroup: Cgroup,
                                state: inout ContainerState) throws(RuntimeError) {
        do {
            if spec.userNamespace {
                let map = "0 \(ContainerSpec.userNamespaceBase) \(ContainerSpec.userNamespaceSize)"
                try writeFile(map, to: "/proc/\(child.pid)/uid_map")
                try writeFile(map, to: "/proc/\(child.pid)/gid_map")
            }
            // Without a user namespace the child has joined its cgroups itself.
            if spec.userNamespace { try cgroup.add(pid: child.pid) }
        } catch {
            throw RuntimeError("cannot set up the container's user mapping or cgroup: \(error)")
        }
        state.pid = child.pid
        state.status = .running
        state.networks = spec.networks.enumerated().map { i, network in
            ContainerState.NetworkAttachment(network: network, ifname: "eth\(i)", addresses: [])
        }
        try saveState(state)
        if !spec.networks.isEmpty {
            state.networks = try attachNetworks(spec, pid: child.pid)
            try saveState(state)
        }
    }

    /// Starts the container's first process in its new namespaces, paused.
    private static func start(_ spec: ContainerSpec, cgroup: Cgroup) throws(RuntimeError) -> StartedContainer {
        let argv = CStringArray(spec.command)
        let envp = CStringArray(withDefaultPath(spec.environment))
        let strings = CStringArray([spec.effectiveHostname, ContainerRuntime.resolvConf(spec.name)] + (spec.rootfs.map { [$0] } ?? []))
        var handle = berth_container_handle()
        // The child joins its v1 cgroups itself and is created in its cgroup2
        // one: neither waits for the kernel as a move of another process does.
        let rc = cgroup.placement.withC { cgroups in
            argv.pointers.withUnsafeBufferPointer { a in
                envp.pointers.withUnsafeBufferPointer { e in
                    var cSpec = berth_container_spec()
                    cSpec.argv = a.baseAddress
                    cSpec.envp = e.baseAddress
                    cSpec.hostname = UnsafePointer(strings.pointers[0])
                    cSpec.use_init = spec.useInit ? 1 : 0
                    cSpec.rootfs = spec.rootfs == nil ? nil : UnsafePointer(strings.pointers[2])
                    // Without a user namespace: the container's root may read the state directory.
                    cSpec.resolv_conf = spec.userNamespace ? nil : UnsafePointer(strings.pointers[1])
                    cSpec.lxcfs = spec.lxcfs ? 1 : 0
                    cSpec.user_ns = spec.userNamespace ? 1 : 0
                    cSpec.cgroups = cgroups?.pointee ?? berth_cgroups(tasks: nil, tasks_count: 0, cgroup2_fd: -1)
                    // init shows the workload's command in ps, in the memory of this process's own.
                    let args = CommandLine.unsafeArgv
                    if CommandLine.argc > 0, let first = args[0], let last = args[Int(CommandLine.argc) - 1] {
                        cSpec.title = first
                        cSpec.title_size = (UnsafeRawPointer(last) - UnsafeRawPointer(first)) + strlen(last) + 1
                    }
                    return berth_container_start(&cSpec, &handle)
                }
            }
        }
        if rc != 0 { throw RuntimeError("cannot create the container's namespaces: \(SystemError.last("clone"))") }
        return StartedContainer(handle)
    }
}

/// The container's first process between its start and its release, with
/// the two pipes to it, each closed by its owner.
final class StartedContainer {
    let pid: pid_t
    /// Written once to let the process go on to exec the workload.
    private let go: OwnedDescriptor
    /// Where the process reports a failure before exec (empty when exec worked).
    private let status: OwnedDescriptor

    init(_ handle: berth_container_handle) {
        pid = handle.pid
        go = OwnedDescriptor(adopting: handle.go_fd)
        status = OwnedDescriptor(adopting: handle.status_fd)
    }

    /// Lets the process go on; returns what it could not do ("ERRNO:what"
    /// from the C side), or nil once it has exec'd the workload.
    func release() -> (errno: Int32, what: String)? {
        try? go.writeAll([1])
        let report = (try? status.readAll()) ?? []
        guard !report.isEmpty else { return nil }
        let text = String(decoding: report, as: UTF8.self)
        let parts = text.split(separator: ":", maxSplits: 1)
        return (Int32(parts.first ?? "") ?? 0, parts.count > 1 ? String(parts[1]) : text)
    }

    /// Kills and reaps the process and removes its cgroup and state.
    func abandon(cgroup: Cgroup) {
        _ = kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try? cgroup.remove()
        ContainerRuntime.removeState(cgroup.name)
    }
}
