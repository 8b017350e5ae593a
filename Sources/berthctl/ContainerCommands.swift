#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BerthCNI
import BerthCNIClient
import BerthRuntime
import BerthSystem
import BerthJSON

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run",
        abstract: "Run a command in a new container (its own pid, mount, uts, ipc, net and cgroup namespaces).",
        discussion: "Runs in the foreground and exits with the command's exit code (128+N when it was killed by signal N).")

    @Option(help: "The container's name (default: berth-<random>).")
    var name: String?

    @Option(help: "Host name inside the container (default: the name).")
    var hostname: String?

    // The limits take their value unconditionally, so that "--memory -5m"
    // reaches the range check instead of reading as an unknown flag.
    @Option(parsing: .unconditional, help: "Memory limit, like 512m or 2g (at least 4m).")
    var memory: String?

    @Option(parsing: .unconditional, help: "CPU time limit in CPUs, like 0.5 (0.01 to the machine's CPUs).")
    var cpus: String?

    @Option(name: .customLong("cpu-shares"), parsing: .unconditional, help: "Relative CPU weight (2-262144, default 1024).")
    var cpuShares: String?

    @Option(name: .customLong("pids-limit"), parsing: .unconditional, help: "Maximum number of processes (at least 2 with Berth's init).")
    var pidsLimit: String?

    @Option(name: .customLong("cpuset-cpus"), parsing: .unconditional, help: "The CPUs it may run on, like 0-2,5.")
    var cpusetCpus: String?

    @Option(name: .customLong("env"), help: "An environment variable K=V (repeatable).")
    var environment: [String] = []

    @Flag(name: .customLong("no-init"), help: "Make the command PID 1 itself instead of running it under Berth's init.")
    var noInit = false

    @Option(name: .customLong("net"), help: "Attach this CNI network (the name in its conflist); repeatable: eth0, eth1, ...")
    var networks: [String] = []

    @Option(name: .customLong("cni-conf-dir"), help: "Where the network configs are.")
    var cniConfDirectory: String = NetworkList.defaultDirectory

    @Option(help: "A root file system to pivot_root into (scripts/make-rootfs.sh builds one).")
    var rootfs: String?

    @Flag(help: "Show the container's limits in /proc (free, top) through lxcfs at /var/lib/lxcfs.")
    var lxcfs = false

    @Flag(name: .customLong("user-ns"), help: "Also a user namespace: the container's root is host uid/gid 100000.")
    var userNamespace = false

    @Flag(name: [.customShort("d"), .long], help: "Run in the background: print the name once the command runs; its output goes to the state directory's output.log.")
    var detach = false

    @Flag(name: .customLong("rm"), help: "Remove the container (state, cgroups, networks) once it exits, however it exits.")
    var remove = false

    @OptionGroup var identity: PodIdentityOptions

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run after --") }
        _ = try limits()
        if let name, let problem = ContainerSpec.nameProblem(name) { throw ValidationError(flagMessage(problem)) }
        if let hostname, let problem = ContainerSpec.hostnameProblem(hostname) { throw ValidationError(flagMessage(problem)) }
        for e in environment where !e.contains("=") { throw ValidationError("--env \(e) is not K=V") }
    }

    /// The limits as given, each read and checked: a value that is not a
    /// number or size, or a limit that could never work, is one line naming the flag.
    func limits() throws -> ResourceLimits {
        var limits = ResourceLimits()
        if let memory {
            guard let bytes = ResourceLimits.parseSize(memory) else { throw ValidationError("--memory \(memory) is not a size like 512m or 2g") }
            limits.memory = bytes
        }
        if let cpus {
            guard let value = Double(cpus), value.isFinite else { throw ValidationError("--cpus \(cpus) is not a number of CPUs like 0.5") }
            limits.cpus = value
        }
        if let cpuShares {
            guard let value = Int(cpuShares) else { throw ValidationError("--cpu-shares \(cpuShares) is not a whole number") }
            limits.cpuShares = value
        }
        if let pidsLimit {
            guard let value = Int(pidsLimit) else { throw ValidationError("--pids-limit \(pidsLimit) is not a whole number") }
            limits.pids = value
        }
        if let cpusetCpus {
            guard let cpus = ResourceLimits.parseCPUList(cpusetCpus) else {
                throw ValidationError("--cpuset-cpus \(cpusetCpus) is not a list of CPUs like 0-2,5")
            }
            limits.cpusetCpus = ResourceLimits.formatCPUList(cpus)
        }
        if let problem = limits.problem(onlineCPUs: ResourceLimits.onlineCPUs, withInit: !noInit) { throw ValidationError(flagMessage(problem)) }
        return limits
    }

    /// The options again, for the monitor a detached run starts.
    func monitorArguments(name: String) -> [String] {
        var args = ["run", "--name", name]
        if let hostname { args += ["--hostname", hostname] }
        if let memory { args += ["--memory", memory] }
        if let cpus { args += ["--cpus", cpus] }
        if let cpuShares { args += ["--cpu-shares", cpuShares] }
        if let pidsLimit { args += ["--pids-limit", pidsLimit] }
        if let cpusetCpus { args += ["--cpuset-cpus", cpusetCpus] }
        for e in environment { args += ["--env", e] }
        if noInit { args.append("--no-init") }
        for n in networks { args += ["--net", n] }
        if let namespace = identity.namespace { args += ["--namespace", namespace] }
        for label in identity.labels { args += ["--label", label] }
        args += ["--cni-conf-dir", cniConfDirectory]
        if let rootfs { args += ["--rootfs", rootfs] }
        if lxcfs { args.append("--lxcfs") }
        if userNamespace { args.append("--user-ns") }
        if remove { args.append("--rm") }
        return args + ["--"] + command
    }

    func run() throws {
        var rng = SystemRandomNumberGenerator()
        let containerName = name ?? "berth-" + String(UInt32.random(in: 0...UInt32.max, using: &rng), radix: 16)
        if detach {
            try ContainerRuntime.runDetached(executable: "/proc/self/exe", arguments: monitorArguments(name: containerName))
            print(containerName)
            return
        }
        let monitoring = processEnvironment()["BERTH_READY_FD"] == "3"
        var spec = ContainerSpec(
            name: containerName,
            command: command, environment: environment, hostname: hostname,
            limits: try limits(),
            useInit: !noInit, networks: networks, cniConfDirectory: cniConfDirectory,
            cniPath: cniSearchPath,
            rootfs: rootfs, lxcfs: lxcfs)
        spec.logOutput = monitoring
        spec.userNamespace = userNamespace
        spec.podNamespace = identity.namespace
        spec.podLabels = try identity.labelMap()
        let code: Int32
        do {
            code = try ContainerRuntime.run(spec) { _ in ContainerRuntime.reportToLauncher("ok\n") }
        } catch {
            ContainerRuntime.reportToLauncher(error.description)
            throw error
        }
        if let state = try? ContainerRuntime.state(spec.name), state.oomKills > 0 {
            writeError("berthctl: container \(spec.name) ran out of memory: \(state.oomKills) process(es) OOM-killed")
        }
        if remove {
            do {
                try ContainerRuntime.remove(spec.name)
            } catch {
                writeError("berthctl: --rm: \(error)")
            }
        }
        throw ExitCode(code)
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec",
        abstract: "Run a command inside a running container: all its namespaces and its cgroup.")

    @Argument(help: "The container.", completion: .custom(completeContainers)) var name: String

    @Option(name: .customLong("env"), help: "An environment variable K=V (repeatable).")
    var environment: [String] = []

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run after --") }
    }

    func run() throws {
        let code: Int32
        code = try ContainerRuntime.exec(name, command: command, environment: environment)
        throw ExitCode(code)
    }
}

