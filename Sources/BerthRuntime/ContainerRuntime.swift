#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthSystem
import CBerthSys
import BerthJSON

/// A runtime failure, said in one line.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// What to run.
public struct ContainerSpec: Sendable {
    public var name: String
    public var command: [String]
    public var environment: [String]
    public var hostname: String?
    public var limits: ResourceLimits
    /// A small init as PID 1 (the workload is PID 2); false makes the workload PID 1.
    public var useInit: Bool
    /// CNI networks to attach, as eth0, eth1, ... (names of conflists).
    public var networks: [String]
    /// Where the conflists are (default /etc/cni/net.d).
    public var cniConfDirectory: String
    /// Where the plugins are (CNI_PATH).
    public var cniPath: [String]
    /// A root file system to pivot_root into; nil keeps the host's root.
    public var rootfs: String?
    /// Show the container's limits in /proc through lxcfs.
    public var lxcfs: Bool
    /// Send the workload's output to `output.log` in the state directory (detached runs).
    public var logOutput = false
    /// A user namespace in which the container's root is host uid and gid
    /// `userNamespaceBase` (and 65,535 more ids above it).
    public var userNamespace = false
    public static let userNamespaceBase = 100_000
    public static let userNamespaceSize = 65_536

    public static let lxcfsDirectory = "/var/lib/lxcfs"

    public init(name: String, command: [String], environment: [String] = [], hostname: String? = nil,
                limits: ResourceLimits = ResourceLimits(), useInit: Bool = true, networks: [String] = [],
                cniConfDirectory: String = NetworkList.defaultDirectory, cniPath: [String] = PluginChain.defaultSearchPath,
                rootfs: String? = nil, lxcfs: Bool = false) {
        self.rootfs = rootfs
        self.lxcfs = lxcfs
        self.name = name
        self.command = command
        self.environment = environment
        self.hostname = hostname
        self.limits = limits
        self.useInit = useInit
        self.networks = networks
        self.cniConfDirectory = cniConfDirectory
        self.cniPath = cniPath
    }
}

/// A container's recorded state (`/run/berth/containers/NAME/state.json`).
public struct ContainerState: Sendable {
    public var name: String
    public var pid: Int32
    public var status: String
    public var exitCode: Int?
    public var command: [String]
    public var hostname: String
    public var limits: ResourceLimits
    public var cgroups: [String: String]
    public var oomKills: Int
    /// The attached networks: name, interface, addresses; cleared once DEL ran.
    public var networks: [NetworkAttachment]
    public var cniConfDirectory: String
    public var cniPath: [String]

    public struct NetworkAttachment: Sendable {
        public var network: String
        public var ifname: String
        public var addresses: [String]
    }

    public func json() -> JSON {
        var limitsJSON = JSONObject()
        if let m = limits.memory { limitsJSON["memory"] = .number(String(m)) }
        if let c = limits.cpus { limitsJSON["cpus"] = .number(String(c)) }
        if let s = limits.cpuShares { limitsJSON["cpuShares"] = .int(s) }
        if let p = limits.pids { limitsJSON["pids"] = .int(p) }
        var cgroupJSON = JSONObject()
        for (k, v) in cgroups.sorted(by: { $0.key < $1.key }) { cgroupJSON[k] = .string(v) }
        var o: JSONObject = [
            "name": .string(name), "pid": .int(Int(pid)), "status": .string(status),
            "command": .array(command.map(JSON.string)), "hostname": .string(hostname),
            "limits": .object(limitsJSON), "cgroups": .object(cgroupJSON), "oomKills": .int(oomKills),
        ]
        if let exitCode { o["exitCode"] = .int(exitCode) }
        o["networks"] = .array(networks.map {
            .object(["network": .string($0.network), "ifname": .string($0.ifname), "addresses": .array($0.addresses.map(JSON.string))])
        })
        o["cniConfDirectory"] = .string(cniConfDirectory)
        o["cniPath"] = .array(cniPath.map(JSON.string))
        return .object(o)
    }

