#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What is wrong with one field of a request (a container's memory limit,
/// an attachment's interface name), said so that a front end can name the
/// field its own way: the library says "memory 1024 bytes is below ...",
/// berthctl "--memory 1024 bytes is below ...".
public struct FieldProblem: Equatable, Sendable, CustomStringConvertible {
    /// The field as the library's API calls it ("memory", "cpusetCpus", "ifname").
    public let field: String
    /// What follows the field's name ("must be at least 2, not 1").
    public let detail: String

    public init(_ field: String, _ detail: String) {
        self.field = field
        self.detail = detail
    }

    public var description: String { "\(field) \(detail)" }
}

/// What a `ReportedError` says.
public struct Report: Equatable, Sendable {
    /// The whole message (for an error about a field: its problem's description).
    public var message: String
    /// The field of the request the error is about, if it is about one.
    public var problem: FieldProblem?
    /// The exit status a command line should end with (126 and 127 for a
    /// command that cannot be executed, as shells use them).
    public var exitCode: Int32
}

/// The errors of the libraries that serve a person (the CNI client, the
/// runtime, labs): each module has its own type holding a `Report`, and a
/// front end converts them once. One line, for a person; nothing branches
/// on the text.
public protocol ReportedError: Error, CustomStringConvertible, Sendable {
    var report: Report { get }
    init(report: Report)
}

extension ReportedError {
    public var message: String { report.message }
    public var problem: FieldProblem? { report.problem }
    public var exitCode: Int32 { report.exitCode }
    public var description: String { message }

    public init(message: String, problem: FieldProblem?, exitCode: Int32) {
        self.init(report: Report(message: message, problem: problem, exitCode: exitCode))
    }

    public init(_ message: String, exitCode: Int32 = 1) {
        self.init(message: message, problem: nil, exitCode: exitCode)
    }

    /// An error about one field of the request.
    public init(_ problem: FieldProblem) {
        self.init(message: problem.description, problem: problem, exitCode: 1)
    }

    /// Another library's error, passed on whole (its field and exit status too).
    public init(_ other: some ReportedError) {
        self.init(report: other.report)
    }

    /// A command that could not be executed: 127 when it does not exist, 126 otherwise.
    public static func cannotExecute(_ command: String, errno code: Int32) -> Self {
        Self(message: "cannot execute \(command): \(String(cString: strerror(code)))", problem: nil,
             exitCode: code == ENOENT || code == ENOTDIR ? 127 : 126)
    }

    /// Refuses `operation` ("creating a namespace") unless the process runs as root.
    public static func requireRoot(_ operation: String) throws(Self) {
        if geteuid() != 0 { throw Self("\(operation) needs root: it creates namespaces, links and cgroups") }
    }

    /// Runs `body`, passing its error on as this type.
    public static func passing<T, Other: ReportedError>(_ body: () throws(Other) -> T) throws(Self) -> T {
        do { return try body() } catch { throw Self(error) }
    }
}