struct PS: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps",
        abstract: "List containers.")

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let states = ContainerRuntime.list()
        if json {
            print(JSON.array(states.map { $0.json() }).serialized(pretty: true))
            return
        }
        var rows = [["NAME", "PID", "STATE", "ADDRESSES", "LIMITS", "OOM KILLS", "COMMAND"]]
        for s in states {
            var limits: [String] = []
            if let m = s.limits.memory { limits.append("mem=\(m)") }
            if let c = s.limits.cpus { limits.append("cpus=\(c)") }
            if let c = s.limits.cpuShares { limits.append("shares=\(c)") }
            if let p = s.limits.pids { limits.append("pids=\(p)") }
            let state = s.status == .exited ? "exited (\(s.exitCode.map(String.init) ?? "?"))" : s.status.rawValue
            let addresses = s.networks.flatMap(\.addresses)
            rows.append([s.name, String(s.pid), state, addresses.isEmpty ? "-" : addresses.joined(separator: ","),
                         limits.isEmpty ? "-" : limits.joined(separator: ","),
                         String(s.oomKills), s.command.joined(separator: " ")])
        }
        printTable(rows)
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kill",
        abstract: "Send a signal to a container (default TERM).")

    @Argument(help: "The container.", completion: .custom(completeContainers)) var name: String
    @Argument(help: "Signal name or number (TERM, SIGKILL, 9).") var signal: String = "TERM"

    func run() throws {
        guard let number = signalNumber(signal) else { throw CLIError("unknown signal \(signal)") }
        try ContainerRuntime.kill(name, signal: number)
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats",
        abstract: "Containers' CPU %, memory use and limit, processes and OOM kills (refreshing on a terminal).")
    @Argument(help: "Containers (default: all).", completion: .custom(completeContainers)) var names: [String] = []
    @Flag(help: "One sample and exit (the default when stdout is not a terminal).") var noStream = false
    @Flag(help: "Print JSON (one sample).") var json = false

    func run() throws {
        let stream = !noStream && !json && isatty(1) == 1
        repeat {
            let stats = try ContainerRuntime.stats(names, interval: stream ? 1 : 0.5)
            if json {
                print(JSON.array(stats.map { s in
                    .object(["name": .string(s.name), "status": .string(s.status.rawValue),
                             "cpuPercent": .number(String(format2: s.cpuPercent)),
                             "memoryBytes": .number(String(s.memoryBytes)),
                             "memoryLimit": s.memoryLimit.map { .number(String($0)) } ?? .null,
                             "pids": .int(s.pids), "oomKills": .int(s.oomKills)])
                }).serialized(pretty: true))
                return
            }
            if stream { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            var rows = [["NAME", "STATE", "CPU %", "MEMORY", "LIMIT", "PIDS", "OOM KILLS"]]
            for s in stats {
                rows.append([s.name, s.status.rawValue, String(format2: s.cpuPercent), Stats.size(s.memoryBytes),
                             s.memoryLimit.map(Stats.size) ?? "-", String(s.pids), String(s.oomKills)])
            }
            printTable(rows)
            fflush(nil)
        } while stream
    }

    static func size(_ bytes: UInt64) -> String {
        let mib = Double(bytes) / 1_048_576
        return mib >= 1024 ? "\(String(format2: mib / 1024))GiB" : "\(String(format2: mib))MiB"
    }
}

