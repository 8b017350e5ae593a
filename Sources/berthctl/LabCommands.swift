#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BerthCNI
import BerthLab
import BerthCNIClient
import BerthRuntime
import BerthSystem
import BerthJSON
import CBerthSys

struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build many hosts on one machine from a topology file (YAML or JSON).",
        subcommands: [Up.self, Down.self, List.self, ExecOn.self, CheckLab.self, Graph.self])

    /// What a lab argument may be.
    enum LabArgument {
        /// A lab file (up).
        case file
        /// A lab file, or the name of a lab that is up (its topology as its `up` saved it).
        case fileOrLab
        /// Either, or a bare name (down and exec: enough to find what a lab made).
        case anyName
    }

    /// The lab an argument names, read once.
    static func lab(_ fileOrName: String, _ accepts: LabArgument) throws -> Lab {
        if let fd = try? OwnedDescriptor(openingForReading: fileOrName), let bytes = try? fd.readAll() {
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                return Lab(try Topology.parse(text), source: text, searchPath: cniPath)
            } catch {
                throw CLIError("\(fileOrName): \(error)")
            }
        }
        let looksLikeFile = fileOrName.contains("/") || [".yaml", ".yml", ".json"].contains { fileOrName.hasSuffix($0) }
        if accepts == .file || looksLikeFile { throw CLIError("cannot read lab file \(fileOrName)") }
        if let saved = Lab.savedTopology(fileOrName) { return Lab(saved, searchPath: cniPath) }
        if accepts == .fileOrLab {
            let up = Lab.list()
            throw CLIError("\(fileOrName) is neither a lab file nor a lab that is up" + (up.isEmpty ? "" : " (labs up: \(up.joined(separator: ", ")))"))
        }
        return Lab(Topology(name: fileOrName), searchPath: cniPath)
    }

    static var cniPath: [String] {
        cniSearchPath
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a lab's bridges, namespaces and attachments.")
        @Argument(help: "The topology file.", completion: .file(extensions: ["yaml", "yml", "json"])) var file: String
        @Flag(help: "Print what was made as JSON (networks, bridges, hosts, interfaces, addresses).") var json = false
        @Option(help: "Hosts wired at once (default: twice the CPUs; 1: one after another).") var parallel: Int?

        func validate() throws {
            if let parallel, !(1...256).contains(parallel) { throw ValidationError("--parallel must be between 1 and 256") }
        }

        func run() throws {
            let lab = try LabCommand.lab(file, .file)
            if let parallel { lab.parallelism = parallel }
            let terminal = isatty(1) == 1 && !json
            var clock = timespec()
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let start = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
            // SIGINT, SIGTERM, SIGHUP: stop at the next step and undo what this up made.
            berth_catch_stop_signals()
            do {
                try lab.up(progress: { done, total, what in
                    if terminal {
                        let line = "\r[\(done)/\(total)] \(what)"
                        print(line.padding(60), terminator: "")
                        fflush(nil)
                    }
                }, stop: { berth_stop_signal() })
            } catch {
                if terminal { print("") }
                let sig = berth_stop_signal()
                if sig != 0 {
                    guard lab.madeSomething else { throw ExitCode(128 + sig) }
                    do {
                        try lab.down()
                        writeError("berthctl: lab up \(file) interrupted by signal \(sig): removed what it had made")
                    } catch let undo {
                        writeError("berthctl: lab up \(file) interrupted by signal \(sig); removing what it made failed: \(undo) (run: berthctl lab down \(lab.topology.name))")
                    }
                    throw ExitCode(128 + sig)
                }
                throw CLIError("\(error)" + (lab.madeSomething ? " (berthctl lab down \(lab.topology.name) removes what was made)" : ""))
            }
            berth_default_stop_signals()
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let seconds = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9 - start
            if terminal { print("") }
            if json {
                print(LabCommand.describe(lab, seconds: seconds).serialized(pretty: true))
                return
            }
            print("lab \(lab.topology.name) is up: \(lab.topology.hosts.count) hosts on \(lab.topology.networks.count) networks in \(String(format1: seconds)) s")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove everything a lab made (also after a partial up).")
        @Argument(help: "The topology file, or the lab's name.", completion: .custom(LabCommand.completeLabsAndFiles)) var lab: String

        func run() throws {
            try LabCommand.lab(lab, .anyName).down()
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the labs that are up.")
        @Flag(help: "Print JSON: each lab with its hosts and networks.") var json = false
        func run() throws {
            guard json else {
                for name in Lab.list() {
                    let state = Lab.state(name)
                    print(state == "up" ? name : "\(name) (partial: an up failed, was interrupted or is under way; berthctl lab down \(name) removes it)")
                }
                return
            }
            print(JSON.array(Lab.list().map { name in
                let addresses = Lab(Topology(name: name)).addresses()
                return .object(["name": .string(name), "state": .string(Lab.state(name)),
                                "hosts": .array(addresses.keys.sorted().map(JSON.string)),
                                "networks": .array(Set(addresses.values.flatMap(\.keys)).sorted().map(JSON.string))])
            }).serialized(pretty: true))
        }
    }

    /// What `lab up --json` prints: the networks with their bridges, the hosts with their interfaces.
    static func describe(_ lab: Lab, seconds: Double) -> JSON {
        let addresses = lab.addresses()
        return .object([
            "lab": .string(lab.topology.name),
            "seconds": .number(String(format1: seconds)),
            "networks": .array(lab.topology.networks.enumerated().map { i, net in
                .object(["name": .string(net.name), "subnet": .string(net.subnet.description), "bridge": .string(lab.bridgeName(i))])
            }),
            "hosts": .array(lab.topology.hosts.map { host in
                .object(["name": .string(host.name), "namespace": .string(lab.namespace(host.name)),
                         "interfaces": .array(host.networks.enumerated().map { j, net in
                             .object(["ifname": .string("eth\(j)"), "network": .string(net),
                                      "address": addresses[host.name]?[net].map(JSON.string) ?? .null])
                         })])
            }),
        ])
    }

    struct CheckLab: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Ping every pair of hosts that should reach each other; print a matrix; fail on any miss.")
        @Argument(help: "The topology file, or the lab's name.", completion: .custom(LabCommand.completeLabsAndFiles)) var file: String
        @Option(help: "A file of pairs \"FROM TO\", one a line, that must NOT reach each other.", completion: .file()) var expect: String?
        @Option(help: "Pings at once.") var parallel: Int = 16
        @Option(help: "Echo requests per probe (ping -c).") var count: Int = 1
        @Option(help: "Seconds to wait for a reply (ping -W).") var timeout: Int = 1
        @Option(help: "Probes more before a pair that should reach counts as a miss.") var retries: Int = 2
        @Flag(help: "Print JSON instead of a matrix.") var json = false

        func validate() throws {
            guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1") }
            guard count >= 1, count <= 100 else { throw ValidationError("--count must be between 1 and 100") }
            guard timeout >= 1, timeout <= 60 else { throw ValidationError("--timeout must be between 1 and 60 seconds") }
            guard retries >= 0, retries <= 10 else { throw ValidationError("--retries must be between 0 and 10") }
        }

        func run() throws {
            let lab = try LabCommand.lab(file, .fileOrLab)
            var isolated: [(from: String, to: String)] = []
            if let expect {
                guard let fd = try? OwnedDescriptor(openingForReading: expect), let bytes = try? fd.readAll() else {
                    throw CLIError("cannot read \(expect)")
                }
                for (n, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated() {
                    let words = line.split(separator: " ", omittingEmptySubsequences: true)
                    if words.isEmpty || words[0].hasPrefix("#") { continue }
                    guard words.count == 2 else { throw CLIError("\(expect) line \(n + 1): expected \"FROM TO\"") }
                    isolated.append((String(words[0]), String(words[1])))
                }
            }
            let results = try lab.check(mustNotReach: isolated, parallel: parallel, count: count, timeout: timeout, retries: retries)
            let missed = results.filter { $0.expected && !$0.reached }.count
            let breached = results.filter { !$0.expected && $0.reached }.count
            if json {
                print(JSON.object([
                    "lab": .string(lab.topology.name), "missed": .int(missed), "unexpected": .int(breached),
                    "pairs": .array(results.map { r in
                        .object(["from": .string(r.from), "to": .string(r.to), "address": .string(r.address),
                                 "expected": .bool(r.expected), "reached": .bool(r.reached)])
                    }),
                ]).serialized(pretty: true))
            } else {
                let hosts = lab.topology.hosts.map(\.name)
                let header = "from\\to"
                let first = max(header.count, hosts.map(\.count).max() ?? 0) + 2
                let width = max(4, hosts.map(\.count).max() ?? 0) + 2
                print(header.padding(first) + hosts.map { $0.padding(width) }.joined())
                for from in hosts {
                    let cells = hosts.map { to -> String in
                        guard let r = results.first(where: { $0.from == from && $0.to == to }) else { return "-".padding(width) }
                        return (r.ok ? (r.expected ? "ok" : "no") : (r.expected ? "MISS" : "LEAK")).padding(width)
                    }
                    print(from.padding(first) + cells.joined())
                }
                print("\(results.count) pings: \(results.filter(\.ok).count) as expected, \(missed) missed, \(breached) reached where they must not")
            }
            if missed + breached > 0 { throw ExitCode(1) }
        }
    }

    struct Graph: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw a lab's topology (hosts, networks, interfaces, and addresses once up) through Graphviz.")
        @Argument(help: "The topology file, or the lab's name.", completion: .file(extensions: ["yaml", "yml", "json"])) var file: String
        @Option(name: .shortAndLong, help: "Where to write: .svg, .png or .dot (default: LAB.svg).", completion: .file()) var output: String?

        func run() throws {
            let lab = try LabCommand.lab(file, .fileOrLab)
            let path = output ?? "\(lab.topology.name).svg"
            let dot = Array(lab.dot().utf8)
            let format = path.split(separator: ".").last.map(String.init) ?? "svg"
            guard ["svg", "png", "dot"].contains(format) else { throw CLIError("--output: write .svg, .png or .dot, not .\(format)") }
            if format == "dot" {
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw CLIError("cannot write \(path): \(SystemError.last("open"))") }
                try OwnedDescriptor(adopting: fd).writeAll(dot)
            } else {
                guard let graphviz = findExecutable("dot", in: ["/usr/bin", "/usr/local/bin", "/bin"]) else {
                    throw CLIError("Graphviz is not installed (apt-get install graphviz), or write .dot")
                }
                let r = try runExecutable(graphviz, arguments: ["-T\(format)", "-o", path], environment: ["PATH": defaultExecutablePath],
                                          input: dot)
                if r.status != 0 { throw CLIError("dot failed with exit status \(r.status)") }
            }
            print(path)
        }
    }

    struct ExecOn: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command on a lab host.")
        @Argument(help: "The lab's name, or its topology file.", completion: .custom(LabCommand.completeLabsAndFiles)) var lab: String
        @Argument(help: "The host.") var host: String
        @Flag(help: "Run it in the background (a server): print its pid; lab down stops it.") var detach = false
        @Argument(parsing: .postTerminator) var command: [String] = []
        func validate() throws { if command.isEmpty { throw ValidationError("give the command to run after --") } }
        func run() throws {
            let l = try LabCommand.lab(lab, .anyName)
            if detach {
                print(try l.start(on: host, command))
                return
            }
            let before = l.oomKills(host)
            let status = try l.exec(on: host, command)
            let kills = l.oomKills(host) - before
            if kills > 0 {
                writeError("berthctl: host \(host) of lab \(l.topology.name) ran out of memory: \(kills) process(es) OOM-killed")
            }
            throw ExitCode(status)
        }
    }
}

