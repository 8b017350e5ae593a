import Foundation
import Testing
import BerthCNI
import BerthSystem
import BerthNet
import BerthTestSupport

extension FirewallTouchingTests {
@Suite("churn", .ownThreads)
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

extension FirewallTouchingTests {
@Suite("churn on one attachment", .ownThreads)
struct SameAttachmentChurnTests {
    /// The operations' outcomes and the observer's findings.
    final class Findings: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var problems: [String] = []
        private(set) var operations: [String: Int] = [:]
        private(set) var observations = 0
        private var results: [String: String] = [:]  // attachment -> last ADD result
        func problem(_ text: String) { lock.withLock { problems.append(text) } }
        func count(_ op: String) { lock.withLock { operations[op, default: 0] += 1 } }
        func observed() { lock.withLock { observations += 1 } }
        func setResult(_ r: String?, for id: String) { lock.withLock { results[id] = r } }
        func result(for id: String) -> String? { lock.withLock { results[id] } }
    }

    @Test("ADD, CHECK and DEL racing on the same three attachments: at any moment at most one interface and one allocation each, and they agree; a final DEL leaves nothing")
    func sameAttachmentChurn() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(version: "1.1.0", ipam: net.berthIPAM, extra: #","ipMasq":true"#)
        let attachments = (0..<3).map { i in (id: "same\(i)-\(net.id)", netns: net.makeNamespace()) }
        let findings = Findings()
        let deadline = Date().addingTimeInterval(min(ChurnTests.duration, 8))
        let done = DispatchGroup()

        // The observer takes each attachment's lock, as the plugin does, so it sees
        // only states between operations, and checks that the interface, the
        // allocation and the rule agree.
        DispatchQueue.global().async(group: done) {
            while Date() < deadline {
                for a in attachments {
                    let name = DerivedName.fit("\(net.name):\(a.id):eth0", limit: 255)
                    guard let lock = try? LockFile(name: name, timeout: 30) else {
                        findings.problem("observer: could not take the lock of \(a.id)")
                        continue
                    }
                    let inside = net.addresses(in: a.netns)
                    let records = net.storeEntries().records.filter { $0.hasPrefix(a.id + ":") }
                    let record = records.first.flatMap { try? String(contentsOfFile: "\(net.dataDir)/\(net.name)/attachments/\($0)", encoding: .utf8) }
                    let rules = berthNFTRules(containing: "berth:\(net.name):\(a.id):eth0").count
                    lock.release()
                    if inside.count > 1 || records.count > 1 { findings.problem("\(a.id): \(inside) inside, records \(records)") }
                    if inside.isEmpty != records.isEmpty || inside.isEmpty != (rules == 0) {
                        findings.problem("\(a.id): interface addresses \(inside), records \(records), \(rules) rules disagree")
                    } else if let address = inside.first, record?.contains("\"\(address)/") != true {
                        findings.problem("\(a.id): the interface has \(address), the allocation says \(record ?? "nothing")")
                    }
                    findings.observed()
                }
            }
        }
        DispatchQueue.concurrentPerform(iterations: 12) { worker in
            var rng = SystemRandomNumberGenerator()
            while Date() < deadline {
                let a = attachments[Int.random(in: 0..<attachments.count, using: &rng)]
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    let r = net.run("ADD", netns: a.netns, containerID: a.id, config: config)
                    if r.status == 0 { findings.setResult(r.stdout, for: a.id) } else if r.errorCode != 4 {
                        findings.problem("\(a.id): ADD failed: \(r.stdout)")
                    }
                    findings.count("ADD")
                case 1:
                    guard let previous = findings.result(for: a.id) else { continue }
                    let r = net.run("CHECK", netns: a.netns, containerID: a.id, config: net.config(config, prevResult: previous))
                    // CHECK of an attachment deleted meanwhile fails, with Berth's code.
                    if r.status != 0 && r.errorCode != 100 { findings.problem("\(a.id): CHECK: \(r.stdout)") }
                    findings.count("CHECK")
                default:
                    let r = net.run("DEL", netns: a.netns, containerID: a.id, config: config)
                    if r.status != 0 { findings.problem("\(a.id): DEL failed: \(r.stdout)") }
                    findings.count("DEL")
                }
            }
        }
        done.wait()
        print("same-attachment churn: \(findings.operations) by 12 workers on 3 attachments, \(findings.observations) observations, \(findings.problems.count) problems")
        #expect(findings.problems.isEmpty, "\(findings.problems.prefix(10))")
        #expect(findings.observations >= 3 && (findings.operations["ADD"] ?? 0) >= 3)

        for a in attachments {
            #expect(net.run("DEL", netns: a.netns, containerID: a.id, config: config).status == 0)
            #expect(net.addresses(in: a.netns).isEmpty)
        }
        #expect(net.portsOfBridge().isEmpty)
        #expect(net.storeEntries().records.isEmpty && net.storeEntries().addresses.isEmpty, "\(net.storeEntries())")
        let rules = ["inet", "bridge"].flatMap { shell(["nft", "list", "table", $0, "berth"]).out.split(separator: "\n") }
        #expect(!rules.contains { $0.contains("comment \"berth:\(net.name):") })
        #expect(net.lockFiles().isEmpty, "lock files left: \(net.lockFiles())")
    }
}
}