extension String {
    /// Two decimal places.
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause",
        abstract: "Freeze every process of a running container (its cgroup's freezer).")
    @Argument(help: "The containers.", completion: .custom(completeContainers)) var names: [String]
    func run() throws { for name in names { try ContainerRuntime.pause(name, true) } }
}

struct Unpause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpause",
        abstract: "Thaw a paused container.")
    @Argument(help: "The containers.", completion: .custom(completeContainers)) var names: [String]
    func run() throws { for name in names { try ContainerRuntime.pause(name, false) } }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm",
        abstract: "Stop a container if needed and remove it: processes, cgroup, state.")

    @Argument(help: "The containers.", completion: .custom(completeContainers)) var names: [String]

    func run() throws {
        for name in names {
            try ContainerRuntime.remove(name)
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect",
        abstract: "Print a container's state as JSON.")

    @Argument(help: "The container.", completion: .custom(completeContainers)) var name: String

    func run() throws {
        print(try ContainerRuntime.state(name).json().serialized(pretty: true))
    }
}


extension Array {
    var nonEmpty: Self? { isEmpty ? nil : self }
}

func signalNumber(_ text: String) -> Int32? {
    if let n = Int32(text), n > 0, n < 65 { return n }
    let names: [String: Int32] = ["HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1,
                                  "USR2": SIGUSR2, "TERM": SIGTERM, "STOP": SIGSTOP, "CONT": SIGCONT]
    var key = text.uppercased()
    if key.hasPrefix("SIG") { key.removeFirst(3) }
    return names[key]
}

func printTable(_ rows: [[String]]) {
    guard let columns = rows.first?.count else { return }
    let widths = (0..<columns).map { c in rows.map { $0[c].count }.max() ?? 0 }
    for row in rows {
        print(row.enumerated().map { c, cell in c == columns - 1 ? cell : cell.padding(widths[c]) }.joined(separator: "  "))
    }
}

func writeError(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(2, &bytes, bytes.count)
}

/// Shell completion of container names: the containers this node has now.
@Sendable func completeContainers(_ arguments: [String], _ index: Int, _ prefix: String) -> [String] {
    ContainerRuntime.list().map(\.name).filter { $0.hasPrefix(prefix) }
}
