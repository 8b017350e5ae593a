import Foundation
import Testing
import BerthCNI

extension FirewallTouchingTests {
@Suite("churn")
struct ChurnTests {
    /// How long the churn runs: BERTH_CHURN_SECONDS (scripts/soak.sh), else 10 s.
    static var duration: TimeInterval {
        ProcessInfo.processInfo.environment["BERTH_CHURN_SECONDS"].flatMap(TimeInterval.init) ?? 10
    }

    /// Outcomes of the churn, shared by the workers.
    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var live: [String: String] = [:]  // address -> container, from ADD until its DEL starts
        private(set) var cycles = 0
        private(set) var retryable = 0
        private(set) var problems: [String] = []

        func added(_ address: String, by id: String) {
            lock.withLock {
                if let holder = live[address] { problems.append("\(address) given to \(id) while \(holder) holds it") }
                live[address] = id
            }
        }
        func deleting(_ address: String) { lock.withLock { live[address] = nil } }
        func problem(_ text: String) { lock.withLock { problems.append(text) } }
        func cycleDone() { lock.withLock { cycles += 1 } }
        func tryAgain() { lock.withLock { retryable += 1 } }
    }

    @Test("32 workers doing ADD/CHECK/DEL on one bridge: every operation succeeds or says 11, no address is held twice, nothing leaks")
    func churn() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(version: "1.1.0", ipam: net.berthIPAM, extra: #","ipMasq":true,"macspoofchk":true"#)
        let tally = Tally()
        let deadline = Date().addingTimeInterval(ChurnTests.duration)
        DispatchQueue.concurrentPerform(iterations: 32) { worker in
            var round = 0
            while Date() < deadline {
                let id = "w\(worker)-\(round)"
                round += 1
                let ns = net.makeNamespace()
                defer { net.deleteNamespace(ns) }
                let add = net.run("ADD", netns: ns, containerID: id, config: config)
                if add.status != 0 {
                    if add.errorCode == 11 {
                        tally.tryAgain()
                        // A failed ADD is followed by DEL, as the spec asks.
                        if net.run("DEL", netns: ns, containerID: id, config: config).status != 0 {
                            tally.problem("\(id): DEL after a refused ADD failed")
                        }
                    } else {
                        tally.problem("\(id): ADD failed: \(add.stdout)")
                    }
                    continue
                }
                guard let address = firstAddress(add.json) else {
                    tally.problem("\(id): ADD gave no address: \(add.stdout)")
                    continue
                }
                tally.added(address, by: id)
                let check = net.run("CHECK", netns: ns, containerID: id, config: net.config(config, prevResult: add.stdout))
                if check.status != 0 && check.errorCode != 11 { tally.problem("\(id): CHECK failed: \(check.stdout)") }
                tally.deleting(address)
                let del = net.run("DEL", netns: ns, containerID: id, config: config)
                if del.status != 0 && del.errorCode != 11 { tally.problem("\(id): DEL failed: \(del.stdout)") }
                tally.cycleDone()
            }
        }
        print("churn: \(tally.cycles) ADD/CHECK/DEL cycles by 32 workers in \(Int(ChurnTests.duration)) s, \(tally.retryable) ADDs refused with 11, \(tally.problems.count) problems")
        #expect(tally.problems.isEmpty, "\(tally.problems.prefix(10))")
        #expect(tally.cycles >= 32, "only \(tally.cycles) cycles completed")

        // Nothing left: no port, no rule, no allocation.
        #expect(net.portsOfBridge().isEmpty)
        let rules = ["inet", "bridge"].flatMap { shell(["nft", "list", "table", $0, "berth"]).out.split(separator: "\n") }
        #expect(!rules.contains { $0.contains("comment \"berth:\(net.name):") })
        let store = "\(net.dataDir)/\(net.name)"
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/addresses")) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/attachments")) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/scratch")) ?? []).isEmpty)
    }
}
}