    init?(json: JSON) {
        guard let name = json["name"]?.stringValue, let pid = json["pid"]?.intValue,
              let status = json["status"]?.stringValue else { return nil }
        self.name = name
        self.pid = Int32(pid)
        self.status = status
        exitCode = json["exitCode"]?.intValue
        command = json["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
        hostname = json["hostname"]?.stringValue ?? ""
        let l = json["limits"]
        limits = ResourceLimits(memory: l?["memory"].flatMap { if case .number(let n) = $0 { return UInt64(n) }; return nil },
                                cpus: l?["cpus"].flatMap { if case .number(let n) = $0 { return Double(n) }; return nil },
                                cpuShares: l?["cpuShares"]?.intValue, pids: l?["pids"]?.intValue)
        cgroups = [:]
        for (k, v) in json["cgroups"]?.objectValue?.entries ?? [] { cgroups[k] = v.stringValue }
        oomKills = json["oomKills"]?.intValue ?? 0
        networks = (json["networks"]?.arrayValue ?? []).compactMap { n in
            guard let network = n["network"]?.stringValue, let ifname = n["ifname"]?.stringValue else { return nil }
            return NetworkAttachment(network: network, ifname: ifname,
                                     addresses: n["addresses"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        cniConfDirectory = json["cniConfDirectory"]?.stringValue ?? NetworkList.defaultDirectory
        cniPath = json["cniPath"]?.arrayValue?.compactMap(\.stringValue) ?? PluginChain.defaultSearchPath
    }

    init(spec: ContainerSpec, pid: Int32, cgroup: Cgroup) {
        name = spec.name
        self.pid = pid
        status = "running"
        exitCode = nil
        command = spec.command
        hostname = spec.hostname ?? spec.name
        limits = spec.limits
        cgroups = cgroup.directories
        oomKills = 0
        networks = []
        cniConfDirectory = spec.cniConfDirectory
        cniPath = spec.cniPath
    }
}

/// Starts, lists, signals and removes containers.
public enum ContainerRuntime {
    /// Where container state lives.
    public static let stateRoot = "/run/berth/containers"

    static func requireRoot(_ what: String) throws(RuntimeError) {
        if geteuid() != 0 { throw RuntimeError("\(what) needs root: it creates namespaces and cgroups") }
    }

    static func stateDirectory(_ name: String) -> String { "\(stateRoot)/\(name)" }

    /// Runs a container in the foreground: returns the workload's exit code
    /// (128+N when killed by signal N). Signals the caller receives are
    /// passed on to it. `started` is told once the workload runs.
    public static func run(_ spec: ContainerSpec, started: (ContainerState) -> Void = { _ in }) throws(RuntimeError) -> Int32 {
        try requireRoot("berthctl run")
        if let problem = CNIEnvironment.containerIDProblem(spec.name) {
            throw RuntimeError("container name \"\(spec.name)\" is invalid: \(problem)")
        }
        if spec.command.isEmpty { throw RuntimeError("no command to run (give it after --)") }
        if let rootfs = spec.rootfs {
            var st = stat()
            guard rootfs.hasPrefix("/"), stat(rootfs, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw RuntimeError("--rootfs \(rootfs) is not an absolute path to a directory")
            }
        }
        if spec.lxcfs && access("\(ContainerSpec.lxcfsDirectory)/proc/meminfo", R_OK) != 0 {
            throw RuntimeError("--lxcfs: lxcfs is not serving \(ContainerSpec.lxcfsDirectory) (install lxcfs and start it: lxcfs \(ContainerSpec.lxcfsDirectory))")
        }
        let dir = stateDirectory(spec.name)
        do {
            try DirectoryHandle.makeDirectories(stateRoot)
        } catch {
            throw RuntimeError("cannot create \(stateRoot): \(error)")
        }
        if mkdir(dir, 0o700) != 0 {
            if errno == EEXIST { throw RuntimeError("a container named \(spec.name) exists already (berthctl rm \(spec.name))") }
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
        let layout: CgroupLayout
        do {
            layout = try CgroupLayout.current()
        } catch {
            rmdir(dir)
            throw RuntimeError("cannot read the cgroup mounts: \(error)")
        }
        let cgroup = Cgroup(name: spec.name, layout: layout)
        // Recorded before anything is made, and again before each further
        // step: `berthctl rm` then finds whatever a killed `run` left behind
        // (cgroup, networks, pinned namespace).
        var state = ContainerState(spec: spec, pid: 0, cgroup: cgroup)
        state.status = "creating"
        saveState(state)
        do {
            try cgroup.create(limits: spec.limits)
        } catch {
            try? cgroup.remove()
            removeState(spec.name)
            throw RuntimeError("cannot set up the cgroup: \(error)")
        }

        let handle: berth_container_handle
        do {
            handle = try start(spec)
        } catch {
            try? cgroup.remove()
            removeState(spec.name)
            throw error
        }
        func abandon(_ message: String) -> RuntimeError {
            _ = berth_kill(handle.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(handle.pid, &status, 0)
            try? cgroup.remove()
            removeState(spec.name)
            return RuntimeError(message)
        }
        do {
            if spec.userNamespace {
                let map = "0 \(ContainerSpec.userNamespaceBase) \(ContainerSpec.userNamespaceSize)"
                try write(map, to: "/proc/\(handle.pid)/uid_map")
                try write(map, to: "/proc/\(handle.pid)/gid_map")
            }
            try cgroup.add(pid: handle.pid)
        } catch {
            close(handle.go_fd)
            close(handle.status_fd)
            throw abandon("cannot set up the container's user mapping or cgroup: \(error)")
        }
        state.pid = handle.pid
        state.status = "running"
        if !spec.networks.isEmpty {
            // The networks to be attached, before any plugin runs: DEL is
            // idempotent, so rm may run it for all of them.
            state.networks = spec.networks.enumerated().map { i, network in
                ContainerState.NetworkAttachment(network: network, ifname: "eth\(i)", addresses: [])
            }
        }
        saveState(state)
        if !spec.networks.isEmpty {
            do {
                state.networks = try attachNetworks(spec, pid: handle.pid)
            } catch {
                close(handle.go_fd)
                close(handle.status_fd)
                throw abandon(error.description)
            }
            saveState(state)
        }
        var go: UInt8 = 1
        _ = write(handle.go_fd, &go, 1)
        close(handle.go_fd)
        let report = (try? readAllBytes(from: handle.status_fd)) ?? []
        close(handle.status_fd)
        if !report.isEmpty {
            let text = String(decoding: report, as: UTF8.self)
            let parts = text.split(separator: ":", maxSplits: 1)
            let code = Int32(parts.first ?? "") ?? 0
            let what = parts.count > 1 ? String(parts[1]) : text
            detachNetworks(state)
            throw abandon("could not \(what) (\(spec.command[0])): \(String(cString: strerror(code)))")
        }
        started(state)

        let status = berth_wait_forwarding(handle.pid)
        let code = status < 0 ? 255 : berth_exit_code(status)
        state.status = "exited"
        state.exitCode = Int(code)
        state.oomKills = cgroup.oomKills()
        saveState(state)
        // The container has ended: its networks are detached now, as libcni's users do.
        detachNetworks(state)
        state.networks = []
        saveState(state)
        return code
    }

    private static func start(_ spec: ContainerSpec) throws(RuntimeError) -> berth_container_handle {
        let argv = CStringArray(spec.command)
        let envp = CStringArray(withDefaultPath(spec.environment))
        let hostname = strdup(spec.hostname ?? spec.name)
        let rootfs = spec.rootfs.flatMap { strdup($0) }
        defer {
            free(hostname)
            if let rootfs { free(rootfs) }
        }
        var handle = berth_container_handle()
        let rc = argv.pointers.withUnsafeBufferPointer { a in
            envp.pointers.withUnsafeBufferPointer { e in
                var cSpec = berth_container_spec()
                cSpec.argv = a.baseAddress
                cSpec.envp = e.baseAddress
                cSpec.hostname = UnsafePointer(hostname)
                cSpec.use_init = spec.useInit ? 1 : 0
                cSpec.rootfs = rootfs.map { UnsafePointer($0) }
                cSpec.lxcfs = spec.lxcfs ? 1 : 0
                cSpec.user_ns = spec.userNamespace ? 1 : 0
                return berth_container_start(&cSpec, &handle)
            }
        }
        if rc != 0 { throw RuntimeError("cannot create the container's namespaces: \(SystemError.last("clone"))") }
        return handle
    }

    // MARK: Networks

    static let netnsRoot = "/run/berth/netns"

    /// Pins the container's network namespace at /run/berth/netns/NAME (so
    /// DEL can reach it after the container ends), then runs each network's
    /// plugin chain ADD. On failure, what was attached is detached again.
    static func attachNetworks(_ spec: ContainerSpec, pid: pid_t) throws(RuntimeError) -> [ContainerState.NetworkAttachment] {
        let pinned = "\(netnsRoot)/\(spec.name)"
        do {
            try DirectoryHandle.makeDirectories(netnsRoot)
        } catch {
            throw RuntimeError("cannot create \(netnsRoot): \(error)")
        }
        let fd = open(pinned, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        if fd < 0 { throw RuntimeError("cannot create \(pinned): \(SystemError.last("open"))") }
        close(fd)
        if mount("/proc/\(pid)/ns/net", pinned, nil, UInt(MS_BIND), nil) != 0 {
            let e = SystemError.last("bind-mount the network namespace")
            unlink(pinned)
            throw RuntimeError("\(e)")
        }
        var attached: [(PluginChain, PluginChain.Attachment, ContainerState.NetworkAttachment)] = []
        do {
            for (i, network) in spec.networks.enumerated() {
                let list = try NetworkList.load(name: network, directory: spec.cniConfDirectory)
                let chain = PluginChain(list: list, searchPath: spec.cniPath)
                let attachment = PluginChain.Attachment(containerID: spec.name, netns: pinned, ifname: "eth\(i)")
                let result = try chain.add(attachment)
                let addresses = (result["ips"]?.arrayValue ?? []).compactMap { $0["address"]?.stringValue }
                    + ["ip4", "ip6"].compactMap { result[$0]?["ip"]?.stringValue }
                attached.append((chain, attachment, .init(network: network, ifname: attachment.ifname, addresses: addresses)))
            }
        } catch {
            for (chain, attachment, _) in attached.reversed() { try? chain.del(attachment) }
            unpin(pinned)
            throw error
        }
        return attached.map(\.2)
    }

    /// Runs DEL for every network of the container (in reverse), then unpins its namespace.
    static func detachNetworks(_ state: ContainerState) {
        let pinned = "\(netnsRoot)/\(state.name)"
        for n in state.networks.reversed() {
            guard let list = try? NetworkList.load(name: n.network, directory: state.cniConfDirectory) else { continue }
            let chain = PluginChain(list: list, searchPath: state.cniPath)
            try? chain.del(PluginChain.Attachment(containerID: state.name, netns: pinned, ifname: n.ifname))
        }
        unpin(pinned)
    }

    static func unpin(_ path: String) {
        umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }

    // MARK: State

    static func saveState(_ state: ContainerState) {
        let path = "\(stateDirectory(state.name))/state.json"
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        try? OwnedDescriptor(adopting: fd).writeAll(Array(state.json().serialized(pretty: true).utf8))
        rename(tmp, path)
    }

    static func removeState(_ name: String) {
        removeStateDirectory(stateDirectory(name))
    }

    static func removeStateDirectory(_ dir: String) {
        unlink("\(dir)/output.log")
        unlink("\(dir)/state.json")
        unlink("\(dir)/state.json.tmp")
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
        if state.status == "running" && berth_kill(state.pid, 0) != 0 {
            state.status = "exited"
        }
        state.oomKills = max(state.oomKills, Cgroup(existing: state).oomKills())
        return state
    }

    /// Every container with recorded state, by name.
    public static func list() -> [ContainerState] {
        guard let dir = try? DirectoryHandle(path: stateRoot, create: false), let names = try? dir.names() else { return [] }
        return names.filter { !$0.hasPrefix(".") }.sorted().compactMap { try? state($0) }
    }

    /// Sends `signal` to the container's PID 1 (the init passes it on to the workload).
    public static func kill(_ name: String, signal: Int32) throws(RuntimeError) {
        let s = try state(name)
        guard s.status == "running" else { throw RuntimeError("container \(name) is not running") }
        if berth_kill(s.pid, signal) != 0 { throw RuntimeError("cannot signal container \(name): \(SystemError.last("kill"))") }
    }

    /// Runs `command` inside a running container: in all its namespaces and
    /// in its cgroup, so it counts against the limits. Returns its exit code.
    public static func exec(_ name: String, command: [String], environment: [String] = []) throws(RuntimeError) -> Int32 {
        try requireRoot("berthctl exec")
        let s = try state(name)
        guard s.status == "running" else { throw RuntimeError("container \(name) is not running") }
        if command.isEmpty { throw RuntimeError("no command to run (give it after --)") }
        let procs = CStringArray(Set(s.cgroups.values).sorted().map { "\($0)/cgroup.procs" })
        let argv = CStringArray(command)
        let envp = CStringArray(withDefaultPath(environment))
        let constProcs = procs.pointers.dropLast().map { UnsafePointer<CChar>($0) }
        let status = constProcs.withUnsafeBufferPointer { cg in
            berth_exec_in(s.pid, cg.baseAddress, Int32(cg.count), argv.pointers, envp.pointers)
        }
        if status < 0 { throw RuntimeError("cannot enter container \(name): \(SystemError.last("setns"))") }
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
        let argv = CStringArray([executable] + arguments)
        var environment = processEnvironment()
        environment["BERTH_READY_FD"] = "3"
        let envp = CStringArray(environment.map { "\($0.key)=\($0.value)" })
        let pid = berth_spawn_detached(executable, argv.pointers, envp.pointers, fds[1])
        close(fds[1])
        defer { close(fds[0]) }
        if pid < 0 { throw RuntimeError("cannot start the container's monitor: \(SystemError.last("fork"))") }
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

    /// Stops the container if it runs, then removes its cgroup and state.
    public static func remove(_ name: String) throws(RuntimeError) {
        try requireRoot("berthctl rm")
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
        if s.status == "running" && s.pid > 0 { _ = berth_kill(s.pid, SIGKILL) }
        for pid in cgroup.pids() { _ = berth_kill(pid, SIGKILL) }
        var removed = false
        for _ in 0..<200 {
            if (try? cgroup.remove()) != nil { removed = true; break }
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

    init(name: String, directories: [String: String]) {
        self.name = name
        self.layout = CgroupLayout(unified: directories["unified"].map { _ in "" }, v1: [:])
        self.directories = directories
    }
}
