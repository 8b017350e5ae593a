import BerthSystem

/// A failure of the CNI client (network lists, plugin chains, attachments,
/// named namespaces), for a person.
public struct ClientError: ReportedError {
    public let report: Report
    public init(report: Report) { self.report = report }
}
