import Foundation
import Testing
import BerthTestSupport

/// Flags that cross into berth-agent and berthctl's policy commands: each
/// bad value is refused before anything starts, naming the flag.
@Suite("agent and policy flags refused", .ownThreads)
struct FlagTests {
    @Test("berth-agent run refuses a bad --metrics-address, --reconcile-interval, --run-dir and --policy-log",
          arguments: [
              (["--metrics-address", "localhost"], "--metrics-address localhost"),
              (["--metrics-address", "10.0.0.1:99999"], "--metrics-address 10.0.0.1:99999"),
              (["--metrics-address", "not-an-ip:9641"], "--metrics-address not-an-ip:9641"),
              (["--reconcile-interval", "0"], "--reconcile-interval"),
              (["--reconcile-interval", "-5"], "--reconcile-interval"),
              (["--run-dir", "relative/dir"], "--run-dir relative/dir"),
              (["--policy-log", "0"], "--policy-log 0"),
          ])
    func agentFlags(flags: [String], says: String) {
        let r = shellMerged(["\(productsDirectory)/berth-agent", "run", "--etcd", "http://127.0.0.1:1", "--cluster", "c",
                             "--node", "n", "--address", "10.0.0.1"] + flags)
        #expect(r.status != 0 && r.out.contains(says), "\(flags): \(r.out)")
    }

    @Test("berthctl policy refuses a bad --log, --log with --cluster, --all with a name, and a policy not in force",
          arguments: [
              (["apply", "-f", "/dev/null", "--log", "0"], "--log 0"),
              (["apply", "-f", "/dev/null", "--log", "5", "--no-log"], "--log and --no-log"),
              (["apply", "-f", "/dev/null", "--cluster", "c", "--log", "5"], "--policy-log"),
              (["delete", "--all", "x"], "--all deletes everything"),
              (["delete"], "give -f FILE"),
          ])
    func policyFlags(args: [String], says: String) {
        let r = berthctl(["policy"] + args)
        #expect(r.status != 0 && r.err.contains(says), "\(args): \(r.err)")
    }
}
