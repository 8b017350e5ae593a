#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBerthLaunch
import CBerthSys

/// A process to start, described once (`berth_spawn`): what it runs, in
/// which cgroups and network namespace, which descriptors it gets, and how
/// it relates to its caller. Plugins, the container's detached monitor,
/// commands in named network namespaces and in running containers all
/// start through it.
public struct Spawn {
    /// What one of the child's stdin, stdout and stderr is.
    public enum Descriptor: Sendable, Equatable {
        case inherit, null
        case fd(Int32)

        var c: Int32 {
            switch self {
            case .inherit: BERTH_FD_INHERIT
            case .null: BERTH_FD_NULL
            case .fd(let fd): fd
            }
        }
    }

    /// The executable; nil: the first argument is looked up on the PATH of `environment`.
    public var path: String?
    /// The whole argv, its first element included.
    public var arguments: [String]
    /// "NAME=VALUE" entries.
    public var environment: [String]
    public var cgroups = CgroupPlacement()
    /// A network namespace file to enter first.
    public var networkNamespace: String?
    /// A running container's PID 1, whose namespaces the process joins, run
    /// under a supervisor, confined as the container is (`enter_pid`).
    public var enterPID: pid_t = 0
    public var stdin = Descriptor.inherit, stdout = Descriptor.inherit, stderr = Descriptor.inherit
    /// A descriptor of the caller's the child gets as descriptor `at` (3 or 4).
    public var passing: (fd: Int32, at: Int32)?
    /// A session of its own.
    public var newSession = false
    public var ignoresSIGPIPE = false
    /// Killed when the calling thread dies first.
    public var diesWithCaller = false
    /// Every signal at its default action, none blocked.
    public var resetsSignals = false
    /// A failed setup or exec is `start`'s error; otherwise the child exits
    /// 125 (setup) or 127/126 with a line on stderr (exec), as a shell does.
    public var reportsExecFailure = false

    /// `ip netns exec`'s /etc/netns/NAME for a named namespace: its files over /etc's (see berth_spawn).
    public var etcOverlay: String?

    public init(path: String?, arguments: [String], environment: [String]) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
    }

    /// Starts the process; returns its pid.
    public func start() throws(SystemError) -> pid_t {
        let argv = CStringArray(arguments)
        let envp = CStringArray(environment)
        let pid = cgroups.withC { placement in
            withOptionalCString(path) { path in
                withOptionalCString(networkNamespace) { netns in
                  withOptionalCString(etcOverlay) { overlay in
                    argv.pointers.withUnsafeBufferPointer { argv in
                        envp.pointers.withUnsafeBufferPointer { envp in
                            var spec = berth_spawn(
                                path: path, argv: argv.baseAddress, envp: envp.baseAddress, cgroups: placement, netns: netns, enter_pid: enterPID,
                                stdin_fd: stdin.c, stdout_fd: stdout.c, stderr_fd: stderr.c,
                                pass_fd: passing?.fd ?? -1, pass_at: passing?.at ?? -1,
                                new_session: newSession ? 1 : 0, ignore_sigpipe: ignoresSIGPIPE ? 1 : 0,
                                die_with_caller: diesWithCaller ? 1 : 0, reset_signals: resetsSignals ? 1 : 0,
                                report_exec: reportsExecFailure ? 1 : 0, etc_overlay: overlay)
                            return berth_spawn(&spec)
                        }
                    }
                  }
                }
            }
        }
        if pid < 0 { throw SystemError.last("start \(path ?? arguments.first ?? "a process")") }
        return pid
    }
}

private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let text else { return body(nil) }
    return text.withCString { body($0) }
}

/// What a finished child process gave back.
public struct ChildOutput: Sendable {
    /// The exit status, or 128+N when killed by signal N.
    public var status: Int32
    public var stdout: [UInt8]
}

