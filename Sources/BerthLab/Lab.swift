import BerthEndpoints
import BerthEnforcement
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

/// A lab on this machine: builds a topology's bridges, namespaces and
/// attachments through the `berth` plugin, runs commands on its hosts, and
/// removes everything again (also after a partial `up` or a crash: what `up`
/// makes is recorded as it goes, and names carry the lab's name).
///
///     let lab = Lab(topology)
///     try lab.up()
///     defer { try? lab.down() }
///     let (status, output) = try lab.run(on: "web", ["ping", "-c1", "10.1.0.3"])
public final class Lab {
    public let topology: Topology
    /// Where `berth` and `berth-ipam` are (CNI_PATH).
    public var searchPath: [String]

    public static let stateRoot = "/run/berth/labs"

    /// The lab file's text, when the lab was read from one: `up` keeps it,
    /// so that later commands can name the lab instead of the file.
    public let source: String?
    /// How many hosts `up` wires at once (1: one after another).
    public var parallelism = Lab.defaultParallelism

    public init(_ topology: Topology, source: String? = nil, searchPath: [String] = PluginChain.defaultSearchPath) {
        self.topology = topology
        self.source = source
        self.searchPath = searchPath
    }

    var directory: String { "\(Lab.stateRoot)/\(topology.name)" }
    var confDirectory: String { "\(directory)/net.d" }

    /// The CNI network name of lab network `name` (unique on the machine).
    public func networkName(_ name: String) -> String { "lab-\(topology.name)-\(name)" }
    /// The namespace (under /run/netns) of host `name`.
    public func namespace(_ host: String) -> String { "lab-\(topology.name)-\(host)" }
    /// The bridge of network number `index`: "bl" + a hash of the lab name + the index (at most 15 characters).
    public func bridgeName(_ index: Int) -> String {
        var hash: UInt32 = 2166136261
        for b in topology.name.utf8 { hash = (hash ^ UInt32(b)) &* 16777619 }
        return "bl" + String(hash & 0xFFFFFF, radix: 16) + "x" + String(index)
    }

    /// Whether this `Lab` made anything on the machine in its last `up`
    /// (false when it was refused before: another `up` of the lab, say).
    public private(set) var madeSomething = false

    /// The lock an `up` or `down` of the lab holds, so two never interleave.
    func lock(wait: Double) throws(LabError) -> LockFile {
        do {
            return try LockFile(name: DerivedName.fit("lab:\(topology.name)", limit: 255), timeout: wait)
        } catch let busy as LockFile.TimedOut {
            throw LabError("lab \(topology.name) is being changed by another process"
                + (busy.holders.isEmpty ? "" : " (\(busy.holders.joined(separator: ", ")))") + ": try again once it is done")
        } catch {
            throw LabError("cannot lock lab \(topology.name): \(error)")
        }
    }

    /// The lab's state as `lab ls` shows it: "up", or "partial" while an
    /// `up` is under way or after one that failed or was interrupted.
    public static func state(_ name: String) -> String {
        guard let bytes = try? OwnedDescriptor(openingForReading: "\(stateRoot)/\(name)/state").readAll() else { return "partial" }
        return String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map(String.init) ?? "partial"
    }

    private func writeState(_ name: String, _ bytes: [UInt8]) throws(LabError) {
        do {
            let dir = try DirectoryHandle(path: directory, create: false)
            let scratch = try dir.writeScratch(bytes)
            try dir.publish(scratch, as: name, in: dir)
        } catch {
            throw LabError("cannot write \(directory)/\(name): \(error)")
        }
    }

