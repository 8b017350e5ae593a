#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed operation of `berthctl`, the CNI client or the runtime, said in
/// one line for a person (nothing branches on it).
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Refuses `what` unless the process runs as root.
public func requireRoot(_ what: String) throws(RuntimeError) {
    if geteuid() != 0 { throw RuntimeError("\(what) needs root: it creates namespaces, links and cgroups") }
}
