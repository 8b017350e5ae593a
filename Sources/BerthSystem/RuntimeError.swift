#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed operation of `berthctl`, the CNI client or the runtime, said in
/// one line for a person (nothing branches on it).
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The exit status a command line should end with (126 and 127 for a
    /// command that cannot be executed, as shells use them).
    public let exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        description = message
        self.exitCode = exitCode
    }

    /// A command that could not be executed: 127 when it does not exist, 126 otherwise.
    public static func cannotExecute(_ command: String, errno code: Int32) -> RuntimeError {
        RuntimeError("cannot execute \(command): \(String(cString: strerror(code)))",
                     exitCode: code == ENOENT || code == ENOTDIR ? 127 : 126)
    }
}

/// Refuses `what` unless the process runs as root.
public func requireRoot(_ what: String) throws(RuntimeError) {
    if geteuid() != 0 { throw RuntimeError("\(what) needs root: it creates namespaces, links and cgroups") }
}
