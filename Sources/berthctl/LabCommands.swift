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
        subcommands: [Up.self, Down.self, List.self, ExecOn.self])

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

        func run() throws {
            let lab = Lab(try LabCommand.topology(file, requireFile: true), searchPath: LabCommand.cniPath)
            let terminal = isatty(1) == 1
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
        func run() throws { for name in Lab.list() { print(name) } }
    }

    struct ExecOn: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command on a lab host.")
        @Argument(help: "The lab's name.") var lab: String
        @Argument(help: "The host.") var host: String
        @Argument(parsing: .postTerminator) var command: [String] = []
        func validate() throws { if command.isEmpty { throw ValidationError("give the command to run after --") } }
        func run() throws {
            let code = try Lab(Topology(name: lab)).exec(on: host, command)
            throw ExitCode(code)
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
