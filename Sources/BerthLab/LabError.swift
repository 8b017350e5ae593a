import BerthSystem

/// A failure of a lab (its file, its hosts, networks, links and commands),
/// for a person.
public struct LabError: ReportedError {
    public let message: String
    public let problem: FieldProblem?
    public let exitCode: Int32

    public init(message: String, problem: FieldProblem?, exitCode: Int32) {
        self.message = message
        self.problem = problem
        self.exitCode = exitCode
    }
}
