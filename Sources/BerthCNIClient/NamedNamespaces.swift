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
        removeResolvConf(name, network: nil)
    }

    /// `ip netns exec`'s directory of /etc files for namespace `name`.
    public static func etcDirectory(_ name: String) -> String { "/etc/netns/\(name)" }

    /// The first line of a resolv.conf Berth wrote for `network`.
    static func resolvHeader(_ network: String) -> String { "# written by berth for network \(network)" }

    /// Writes /etc/netns/NAME/resolv.conf for a namespace attached to a
    /// network with names (its server, its domain searched), so that
    /// `ip netns exec`, `berthctl exec` and lab commands resolve through it.
    /// A resolv.conf someone else wrote there is left as it is.
    public static func writeResolvConf(_ name: String, network: String, nameservers: [String], search: [String]) throws(ClientError) {
        let dir = etcDirectory(name)
        let file = "\(dir)/resolv.conf"
        if let data = try? DirectoryHandle(path: dir, create: false).read("resolv.conf"),
           !String(decoding: data, as: UTF8.self).hasPrefix("# written by berth for network ") { return }
        var text = resolvHeader(network) + "\n" + nameservers.map { "nameserver \($0)\n" }.joined()
        if !search.isEmpty { text += "search \(search.joined(separator: " "))\n" }
        do {
            try DirectoryHandle.makeDirectories(dir)
            chmod("/etc/netns", 0o755)
            chmod(dir, 0o755)
            let handle = try DirectoryHandle(path: dir, create: false)
            let scratch = try handle.writeScratch(Array(text.utf8), mode: 0o644)
            try handle.publish(scratch, as: "resolv.conf", in: handle)
        } catch {
            throw ClientError("cannot write \(file): \(error)")
        }
    }

    /// Removes the resolv.conf Berth wrote for namespace `name` (for
    /// `network`, or for any with nil), and its directory when empty.
    public static func removeResolvConf(_ name: String, network: String?) {
        let dir = etcDirectory(name)
        guard let data = try? DirectoryHandle(path: dir, create: false).read("resolv.conf") else { return }
        let text = String(decoding: data, as: UTF8.self)
        guard network.map({ text.hasPrefix(resolvHeader($0) + "\n") }) ?? text.hasPrefix("# written by berth for network ") else { return }
        unlink("\(dir)/resolv.conf")
        rmdir(dir)
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
        // As `ip netns exec`: a named namespace's /etc/netns/NAME (its resolv.conf) over /etc.
        if file.hasPrefix(directory + "/") { spawn.etcOverlay = NamedNamespaces.etcDirectory(String(file.dropFirst(directory.count + 1))) }
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