/// Runs an executable with a given environment and standard input, and
/// collects its standard output. Standard error is inherited (plugin logs)
/// unless `discardStandardError`.
///
/// The child's stdin and stdout are in-memory files: a large input can never
/// deadlock against a child that writes before reading everything, the
/// output is read once the child has exited (a daemon it leaves behind
/// holding stdout cannot make this wait), and a child never meets a broken
/// pipe. The child gets descriptors 0, 1 and 2 and no others (but `inherit`,
/// as descriptor 4). By default it is killed if the calling thread dies
/// before it ends; with `outliveCaller` it runs to its end whatever happens
/// to the caller.
public func runExecutable(_ path: String, arguments: [String] = [], environment: [String: String],
                          input: [UInt8], discardStandardError: Bool = false, mergeStandardError: Bool = false,
                          inherit: OwnedDescriptor? = nil, outliveCaller: Bool = false) throws(SystemError) -> ChildOutput {
    let stdinFD = berth_memfd("berth-stdin")
    if stdinFD < 0 { throw SystemError.last("memfd_create") }
    let stdinHandle = OwnedDescriptor(adopting: stdinFD)
    try stdinHandle.writeAll(input)
    if lseek(stdinFD, 0, SEEK_SET) < 0 { throw SystemError.last("lseek") }
    let stdoutFD = berth_memfd("berth-stdout")
    if stdoutFD < 0 { throw SystemError.last("memfd_create") }
    let stdoutHandle = OwnedDescriptor(adopting: stdoutFD)

    // Only stdio reaches the child, as with libcni: not Berth's own descriptors
    // (all close-on-exec anyway) and not any its caller let it inherit.
    var spawn = Spawn(path: path, arguments: [path] + arguments, environment: environment.map { "\($0.key)=\($0.value)" })
    spawn.stdin = .fd(stdinFD)
    spawn.stdout = .fd(stdoutFD)
    // `mergeStandardError`: the child's messages come back with its output (a daemon's start-up errors).
    spawn.stderr = mergeStandardError ? .fd(stdoutFD) : discardStandardError ? .null : .inherit
    spawn.passing = inherit.map { ($0.rawValue, 4) }
    // Without `outliveCaller` a runtime killed in the middle of an ADD leaves
    // no plugin finishing that ADD after the runtime's DEL. With it, the
    // plugin (a delegated IPAM holding the attachment's lock through
    // `inherit`) runs to its end in a session of its own, ignoring SIGPIPE:
    // it must never stop half-way because its caller was killed.
    spawn.diesWithCaller = !outliveCaller
    spawn.newSession = outliveCaller
    spawn.ignoresSIGPIPE = outliveCaller
    spawn.reportsExecFailure = true
    let pid: pid_t
    do { pid = try spawn.start() } catch { throw SystemError("run \(path)", errno: error.errno) }
    let status = waitForExit(pid)
    if lseek(stdoutFD, 0, SEEK_SET) < 0 { throw SystemError.last("lseek") }
    return ChildOutput(status: status, stdout: try stdoutHandle.readAll())
}

/// The `PATH` a process gets when it was given none (a container's
/// workload, a plugin, iptables).
public let defaultExecutablePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/// `environment` with `PATH=defaultExecutablePath` added when it has no `PATH`.
public func withDefaultPath(_ environment: [String]) -> [String] {
    environment.contains(where: { $0.hasPrefix("PATH=") }) ? environment : environment + ["PATH=\(defaultExecutablePath)"]
}

/// A NULL-terminated array of C strings, freed with it.
public final class CStringArray {
    public let pointers: [UnsafeMutablePointer<CChar>?]

    public init(_ strings: [String]) {
        pointers = strings.map { strdup($0) } + [nil]
    }

    deinit { for p in pointers { free(p) } }
}

private func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return 127 }
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG spelled out: Swift does not import the macros.
    let signal = status & 0x7F
    if signal == 0 { return (status >> 8) & 0xFF }
    return 128 + signal
}

/// Finds an executable named `name` in `directories`, in order.
/// Names with '/' are never looked up (a config must not point outside CNI_PATH).
public func findExecutable(_ name: String, in directories: [String]) -> String? {
    guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { return nil }
    for dir in directories {
        let candidate = dir.hasSuffix("/") ? dir + name : dir + "/" + name
        var st = stat()
        if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
            return candidate
        }
    }
    return nil
}

/// The cgroups a new process is put in, the way that makes it wait on
/// nothing (`berth_cgroups`): the v1 cgroup directories it joins itself
/// through their `tasks` files, and the cgroup2 directory it is created in.
public struct CgroupPlacement: Equatable, Sendable {
    public var v1: [String]
    public var cgroup2: String?

    public init(v1: [String] = [], cgroup2: String? = nil) {
        self.v1 = v1
        self.cgroup2 = cgroup2
    }

    /// Calls `body` with the C form (NULL when there is no cgroup): the
    /// `tasks` files and the cgroup2 directory open for the call (left out
    /// when it cannot be opened).
    public func withC<R>(_ body: (UnsafePointer<berth_cgroups>?) -> R) -> R {
        if v1.isEmpty && cgroup2 == nil { return body(nil) }
        let tasks = CStringArray(v1.map { "\($0)/tasks" })
        let fd = cgroup2.map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1
        defer { if fd >= 0 { close(fd) } }
        let constTasks = tasks.pointers.dropLast().map { UnsafePointer<CChar>($0) }
        return constTasks.withUnsafeBufferPointer { t in
            var c = berth_cgroups(tasks: t.baseAddress, tasks_count: Int32(t.count), cgroup2_fd: fd)
            return body(&c)
        }
    }
}
