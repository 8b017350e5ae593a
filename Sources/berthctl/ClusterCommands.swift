#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BerthSystem

/// `berthctl cluster ...`: the cluster commands live in `berth-agent` (which
/// links the etcd client); berthctl hands the arguments over, so that its own
/// start-up does not pay for an HTTP stack.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Cluster networks over etcd: init, show, nodes, leave, release (run by berth-agent, found beside berthctl or on PATH).",
        discussion: """
        berthctl cluster init --etcd URL --cluster NAME --network 10.244.0.0/16 [--block-length 24] [--ipv6-network fd00:10:244::/48] [--mode host-gw|vxlan|wireguard]
        berthctl cluster show --etcd URL --cluster NAME
        berthctl cluster nodes --etcd URL --cluster NAME [--json]
        berthctl cluster leave --etcd URL --cluster NAME [--node NODE]      (on the node)
        berthctl cluster release --etcd URL --cluster NAME NODE            (a dead node's block)
        berthctl cluster SUBCOMMAND --help shows each one's options.
        """)

    static let subcommands = ["init", "show", "nodes", "leave", "release"]

    @Argument(parsing: .allUnrecognized, help: "init, show, nodes, leave or release, and their options.")
    var arguments: [String] = []

    func validate() throws {
        guard let first = arguments.first, ClusterCommand.subcommands.contains(first) else {
            throw ValidationError("say \(ClusterCommand.subcommands.joined(separator: ", ")) (berthctl cluster --help)")
        }
    }

    func run() throws {
        try ClusterCommand.handOver(arguments)
    }

    /// Replaces this process with `berth-agent ARGUMENTS`, which names itself
    /// "berthctl cluster" in help and usage lines. Also called before
    /// berthctl parses anything, so that `--help` of a subcommand reaches
    /// berth-agent, which knows its options.
    static func handOver(_ arguments: [String], commandName: String = "berthctl cluster") throws -> Never {
        guard let agent = ClusterCommand.agentExecutable() else {
            throw CLIError("berth-agent is not installed beside berthctl or on PATH (scripts/install.sh installs it)")
        }
        let argv = CStringArray([agent] + arguments)
        var environment = processEnvironment()
        environment["BERTH_AGENT_COMMAND_NAME"] = commandName
        let envp = CStringArray(environment.map { "\($0.key)=\($0.value)" })
        execve(agent, argv.pointers, envp.pointers)
        throw CLIError("cannot run \(agent): \(SystemError.last("execve"))")
    }

    static func agentExecutable() -> String? {
        var directories: [String] = []
        if let me = try? readLink("/proc/self/exe") {
            directories.append(String(me[..<(me.lastIndex(of: "/") ?? me.startIndex)]))
        }
        directories += (processEnvironment()["PATH"] ?? defaultExecutablePath).split(separator: ":").map(String.init)
        return findExecutable("berth-agent", in: directories)
    }

    private static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { throw SystemError.last("readlink \(path)") }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
