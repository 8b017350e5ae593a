import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// A `berth` process started as a runtime starts it, so that it can be killed.
struct PluginProcess {
    let process = Process()
    let output = Pipe()

    init(_ command: String, netns: String, containerID: String, config: String) throws {
        process.executableURL = URL(fileURLWithPath: "\(productsDirectory)/berth")
        process.environment = ["CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_NETNS": netns,
                               "CNI_IFNAME": "eth0", "CNI_PATH": "\(productsDirectory):\(referencePluginDirectory)",
                               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data(config.utf8))
        try input.fileHandleForWriting.close()
    }

    func kill() { _ = Foundation.kill(process.processIdentifier, SIGKILL) }

    func finish() -> PluginRun {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let killed = process.terminationReason == .uncaughtSignal
        return PluginRun(status: killed ? -1 : process.terminationStatus, stdout: String(decoding: data, as: UTF8.self))
    }
}

/// How long a whole ADD takes here now: the median of the last five timed
/// ADDs (each followed by its DEL), measured again every few trials, so that
/// the kill instants follow the machine's load (the other suites run beside
/// these; one measurement at the start was once twice the trials' ADDs, and
/// too few were killed part-way).
final class AddTiming {
    let net: TestNetwork
    let config: String
    private var samples: [TimeInterval] = []

    init(_ net: TestNetwork, config: String) throws {
        self.net = net
        self.config = config
        // The first ADD also makes the bridge and the firewall tables, which
        // the trials find made: it is run but not timed.
        try measure(timed: false)
        for _ in 0..<3 { try measure() }
    }

    func measure(timed: Bool = true) throws {
        let probe = net.makeNamespace()
        let started = Date()
        try #require(net.run("ADD", netns: probe, containerID: "probe", config: config).status == 0)
        if timed { samples.append(Date().timeIntervalSince(started)) }
        #expect(net.run("DEL", netns: probe, containerID: "probe", config: config).status == 0)
        net.deleteNamespace(probe)
    }

    var current: TimeInterval {
        let recent = samples.suffix(5).sorted()
        return recent[recent.count / 2]
    }
}

extension FirewallTouchingTests {
@Suite("crashes", .ownThreads)
struct CrashTests {
    /// What the kernel and the store hold for this test's network.
    struct Leftovers: Equatable, CustomStringConvertible {
        var ports: Int
        var rules: Int
        var records: [String]
        var addresses: Int
        var description: String { "\(ports) bridge ports, \(rules) rules, records \(records), \(addresses) address files" }

