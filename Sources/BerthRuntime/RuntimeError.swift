import BerthSystem

/// A failure of the runtime (containers, their cgroups, state and networks),
/// for a person.
public struct RuntimeError: ReportedError {
    public let message: String
    public let problem: FieldProblem?
    public let exitCode: Int32

    public init(message: String, problem: FieldProblem?, exitCode: Int32) {
        self.message = message
        self.problem = problem
        self.exitCode = exitCode
    }
}