extension LabCommand {
    /// The labs that are up, for shell completion.
    @Sendable static func completeLabs(_ arguments: [String], _ index: Int, _ prefix: String) -> [String] {
        Lab.list().filter { $0.hasPrefix(prefix) }
    }

    /// The labs that are up, and topology files (.yaml, .yml, .json) and directories under what is typed.
    @Sendable static func completeLabsAndFiles(_ arguments: [String], _ index: Int, _ prefix: String) -> [String] {
        completeLabs(arguments, index, prefix) + completeFiles(prefix, extensions: ["yaml", "yml", "json"])
    }
}

/// Shell completion of paths: the directories and the files with one of
/// `extensions` in the directory `prefix` names, that begin as it does.
func completeFiles(_ prefix: String, extensions: [String]) -> [String] {
    let slash = prefix.lastIndex(of: "/")
    let directory = slash.map { String(prefix[...$0]) } ?? ""
    let start = slash.map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
    let entries = (try? DirectoryHandle(path: directory.isEmpty ? "." : directory, create: false).names()) ?? []
    return entries.filter { $0.hasPrefix(start) && ($0.hasPrefix(".") == start.hasPrefix(".")) }.sorted().compactMap { entry in
        var st = stat()
        guard stat(directory + entry, &st) == 0 else { return nil }
        if st.st_mode & S_IFMT == S_IFDIR { return directory + entry + "/" }
        return extensions.contains(where: { entry.hasSuffix("." + $0) }) ? directory + entry : nil
    }
}

extension String {
    /// One decimal place.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}