        init(_ net: TestNetwork) {
            ports = net.portsOfBridge().count
            rules = ["inet", "bridge"].flatMap { family in
                shell(["nft", "list", "table", family, "berth"]).out.split(separator: "\n")
            }.filter { $0.contains("comment \"berth:\(net.name):") }.count
            let store = "\(net.dataDir)/\(net.name)"
            records = ((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/attachments")) ?? []).sorted()
            addresses = ((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/addresses")) ?? []).count
        }
    }

    @Test("berth killed at 200 different instants of ADD: DEL and GC leave no veth, rule or allocation, and no address is held twice")
    func killedAdds() throws {
        let net = TestNetwork(), host = HostFirewallState()
        defer {
            host.restore()
            net.cleanUp()
        }
        let config = net.config(version: "1.1.0", ipam: net.berthIPAM, extra: #","ipMasq":true,"macspoofchk":true"#)

        // The kill instants spread over 0 to twice a whole ADD.
        let timing = try AddTiming(net, config: config)
        var widest: TimeInterval = 0

        let trials = 200
        var live: [(id: String, netns: String, address: String)] = []
        var killedMidway = 0, finished = 0
        for trial in 0..<trials {
            let id = "k\(trial)"
            let ns = net.makeNamespace()
            if trial % 10 == 9 { try timing.measure() }
            widest = max(widest, timing.current * 2)
            let delay = UInt32(timing.current * 2 * 1_000_000 * Double(trial) / Double(trials))
            let add = try PluginProcess("ADD", netns: ns, containerID: id, config: config)
            usleep(delay)
            add.kill()
            let outcome = add.finish()
            if outcome.status == 0 { finished += 1 } else { killedMidway += 1 }

            if trial % 10 == 0 {
                // The runtime keeps this container: a failed ADD is followed by DEL
                // (as the spec asks) and a new ADD, which completes.
                var done = outcome
                if done.status != 0 {
                    let del = net.run("DEL", netns: ns, containerID: id, config: config)
                    #expect(del.status == 0, "trial \(trial): DEL failed: \(del.stdout)")
                    done = net.run("ADD", netns: ns, containerID: id, config: config)
                }
                try #require(done.status == 0, "trial \(trial): ADD after DEL failed: \(done.stdout)")
                let address = try #require(firstAddress(done.json))
                #expect(!live.contains { $0.address == address }, "trial \(trial): \(address) is held twice")
                live.append((id, ns, address))
            } else {
                // The runtime gives up: DEL removes whatever the killed ADD made.
                let del = net.run("DEL", netns: ns, containerID: id, config: config)
                #expect(del.status == 0, "trial \(trial): DEL failed: \(del.stdout)")
                net.deleteNamespace(ns)
            }
            let left = Leftovers(net)
            #expect(left.ports == live.count && left.addresses == live.count && left.records.count == live.count
                    && left.rules == 2 * live.count,
                    "trial \(trial) (killed after \(delay) µs): \(left) with \(live.count) containers alive")
        }
        #expect(finished > 0, "no ADD finished: the kill instants are all too early")
        #expect(killedMidway > trials / 4, "only \(killedMidway) ADDs were killed part-way")
        print("crash trials: \(trials) ADDs killed at instants spread over 0-\(Int(widest * 1_000)) ms: \(killedMidway) part-way, \(finished) after finishing")

        // GC keeps the live attachments and removes nothing of theirs.
        let valid = live.map { #"{"containerID":"\#($0.id)","ifname":"eth0"}"# }.joined(separator: ",")
        var gcConfig = try JSON.parse(config).objectValue!
        gcConfig["cni.dev/valid-attachments"] = try JSON.parse("[\(valid)]")
        let gc = net.run("GC", netns: "", containerID: "", config: JSON.object(gcConfig).serialized())
        #expect(gc.status == 0, "\(gc.stdout)")
        #expect(Leftovers(net).ports == live.count)
        for container in live {
            #expect(net.ping(from: container.netns, to: "\(net.subnetBase).1"), "\(container.id) lost its network")
        }
        // Then everything goes, and nothing is left.
        for container in live {
            #expect(net.run("DEL", netns: container.netns, containerID: container.id, config: config).status == 0)
        }
        let empty = Leftovers(net)
        #expect(empty.ports == 0 && empty.rules == 0 && empty.records.isEmpty && empty.addresses == 0, "\(empty)")
    }
}
}

extension FirewallTouchingTests {
@Suite("crashes with a delegated IPAM", .ownThreads)
struct DelegatedCrashTests {
    @Test("berth with host-local killed at 150 instants of ADD, each followed by DEL: the /28 then fills completely, nothing leaks")
    func killedAddsWithHostLocal() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        // 14 usable addresses in a /28, the first is the gateway: 13 for containers.
        let config = net.config(ipam: #"{"type":"host-local","subnet":"\#(net.subnetBase).0/28","dataDir":"\#(net.dataDir)"}"#)
        let timing = try AddTiming(net, config: config)
        var widest: TimeInterval = 0

        let trials = 150
        var killedMidway = 0
        for trial in 0..<trials {
            let id = "h\(trial)"
            let ns = net.makeNamespace()
            if trial % 10 == 9 { try timing.measure() }
            widest = max(widest, timing.current * 1.5)
            let delay = UInt32(timing.current * 1.5 * 1_000_000 * Double(trial) / Double(trials))
            let add = try PluginProcess("ADD", netns: ns, containerID: id, config: config)
            usleep(delay)
            add.kill()
            if add.finish().status != 0 { killedMidway += 1 }
            // The runtime gives up: DEL (waiting for an IPAM call still running) releases everything.
            let del = net.run("DEL", netns: ns, containerID: id, config: config)
            #expect(del.status == 0, "trial \(trial): DEL failed: \(del.stdout)")
            net.deleteNamespace(ns)
            let held = net.hostLocalAddresses()
            #expect(held.isEmpty, "trial \(trial) (killed after \(delay) µs): host-local still holds \(held)")
            if !held.isEmpty { break }
        }
        #expect(killedMidway > trials / 4, "only \(killedMidway) ADDs were killed part-way")
        print("crash trials with host-local: \(trials) ADDs killed at instants over 0-\(Int(widest * 1_000)) ms, \(killedMidway) part-way")

        // Every address of the range can still be had, and then the range is full.
        var filled: [(ns: String, id: String)] = []
        for i in 0..<13 {
            let ns = net.makeNamespace()
            let r = net.run("ADD", netns: ns, containerID: "fill\(i)", config: config)
            #expect(r.status == 0, "address \(i + 1) of 13: \(r.stdout)")
            filled.append((ns, "fill\(i)"))
        }
        let extra = net.run("ADD", netns: net.makeNamespace(), containerID: "one-too-many", config: config)
        #expect(extra.status != 0, "a 14th container got an address: the range was not full")
        for f in filled { #expect(net.run("DEL", netns: f.ns, containerID: f.id, config: config).status == 0) }
        #expect(net.hostLocalAddresses().isEmpty)
        #expect(net.portsOfBridge().isEmpty)
        #expect(net.lockFiles().isEmpty, "lock files left: \(net.lockFiles())")
    }
}
}
