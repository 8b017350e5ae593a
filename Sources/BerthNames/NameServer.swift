#if canImport(Glibc)
import Glibc
#endif
import BerthFirewall
import BerthNet
import BerthSystem

/// A network's names on this node and the DNS server that answers them:
/// a directory `RUNDIR/dns/NETWORK` holding `hosts.d/` (one hosts file per
/// attachment, written by ADD, removed by DEL and GC), `remote.d/` (other
/// nodes' attachments, written by the cluster agent), and the server's pid
/// file and log. The server is Debian's dnsmasq: started by the first ADD
/// that records a name, left to notice changes itself (it watches both
/// directories with inotify), started again by an ADD that finds it gone
/// (with every name, since the files are the truth), stopped when the
/// network's last attachment goes. Every change holds the network's lock
/// (`dns:NETWORK`), so a DEL stopping the server never races an ADD starting it.
public struct NetworkNames {
    public let network: String
    public let directory: String
    public let config: NamesConfig
    /// The network's bridge: where containers' queries arrive.
    public let bridge: String

    public init(network: String, bridge: String, runDirectory: String, config: NamesConfig) {
        self.network = network
        self.bridge = bridge
        directory = "\(runDirectory)/dns/\(network)"
        self.config = config
    }

    public var hostsDirectory: String { "\(directory)/hosts.d" }
    public var remoteDirectory: String { "\(directory)/remote.d" }
    public var pidFile: String { "\(directory)/dnsmasq.pid" }
    public var logFile: String { "\(directory)/dnsmasq.log" }
    /// The arguments the running server was started with (a change of gateways restarts it).
    var argumentsFile: String { "\(directory)/dnsmasq.args" }

    /// Where Debian installs dnsmasq (package dnsmasq-base).
    public static let serverPaths = ["/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq"]

    func lock() throws -> LockFile { try LockFile(name: "dns:\(network)", timeout: 30) }

    /// Records `entry` (named `fileName`) and makes sure the server runs,
    /// listening on `listen` and answering the reverse zones of `subnets`.
    /// On failure the entry is removed again and nothing else changed.
    public func record(_ entry: NameEntry, fileName: String, listen: [IPAddress], subnets: [IPPrefix]) throws {
        let held = try lock()
        defer { held.release() }
        let (base, hosts) = try prepareDirectories()
        // The domain, for the cluster agent writing other nodes' names into remote.d.
        if (try? base.read("domain")).map({ String(decoding: $0, as: UTF8.self) }) != config.domain {
            let scratch = try base.writeScratch(Array(config.domain.utf8), mode: 0o644)
            try base.publish(scratch, as: "domain", in: base)
        }
        let scratch = try base.writeScratch(entry.hostsFile(domain: config.domain), mode: 0o644)
        try base.publish(scratch, as: fileName, in: hosts)
        do {
            try ensureServer(listen: listen, subnets: subnets)
        } catch {
            _ = try? hosts.remove(fileName)
            if (try? hosts.names().isEmpty) == true { stopServer() }
            throw error
        }
    }

    /// Forgets the entry `fileName`; the network's last one stops the server.
    public func forget(_ fileName: String) throws {
        guard access(directory, F_OK) == 0 else { return }
        let held = try lock()
        defer { held.release() }
        let hosts = try DirectoryHandle(path: hostsDirectory, create: true)
        try hosts.remove(fileName)
        if try hosts.names().isEmpty { stopServer() }
    }

    /// Forgets every entry whose file name `keep` refuses; stops the server when none is left.
    @discardableResult
    public func forgetAll(except keep: (String) -> Bool) throws -> [String] {
        guard access(directory, F_OK) == 0 else { return [] }
        let held = try lock()
        defer { held.release() }
        let hosts = try DirectoryHandle(path: hostsDirectory, create: true)
        var gone: [String] = []
        for name in try hosts.names() where !name.hasPrefix(".") && !keep(name) {
            try hosts.remove(name)
            gone.append(name)
        }
        if try hosts.names().isEmpty { stopServer() }
        return gone
    }

