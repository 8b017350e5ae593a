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
        abstract: "Cluster networks over etcd: init, show, nodes (run by berth-agent, found beside berthctl or on PATH).",
        discussion: """
        berthctl cluster init --etcd URL --cluster NAME --network 10.244.0.0/16 [--block-length 24] [--mode host-gw|vxlan]
        berthctl cluster show --etcd URL --cluster NAME
        berthctl cluster nodes --etcd URL --cluster NAME [--json]
        """)

    @Argument(parsing: .allUnrecognized, help: "init, show or nodes, and their options.")
    var arguments: [String] = []

    func validate() throws {
        guard let first = arguments.first, ["init", "show", "nodes"].contains(first) else {
            throw ValidationError("say init, show or nodes (berthctl cluster --help)")
        }
    }

    func run() throws {
        guard let agent = ClusterCommand.agentExecutable() else {
            throw CLIError("berth-agent is not installed beside berthctl or on PATH (scripts/install.sh installs it)")
        }
        let argv = CStringArray([agent] + arguments)
        let envp = CStringArray(processEnvironment().map { "\($0.key)=\($0.value)" })
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
