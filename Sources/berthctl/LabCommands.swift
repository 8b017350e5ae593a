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

struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build many hosts on one machine from a topology file (YAML or JSON).",
        subcommands: [Up.self, Down.self, List.self, ExecOn.self, CheckLab.self, Graph.self])

    /// Reads a lab file, or takes a bare name (enough for down).
    static func topology(_ fileOrName: String, requireFile: Bool) throws -> Topology {
        guard let fd = try? OwnedDescriptor(openingForReading: fileOrName), let bytes = try? fd.readAll() else {
            if requireFile { throw CLIError("cannot read lab file \(fileOrName)") }
            return Topology(name: fileOrName)
        }
        do {
            return try Topology.parse(String(decoding: bytes, as: UTF8.self))
        } catch {
            throw CLIError("\(fileOrName): \(error)")
        }
    }

    static var cniPath: [String] {
        cniSearchPath
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a lab's bridges, namespaces and attachments.")
        @Argument(help: "The topology file.") var file: String
        @Flag(help: "Print what was made as JSON (networks, bridges, hosts, interfaces, addresses).") var json = false

        func run() throws {
            let lab = Lab(try LabCommand.topology(file, requireFile: true), searchPath: LabCommand.cniPath)
            let terminal = isatty(1) == 1 && !json
            var clock = timespec()
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let start = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9
            do {
                try lab.up { done, total, what in
                    if terminal {
                        let line = "\r[\(done)/\(total)] \(what)"
                        print(line.padding(60), terminator: "")
                        fflush(nil)
                    }
                }
            } catch {
                if terminal { print("") }
                throw CLIError("\(error) (berthctl lab down \(file) removes what was made)")
            }
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
        @Argument(help: "The topology file, or the lab's name.") var lab: String

        func run() throws {
            let l = Lab(try LabCommand.topology(lab, requireFile: false), searchPath: LabCommand.cniPath)
            try l.down()
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the labs that are up.")
        @Flag(help: "Print JSON: each lab with its hosts and networks.") var json = false
        func run() throws {
            guard json else {
                for name in Lab.list() { print(name) }
                return
            }
            print(JSON.array(Lab.list().map { name in
                let addresses = Lab(Topology(name: name)).addresses()
                return .object(["name": .string(name), "hosts": .array(addresses.keys.sorted().map(JSON.string)),
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
        @Argument(help: "The topology file.") var file: String
        @Option(help: "A file of pairs \"FROM TO\", one a line, that must NOT reach each other.") var expect: String?
        @Option(help: "Pings at once.") var parallel: Int = 16
        @Flag(help: "Print JSON instead of a matrix.") var json = false

        func run() throws {
            let lab = Lab(try LabCommand.topology(file, requireFile: true), searchPath: LabCommand.cniPath)
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
            let results = try lab.check(mustNotReach: isolated, parallel: parallel)
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
                let width = max(4, (hosts.map(\.count).max() ?? 0) + 1)
                print("from\\to".padding(width) + hosts.map { String($0.prefix(width - 1)).padding(width) }.joined())
                for from in hosts {
                    let cells = hosts.map { to -> String in
                        guard let r = results.first(where: { $0.from == from && $0.to == to }) else { return "·".padding(width) }
                        return (r.ok ? (r.expected ? "ok" : "no") : (r.expected ? "MISS" : "LEAK")).padding(width)
                    }
                    print(from.padding(width) + cells.joined())
                }
                print("\(results.count) pings: \(results.filter(\.ok).count) as expected, \(missed) missed, \(breached) reached where they must not")
            }
            if missed + breached > 0 { throw ExitCode(1) }
        }
    }

    struct Graph: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw a lab's topology (hosts, networks, interfaces, and addresses once up) through Graphviz.")
        @Argument(help: "The topology file.") var file: String
        @Option(name: .shortAndLong, help: "Where to write: .svg, .png or .dot (default: LAB.svg).") var output: String?

        func run() throws {
            let lab = Lab(try LabCommand.topology(file, requireFile: true), searchPath: LabCommand.cniPath)
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
        @Argument(help: "The lab's name.") var lab: String
        @Argument(help: "The host.") var host: String
        @Flag(help: "Run it in the background (a server): print its pid; lab down stops it.") var detach = false
        @Argument(parsing: .postTerminator) var command: [String] = []
        func validate() throws { if command.isEmpty { throw ValidationError("give the command to run after --") } }
        func run() throws {
            let l = Lab(Topology(name: lab))
            if detach {
                print(try l.start(on: host, command))
                return
            }
            throw ExitCode(try l.exec(on: host, command))
        }
    }
}

extension String {
    /// One decimal place.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}
