import BerthSystem

/// A failure of a lab (its file, its hosts, networks, links and commands), for a person.
public struct LabError: ReportedError {
    public let report: Report
    public init(report: Report) { self.report = report }
}
