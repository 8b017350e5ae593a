#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import CBerthLaunch

/// Named network namespaces in the same files as `ip netns` (/run/netns/NAME),
/// so either tool sees the other's.
public enum NamedNamespaces {
    public static let directory = "/run/netns"

    public static func path(_ name: String) -> String { "\(directory)/\(name)" }

    static func checkName(_ name: String) throws(ClientError) {
        if name.isEmpty || name.contains("/") || name == "." || name == ".." || name.utf8.count > 200 {
            throw ClientError("\"\(name)\" is not a namespace name (no '/', not . or ..)")
        }
    }

    /// Resolves NETNS as `attach` takes it: a name under /run/netns, or a path.
    public static func resolve(_ nameOrPath: String) throws(ClientError) -> String {
        let path = nameOrPath.hasPrefix("/") ? nameOrPath : Self.path(nameOrPath)
        do {
            _ = try NetworkNamespace(path: path)
        } catch {
            throw ClientError("network namespace \(nameOrPath): \(error)")
        }
        return path
    }

    /// Creates namespace `name`; with `loopbackUp` its `lo` is brought up
    /// (as Mininet and containerlab do for their hosts; `ip netns add` leaves it down).
    public static func add(_ name: String, loopbackUp: Bool = false) throws(ClientError) {
        try ClientError.requireRoot("creating a network namespace")
        try checkName(name)
        do { try DirectoryHandle.makeDirectories(directory) } catch { throw ClientError("cannot create \(directory): \(error)") }
        let file = path(name)
        let fd = open(file, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        if fd < 0 {
            if errno == EEXIST { throw ClientError("network namespace \(name) exists already") }
            throw ClientError("cannot create \(file): \(SystemError.last("open"))")
        }
        close(fd)
        if berth_netns_create(file, loopbackUp ? 1 : 0) != 0 {
            let e = SystemError.last("create the network namespace")
            unlink(file)
            throw ClientError("\(e)")
        }
    }

    public static func delete(_ name: String) throws(ClientError) {
        try ClientError.requireRoot("deleting a network namespace")
        try checkName(name)
        let file = path(name)
        if access(file, F_OK) != 0 { throw ClientError("no network namespace \(name) in \(directory)") }
        umount2(file, Int32(MNT_DETACH))
        if unlink(file) != 0 { throw ClientError("cannot remove \(file): \(SystemError.last("unlink"))") }
    }

    public static func list() -> [String] {
        guard let dir = try? DirectoryHandle(path: directory, create: false), let names = try? dir.names() else { return [] }
        return names.sorted()
    }

    /// Runs `command` inside namespace `nameOrPath`; returns its exit code.
    /// With `output`, its stdout and stderr go to that descriptor.
    /// With `cgroup` the command runs in those cgroups too; with `detach` it
    /// runs on its own and its pid is returned.
    public static func exec(_ nameOrPath: String, command: [String], output: Int32 = -1,
                            cgroup: CgroupPlacement = CgroupPlacement(),
                            detach: Bool = false) throws(ClientError) -> Int32 {
        let file = try resolve(nameOrPath)
        var spawn = Spawn(path: nil, arguments: command, environment: processEnvironment().map { "\($0.key)=\($0.value)" })
        spawn.cgroups = cgroup
        spawn.networkNamespace = file
        // The command keeps none of the caller's descriptors but stdio.
        let out: Spawn.Descriptor = output >= 0 ? .fd(output) : detach ? .null : .inherit
        spawn.stdout = out
        spawn.stderr = out
        spawn.stdin = detach ? .null : .inherit
        spawn.newSession = detach
        spawn.resetsSignals = true
        let pid: pid_t
        do { pid = try spawn.start() } catch { throw ClientError("cannot enter \(nameOrPath): \(error)") }
        if detach { return pid }
        let status = berth_wait_forwarding(pid)
        if status < 0 { throw ClientError("cannot wait for the command in \(nameOrPath): \(SystemError.last("waitpid"))") }
        // 126 and 127 are the command's (it could not be executed: the child said why on stderr).
        let code = berth_exit_code(status)
        if code == 125 { throw ClientError("cannot join the cgroup of \(nameOrPath) or enter its network namespace") }
        return code
    }
}