    /// The topology of a lab that is up, as its `up` saved it (nil when none is).
    public static func savedTopology(_ name: String) -> Topology? {
        guard let bytes = try? OwnedDescriptor(openingForReading: "\(stateRoot)/\(name)/topology").readAll() else { return nil }
        return try? Topology.parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Creates everything. `progress(done, total, what)` is told after each
    /// step; `stop()` is asked before each, and a non-zero answer (a signal
    /// number) ends `up` with an error, leaving what was made for `down`.
    public func up(progress: @escaping (Int, Int, String) -> Void = { _, _, _ in },
                   stop: @escaping () -> Int32 = { 0 }) throws(LabError) {
        madeSomething = false
        if geteuid() != 0 { throw LabError("lab up needs root: it creates namespaces and bridges") }
        let lock = try self.lock(wait: 0)
        defer { lock.release() }
        if access(directory, F_OK) == 0 {
            throw LabError("lab \(topology.name) is \(Lab.state(topology.name) == "up" ? "up" : "partly up") already (take it down first)")
        }
        try checkRoutes()
        if let first = topology.netemUses.first, !Lab.kernelHasNetem() {
            throw LabError("\(first): delay, jitter and loss need the kernel's netem qdisc (sch_netem), which this kernel does not have")
        }
        func checkStop() throws(LabError) {
            let sig = stop()
            if sig != 0 { throw LabError("interrupted by signal \(sig)") }
        }
        do {
            try DirectoryHandle.makeDirectories(confDirectory)
        } catch {
            throw LabError("cannot create \(confDirectory): \(error)")
        }
        madeSomething = true
        try writeState("state", Array("partial\n".utf8))
        if let source { try writeState("topology", Array(source.utf8)) }
        for (i, net) in topology.networks.enumerated() {
            let list = Topology.pluginConfig(net, bridge: bridgeName(i), networkName: networkName(net.name), dataDir: "\(directory)/ipam")
            do {
                let dir = try DirectoryHandle(path: confDirectory, create: false)
                let scratch = try dir.writeScratch(Array(list.serialized(pretty: true).utf8))
                try dir.publish(scratch, as: "\(net.name).conflist", in: dir)
            } catch {
                throw LabError("cannot write the config of network \(net.name): \(error)")
            }
        }
        let plan: [String: [String: IPAddress]]
        do { plan = try topology.addressPlan() } catch { throw LabError("\(error)") }
        let total = topology.hosts.reduce(0) { $0 + 1 + $1.networks.count }
        // Several hosts at once (the kernel work of an ADD waits on locks and
        // grace periods as much as it computes); each host's interfaces in
        // order. Addresses come from the plan, so they do not depend on that order.
        let jobs: [HostJob] = topology.hosts.map { host in
            HostJob(host: host.name, namespace: namespace(host.name), podNamespace: host.podNamespace, podLabels: host.podLabels,
                    attachments: host.networks.enumerated().map { j, net in
                let prefix = topology.networks.first { $0.name == net }!.subnet.prefixLength
                return (networkName(net), net, "eth\(j)", plan[host.name]?[net].map { "\($0)/\(prefix)" })
            })
        }
        let work = HostQueue(jobs.count, total: total, progress: progress, stop: stop)
        let workers = max(1, min(parallelism, jobs.count))
        let confDirectory = self.confDirectory, searchPath = self.searchPath
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let i = work.next() {
                let job = jobs[i]
                do {
                    try NamedNamespaces.add(job.namespace, loopbackUp: true)
                    work.step("host \(job.host)")
                    for a in job.attachments {
                        if work.stopped { return }
                        // The host's name is its name on a network with names (one that no DNS name can be stays unnamed).
                        let name = KubernetesNames.nameProblem(KubernetesNames.folded(job.host), subdomain: true) == nil ? job.host : nil
                        try Attachments.attach(network: a.network, netns: job.namespace, ifname: a.ifname, ip: a.ip,
                                               namespace: job.podNamespace, labels: job.podLabels, name: name,
                                               cniConfDirectory: confDirectory, cniPath: searchPath)
                        work.step("\(job.host) on \(a.label)")
                    }
                } catch {
                    work.fail(error as? LabError ?? LabError("\(error)"))
                }
            }
        }
        // A plugin killed by the same signal fails its ADD: the signal is the reason.
        try checkStop()
        if let error = work.error { throw error }
        try checkStop()
        try makeLinks()
        try makeRoutes()
        try applyShaping()
        try makeCgroups()
        try checkStop()
        try writeState("state", Array("up\n".utf8))
    }

