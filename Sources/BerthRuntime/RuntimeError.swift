import BerthSystem

/// A failure of the runtime (containers, their cgroups, state and networks), for a person.
public struct RuntimeError: ReportedError {
    public let report: Report
    public init(report: Report) { self.report = report }
}
