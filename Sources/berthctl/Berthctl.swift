#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BerthCNI
import BerthIPAM
import BerthCNIClient
import BerthRuntime
import BerthSystem
import BerthJSON
import BerthNet

@main
enum BerthctlMain {
    /// The container commands a runtime cycle runs (`run`, `rm`, `exec`...)
    /// are parsed on their own, without building the whole command tree:
    /// that costs milliseconds of type lookups per start (argument parsing
    /// was most of a `berthctl` start; docs/benchmarks.md). The others, help
    /// and completion go through the tree.
    static let direct: [String: ParsableCommand.Type] = [
        "run": Run.self, "rm": Remove.self, "exec": Exec.self, "ps": PS.self, "kill": Kill.self,
        "inspect": Inspect.self, "pause": Pause.self, "unpause": Unpause.self, "stats": Stats.self,
    ]

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "cluster", arguments.count > 1, ClusterCommand.subcommands.contains(arguments[1]) || arguments[1].hasPrefix("-") {
            do {
                try ClusterCommand.handOver(Array(arguments.dropFirst()))
            } catch {
                fail(error)
            }
        }
        // Help goes through the tree from the start: once a command was parsed
        // on its own, its help names it without "berthctl".
        let options = arguments.prefix { $0 != "--" }
        guard let first = arguments.first, let command = direct[first],
              !options.contains(where: { ["-h", "--help", "-help", "--experimental-dump-help"].contains($0) }) else {
            runTree(arguments)
        }
        var parsed: ParsableCommand
        do {
            parsed = try command.parseAsRoot(Array(arguments.dropFirst()))
        } catch {
            // Help and usage errors: the tree prints them with the full command names.
            runTree(arguments)
        }
        do {
            try parsed.run()
        } catch {
            fail(error)
        }
    }

    /// The whole tree parses and runs the command (help, usage errors and
    /// the commands not parsed on their own).
    static func runTree(_ arguments: [String]) -> Never {
        do {
            var command = try Berthctl.parseAsRoot(arguments)
            try command.run()
            exit(0)
        } catch {
            fail(error)
        }
    }

    /// The one place berthctl turns an error into its last line and exit
    /// status: a library's error about a field of the request is said with
    /// the flag that set it; a command that could not be executed ends with
    /// 126 or 127, as in a shell.
    static func fail(_ error: any Error) -> Never {
        guard let reported = error as? any ReportedError else { Berthctl.exit(withError: error) }
        let message = reported.problem.map(flagMessage) ?? reported.message
        if reported.exitCode != 1 {
            writeError("Error: \(message)")
            exit(reported.exitCode)
        }
        Berthctl.exit(withError: CLIError(message))
    }
}

/// berthctl's flag for each field the libraries name in their errors.
let flags = ["memory": "--memory", "cpus": "--cpus", "cpuShares": "--cpu-shares", "pids": "--pids-limit",
             "cpusetCpus": "--cpuset-cpus", "rootfs": "--rootfs", "lxcfs": "--lxcfs", "hostname": "--hostname",
             "name": "--name", "ifname": "--ifname", "ip": "--ip", "mac": "--mac", "mustNotReach": "--expect"]

/// A library's problem with a field, said with berthctl's flag for it.
func flagMessage(_ problem: FieldProblem) -> String {
    flags[problem.field].map { "\($0) \(problem.detail)" } ?? problem.description
}

struct Berthctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berthctl",
        abstract: "Inspect and drive Berth container networking.",
        version: BerthVersion.string,
        subcommands: [Run.self, Exec.self, PS.self, Stats.self, Kill.self, Pause.self, Unpause.self, Remove.self, Inspect.self,
                      NetnsCommand.self, Attach.self, Detach.self, Check.self, Status.self, GC.self, ListAttachments.self,
                      LabCommand.self, IPAMCommand.self, PolicyCommand.self, ClusterCommand.self, DNSCommand.self])
}

struct IPAMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ipam",
        abstract: "Read berth-ipam's address stores.",
        subcommands: [ListAllocations.self])
}

struct ListAllocations: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the addresses allocated in a network.",
        aliases: ["list"])

    @Argument(help: "The network's name (the \"name\" of its config).")
    var network: String

    @Option(name: .customLong("data-dir"), help: "The IPAM data directory (default: the network config's ipam.dataDir, else \(IPAMConfig.defaultDataDir)).")
    var givenDataDir: String?

    @Option(name: .customLong("cni-conf-dir"), help: "Where the network configs are (to find the network's ipam.dataDir).")
    var cniConfDirectory: String = NetworkList.defaultDirectory

    /// --data-dir, else the `ipam.dataDir` of the network's config (its first plugin that has one), else the default.
    var dataDir: String {
        if let givenDataDir { return givenDataDir }
        let list = try? NetworkList.load(name: network, directory: cniConfDirectory)
        for plugin in list?.plugins ?? [] {
            if let dir = plugin["ipam"]?["dataDir"]?.stringValue, dir.hasPrefix("/") { return dir }
        }
        return IPAMConfig.defaultDataDir
    }

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let dataDir = self.dataDir
        let allocations: [(ip: IPAddress, owner: AttachmentKey?)]
        do {
            allocations = try AllocationStore(dataDir: dataDir, network: network, create: false).allAddresses()
        } catch {
            throw CLIError(CNIError(ipamError: error).msg)
        }
        if json {
            let items: [JSON] = allocations.map { item in
                .object([
                    "address": .string(item.ip.description),
                    "containerID": .string(item.owner?.containerID ?? ""),
                    "ifname": .string(item.owner?.ifname ?? ""),
                ])
            }
            let out: JSON = .object(["network": .string(network), "dataDir": .string(dataDir), "allocations": .array(items)])
            print(out.serialized(pretty: true))
            return
        }
        let rows = [("ADDRESS", "CONTAINER", "INTERFACE")] + allocations.map {
            ($0.ip.description, $0.owner?.containerID ?? "?", $0.owner?.ifname ?? "?")
        }
        let w0 = rows.map(\.0.count).max() ?? 0, w1 = rows.map(\.1.count).max() ?? 0
        for row in rows {
            print(row.0.padding(w0) + "  " + row.1.padding(w1) + "  " + row.2)
        }
        if allocations.isEmpty { print("(no allocations in network \(network))") }
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// Where berthctl looks for CNI plugins: `CNI_PATH`, else the usual places.
var cniSearchPath: [String] {
    CNIEnvironment.splitPath(processEnvironment()["CNI_PATH"]).nonEmpty ?? PluginChain.defaultSearchPath
}

/// A failure reported as one line: "Error: <message>".
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