    /// Starts `command` on `host` in the background (a server); `down` stops it. Returns its pid.
    public func start(on host: String, _ command: [String]) throws(LabError) -> Int32 {
        try requireHost(host)
        let pid = try LabError.passing { () throws(ClientError) in
            try NamedNamespaces.exec(namespace(host), command: command, cgroup: placement(host), detach: true)
        }
        do {
            let dir = try DirectoryHandle(path: directory, create: false)
            let fd = try dir.openFile("detached")
            lseek(fd.rawValue, 0, SEEK_END)
            try fd.writeAll(Array("\(pid)\n".utf8))
        } catch {
            kill(pid, SIGKILL)
            throw LabError("cannot record the detached process: \(error)")
        }
        return pid
    }

    /// Removes everything the lab made: namespaces, attachments, bridges,
    /// its IPAM store and configs. Finds them by record and by name, so it
    /// works after a partial `up` too. Nothing to remove is fine.
    ///
    /// Not one veth at a time (each deletion waits for an RCU grace period):
    /// the namespaces go first, and the kernel removes their interfaces, both
    /// ends of each veth, in batches; then each network's plugins drop every
    /// attachment at once (GC with none valid: addresses, rules), the
    /// records are forgotten, and the bridges go.
    public func down() throws(LabError) {
        if geteuid() != 0 { throw LabError("lab down needs root") }
        let lock = try self.lock(wait: 120)
        defer { lock.release() }
        let prefix = "lab-\(topology.name)-"
        // Every process in a host goes first, whatever started it and
        // whatever it forked (a process keeps its namespace and veths alive):
        // the recorded detached ones, everything in the hosts' cgroups, and
        // anything else whose network namespace is one of the lab's.
        if let text = try? OwnedDescriptor(openingForReading: "\(directory)/detached").readAll() {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                if let pid = pid_t(line), pid > 1 { kill(-pid, SIGKILL); kill(pid, SIGKILL) }
            }
        }
        removeCgroups(prefix: prefix)
        Lab.killProcesses(inNamespaces: NamedNamespaces.list().filter { $0.hasPrefix(prefix) }.map(NamedNamespaces.path))
        for name in NamedNamespaces.list() where name.hasPrefix(prefix) {
            try? NamedNamespaces.delete(name)
        }
        let records = Attachments.list().filter { $0.network.hasPrefix(prefix) }
        for network in Set(records.map(\.network)) {
            let ofNetwork = records.filter { $0.network == network }
            if let list = try? NetworkList.load(name: network, directory: confDirectory),
               (try? PluginChain(list: list, searchPath: searchPath).gc(valid: [])) != nil {
                for record in ofNetwork { Attachments.forget(record) }
            } else {
                // No GC (the plugins not found, say): DEL each, as a runtime would.
                for record in ofNetwork {
                    _ = try? Attachments.detach(network: record.network, netns: record.netns, ifname: record.ifname)
                }
            }
        }
        if let socket = try? RouteSocket() {
            for i in 0..<max(topology.networks.count, 64) { _ = try? socket.deleteLink(named: bridgeName(i)) }
        }
        // The pods' endpoint records, whichever plugin GC found (an older
        // one on the default path may not know them).
        let store = EndpointStore()
        for network in Set(((try? store.all()) ?? []).map(\.attachment.network)) where network.hasPrefix(prefix) {
            for gone in (try? store.removeAll(network: network, except: [])) ?? [] {
                try? PolicyEnforcement.release(gone.pod)
            }
        }
        removeTree(directory)
    }

    /// Kills every process whose network namespace is one of the files
    /// `paths` (bind-mounted namespaces), until none is left.
    static func killProcesses(inNamespaces paths: [String]) {
        var namespaces = Set<FileIdentity>()
        for path in paths {
            var st = stat()
            if stat(path, &st) == 0 { namespaces.insert(FileIdentity(st)) }
        }
        guard !namespaces.isEmpty else { return }
        for _ in 0..<100 {
            guard let proc = try? DirectoryHandle(path: "/proc", create: false), let names = try? proc.names() else { return }
            var found = 0
            for name in names {
                guard let pid = pid_t(name), pid > 1, pid != getpid() else { continue }
                var st = stat()
                guard stat("/proc/\(name)/ns/net", &st) == 0,
                      namespaces.contains(FileIdentity(st)) else { continue }
                kill(pid, SIGKILL)
                found += 1
            }
            if found == 0 { return }
            usleep(10_000)
        }
    }

    /// The lab's hosts: the topology's, or (a lab named without its file)
    /// those whose namespaces exist.
    public func hostNames() -> [String] {
        if !topology.hosts.isEmpty { return topology.hosts.map(\.name) }
        let prefix = "lab-\(topology.name)-"
        return NamedNamespaces.list().filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// Refuses a host the lab does not have, listing those it has.
    func requireHost(_ host: String) throws(LabError) {
        let hosts = hostNames()
        if hosts.contains(host) && access(NamedNamespaces.path(namespace(host)), F_OK) == 0 { return }
        if hosts.isEmpty || access(directory, F_OK) != 0 { throw LabError("lab \(topology.name) is not up") }
        throw LabError("lab \(topology.name) has no host \(host) (its hosts: \(hosts.joined(separator: ", ")))")
    }

    /// Runs `command` on `host` (in its cgroup, if it has limits) with its output going to this process's.
    public func exec(on host: String, _ command: [String]) throws(LabError) -> Int32 {
        try requireHost(host)
        return try LabError.passing { () throws(ClientError) in try NamedNamespaces.exec(namespace(host), command: command, cgroup: placement(host)) }
    }

    /// Runs `command` on `host` and returns its exit code and output (stdout and stderr).
    public func run(on host: String, _ command: [String]) throws(LabError) -> (status: Int32, output: String) {
        try requireHost(host)
        let fd = berth_memfd("berth-lab-output")
        if fd < 0 { throw LabError("cannot create an output buffer: \(SystemError.last("memfd_create"))") }
        let handle = OwnedDescriptor(adopting: fd)
        let status = try LabError.passing { () throws(ClientError) in
            try NamedNamespaces.exec(namespace(host), command: command, output: fd, cgroup: placement(host))
        }
        lseek(fd, 0, SEEK_SET)
        let bytes = (try? handle.readAll()) ?? []
        return (status, String(decoding: bytes, as: UTF8.self))
    }

    /// The labs that are up on this machine.
    public static func list() -> [String] {
        guard let dir = try? DirectoryHandle(path: stateRoot, create: false), let names = try? dir.names() else { return [] }
        return names.sorted()
    }
}