    /// Every entry on this node, and other nodes' (a cluster's), by file name.
    public func entries() throws -> (local: [String: NameEntry], remote: [String: NameEntry]) {
        func read(_ path: String) throws -> [String: NameEntry] {
            guard access(path, F_OK) == 0 else { return [:] }
            let dir = try DirectoryHandle(path: path, create: false)
            var out: [String: NameEntry] = [:]
            for name in try dir.names() where !name.hasPrefix(".") {
                if let bytes = try dir.read(name), let entry = NameEntry.parse(bytes, domain: config.domain) { out[name] = entry }
            }
            return out
        }
        return (try read(hostsDirectory), try read(remoteDirectory))
    }

    /// The directories, readable by the server after it drops root: the
    /// network's 0755 and every directory above it searchable.
    private func prepareDirectories() throws -> (DirectoryHandle, DirectoryHandle) {
        // Made (and opened up) by the network's first ADD: later ones only open them.
        if let hosts = try? DirectoryHandle(path: hostsDirectory, create: false) {
            return (try DirectoryHandle(path: directory, create: false), hosts)
        }
        try DirectoryHandle.makeDirectories(hostsDirectory)
        try DirectoryHandle.makeDirectories(remoteDirectory)
        for path in [directory, hostsDirectory, remoteDirectory] where chmod(path, 0o755) != 0 { throw SystemError.last("chmod \(path)") }
        // The directories above only searchable (o+x): what else they hold stays unlisted.
        var path = directory
        while let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            path = String(path[..<slash])
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o001 == 0, chmod(path, (st.st_mode & 0o7777) | 0o001) != 0 {
                throw SystemError.last("chmod \(path)")
            }
        }
        return (try DirectoryHandle(path: directory, create: false), try DirectoryHandle(path: hostsDirectory, create: false))
    }

    /// The server's pid when it runs (its pid file names a live dnsmasq started for this directory).
    public func serverPID() -> pid_t? {
        guard let bytes = try? DirectoryHandle(path: directory, create: false).read("dnsmasq.pid"),
              let pid = pid_t(String(decoding: bytes, as: UTF8.self).split(separator: "\n").first ?? ""), pid > 1,
              let cmdline = try? DirectoryHandle(path: "/proc/\(pid)", create: false).read("cmdline") else { return nil }
        // Not a pid reused by another process: its command line names this pid file.
        let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard arguments.contains("--pid-file=\(pidFile)") else { return nil }
        // A zombie is no server.
        if let status = try? DirectoryHandle(path: "/proc/\(pid)", create: false).read("stat"),
           String(decoding: status, as: UTF8.self).containsText(") Z ") { return nil }
        return pid
    }

    func plan(listen: [IPAddress], subnets: [IPPrefix], port: Int = 53) -> NameServerPlan {
        NameServerPlan(domain: config.domain, listen: listen, subnets: subnets,
                       hostsDirectories: [hostsDirectory, remoteDirectory], pidFile: pidFile, logFile: logFile, port: port)
    }

    /// Starts the server unless it runs for these gateways and subnets
    /// already: on port 53 of the gateways, or, when something else holds
    /// that port there (a host's DNS server on every address), on a port of
    /// its own with queries to port 53 sent to it (`NameServerRedirect`).
    func ensureServer(listen: [IPAddress], subnets: [IPPrefix]) throws {
        let want = ([bridge] + listen.map(\.description) + subnets.map(\.description)).joined(separator: " ")
        let base = try DirectoryHandle(path: directory, create: false)
        if serverPID() != nil {
            if let running = try base.read("dnsmasq.args"), String(decoding: running, as: UTF8.self).split(separator: "\n").first.map(String.init) == want { return }
            stopServer()
        }
        guard let binary = NetworkNames.serverPaths.first(where: { access($0, X_OK) == 0 }) else {
            throw NameServerError("names on network \(network) need dnsmasq, which is not installed (apt-get install dnsmasq-base)")
        }
        var said: [String] = []
        for port in [53] + NameServerPlan.fallbackPorts(network: network) {
            let arguments = plan(listen: listen, subnets: subnets, port: port).arguments
            // dnsmasq goes to the background itself once it listens: its exit status tells whether it could.
            let run = try runExecutable(binary, arguments: arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
                                        input: [], mergeStandardError: true, outliveCaller: true)
            let output = String(decoding: run.stdout.suffix(400), as: UTF8.self).split(separator: "\n").joined(separator: "; ")
            if run.status == 0 {
                do {
                    // A redirect left by a server on another port that died is removed.
                    if port == 53, let old = recordedPort(), old != 53 { try NameServerRedirect.remove(network: network) }
                    if port != 53 { try NameServerRedirect.apply(network: network, bridge: bridge, gateways: listen, port: port) }
                } catch {
                    stopServer()
                    throw NameServerError("the DNS server of network \(network) listens on port \(port), but queries to port 53 cannot be sent there: \(error)")
                }
                let scratch = try base.writeScratch(Array(([want, "port \(port)"] + arguments).joined(separator: "\n").utf8))
                try base.publish(scratch, as: "dnsmasq.args", in: base)
                return
            }
            said.append("port \(port): \(output.isEmpty ? "exit \(run.status)" : output)")
            // Only a port in use is worth another try.
            if !output.containsText("Address already in use") { break }
        }
        throw NameServerError("the DNS server of network \(network) (dnsmasq on \(listen.map(\.description).joined(separator: ", "))) did not start: \(said.joined(separator: "; "))")
    }

    /// The port the running server listens on (53 unless it was taken).
    public func serverPort() -> Int? { serverPID() == nil ? nil : recordedPort() }

    /// The port the last server started was given, as its arguments file says.
    func recordedPort() -> Int? {
        guard let bytes = try? DirectoryHandle(path: directory, create: false).read("dnsmasq.args") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("port ") {
            return Int(line.dropFirst(5))
        }
        return nil
    }

    /// Stops the server (SIGTERM, then SIGKILL after a second) and removes its pid file.
    public func stopServer() {
        if let pid = serverPID() {
            kill(pid, SIGTERM)
            var waited = 0
            while kill(pid, 0) == 0 && waited < 100 {
                // Not our child: it is gone when /proc says so (or it is a zombie of someone else's).
                if serverPID() == nil { break }
                usleep(10_000)
                waited += 1
            }
            if serverPID() != nil { kill(pid, SIGKILL) }
        }
        if let port = recordedPort(), port != 53, (try? NameServerRedirect.remove(network: network)) == nil {
            // The arguments file is what tells the next stop (a DEL or GC) or
            // start that a redirect is there to remove: kept until it is gone.
            unlink(pidFile)
            return
        }
        unlink(pidFile)
        unlink(argumentsFile)
    }

    /// Removes the network's directory once it holds no names of its own or of other nodes.
    public func removeIfEmpty() {
        guard let local = try? DirectoryHandle(path: hostsDirectory, create: false).names(), local.isEmpty,
              (try? DirectoryHandle(path: remoteDirectory, create: false).names().isEmpty) ?? true, serverPID() == nil else { return }
        rmdir(hostsDirectory)
        rmdir(remoteDirectory)
        unlink(logFile)
        unlink("\(directory)/domain")
        rmdir(directory)
    }

    /// The domain of `network`'s names on this node, once an ADD has recorded
    /// one there (nil before: no server of this node answers for it).
    public static func recordedDomain(network: String, runDirectory: String) -> String? {
        guard let bytes = try? DirectoryHandle(path: "\(runDirectory)/dns/\(network)", create: false).read("domain") else { return nil }
        let domain = String(decoding: bytes, as: UTF8.self)
        return DNSName.problem(domain, what: "domain") == nil ? domain : nil
    }

    /// Makes remote.d hold exactly `desired` (file name to contents), by
    /// difference with `written` (what an earlier call wrote; nil: look at
    /// the directory, whose other files go). Returns what it holds now.
    public func syncRemote(_ desired: [String: [UInt8]], written: [String: [UInt8]]?) throws -> [String: [UInt8]] {
        try DirectoryHandle.makeDirectories(remoteDirectory)
        for path in [directory, remoteDirectory] { chmod(path, 0o755) }
        let remote = try DirectoryHandle(path: remoteDirectory, create: false)
        var now = written ?? [:]
        if written == nil {
            for name in try remote.names() where !name.hasPrefix(".") { now[name] = try remote.read(name) ?? [] }
        }
        for name in now.keys where desired[name] == nil {
            try remote.remove(name)
            now[name] = nil
        }
        // Written beside, renamed in: dnsmasq sees each file whole.
        let base = try DirectoryHandle(path: directory, create: false)
        for (name, bytes) in desired where now[name] != bytes {
            let scratch = try base.writeScratch(bytes, mode: 0o644)
            try base.publish(scratch, as: name, in: remote)
            now[name] = bytes
        }
        return now
    }
}

public struct NameServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
