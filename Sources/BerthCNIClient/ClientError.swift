import BerthSystem

/// A failure of the CNI client (network lists, plugin chains, attachments,
/// named namespaces), for a person.
public struct ClientError: ReportedError {
    public let message: String
    public let problem: FieldProblem?
    public let exitCode: Int32

    public init(message: String, problem: FieldProblem?, exitCode: Int32) {
        self.message = message
        self.problem = problem
        self.exitCode = exitCode
    }
}