extension Lab {
    /// How many hosts `up` wires at once unless told: twice the CPUs (an ADD
    /// waits on the kernel about as long as it computes).
    public static var defaultParallelism: Int { max(2, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// What `up` makes for one host: its namespace and attachments in order.
private struct HostJob: Sendable {
    var host: String
    var namespace: String
    var podNamespace: String?
    var podLabels: [String: String]
    var attachments: [(network: String, label: String, ifname: String, ip: String?)]
}

/// The hosts `up` still has to make, shared by its workers: the next one,
/// the progress, and the first failure (after which no new host starts).
private final class HostQueue: @unchecked Sendable {
    private let lock = NSLockLike()
    private var cursor = 0
    private let count: Int, total: Int
    private var done = 0
    private(set) var error: LabError?
    private let progress: (Int, Int, String) -> Void
    private let stop: () -> Int32

    init(_ count: Int, total: Int, progress: @escaping (Int, Int, String) -> Void, stop: @escaping () -> Int32) {
        self.count = count
        self.total = total
        self.progress = progress
        self.stop = stop
    }

    var stopped: Bool { lock.withLock { error != nil } || stop() != 0 }

    func next() -> Int? {
        if stop() != 0 { return nil }
        return lock.withLock {
            guard error == nil, cursor < count else { return nil }
            cursor += 1
            return cursor - 1
        }
    }

    func step(_ what: String) {
        lock.withLock {
            done += 1
            progress(done, total, what)
        }
    }

    func fail(_ e: LabError) {
        lock.withLock { if error == nil { error = e } }
    }
}

/// Removes a directory tree (the lab's own state; no links are followed).
func removeTree(_ path: String) {
    guard let dir = try? DirectoryHandle(path: path, create: false), let names = try? dir.names() else {
        unlink(path)
        return
    }
    for name in names {
        var st = stat()
        if lstat("\(path)/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            removeTree("\(path)/\(name)")
        } else {
            unlink("\(path)/\(name)")
        }
    }
    rmdir(path)
}
