#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BerthCNI
import BerthSystem
import CBerthSys

/// The life of a plugin process: checks its standard descriptors, reads
/// the environment and (lazily) stdin, lets `body` run the command with a
/// way to deliver text on stdout, and exits with the status `body` returns.
///
/// - A closed stdout means no result can reach the runtime: the process says
///   so on stderr and exits 1 before doing anything.
/// - A closed stdin reads as an error, except for VERSION, which needs no input
///   (nor does a person typing `CNI_COMMAND=VERSION plugin` at a terminal).
/// - Closed descriptors are filled with /dev/null, so that no file the plugin
///   opens becomes its stdin, stdout or stderr by accident.
/// - SIGPIPE is ignored: a result that cannot be written is a failed write,
///   which the plugin reports (and undoes) instead of dying silently.
public func runPluginProcess(_ body: (_ environment: [String: String], _ readInput: () throws -> [UInt8],
                                      _ deliver: @escaping (String) -> Bool) -> Int32) -> Never {
    var closed: [Int32] = []
    for fd in Int32(0)...2 where berth_descriptor_is_open(fd) == 0 {
        closed.append(fd)
        let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
        if null >= 0 && null != fd {
            dup2(null, fd)
            close(null)
        }
    }
    if closed.contains(1) {
        writeStandardError("stdout is closed: no result could reach the runtime; nothing was done")
        exit(1)
    }
    berth_ignore_sigpipe()
    let environment = processEnvironment()
    if environment["CNI_COMMAND"] == nil, CommandLine.arguments.count == 2, ["--version", "-v", "version"].contains(CommandLine.arguments[1]) {
        let program = CommandLine.arguments[0].split(separator: "/").last.map(String.init) ?? "berth"
        exit((try? writeStandardOutput(BerthVersion.about(program: program))) == nil ? 1 : 0)
    }
    let isVersion = environment["CNI_COMMAND"] == "VERSION"
    let status = body(environment, {
        if closed.contains(0) {
            if isVersion { return [] }
            throw SystemError("read stdin (it is closed)", errno: EBADF)
        }
        return try readStandardInput(skipIfTerminal: isVersion)
    }, { text in
        do {
            try writeStandardOutput(text)
            return true
        } catch {
            writeStandardError("\(error): the runtime did not get the reply")
            return false
        }
    })
    exit(status)
}
