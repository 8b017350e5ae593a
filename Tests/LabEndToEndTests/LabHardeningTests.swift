import Foundation
import Testing
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet
import BerthTestSupport

/// A berthctl started in the background, its output in files (not pipes).
final class BackgroundBerthctl {
    let process = Process()
    let out: String, err: String

    init(_ args: [String], cniPath: String) throws {
        let base = NSTemporaryDirectory() + "berthtest-bg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        out = base + ".out"
        err = base + ".err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        process.executableURL = URL(fileURLWithPath: berthctlPath)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["CNI_PATH"] = cniPath
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    func wait() -> (status: Int32, out: String, err: String) {
        process.waitUntilExit()
        defer { unlink(out); unlink(err) }
        return (process.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }
}

extension LabEndToEndTests {
    @Test("lab down leaves no process of the lab, whatever a detached command forked (its own session, a daemon, a loop)")
    func detachedForksGone() throws {
        let lab = try LabFixture("dl"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.226.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        let marker = "\(Int.random(in: 100_000...999_999))"
        let script = "(setsid sleep 1\(marker) &); while true; do sleep 2\(marker) & wait; done"
        let started = berthctl(["lab", "exec", "--detach", name, "a", "--", "sh", "-c", script])
        #expect(started.status == 0, "\(started.err)")
        #expect(cleanWait(2) { processes(containing: marker).count >= 2 }, "the detached command did not start: \(processes(containing: marker))")
        #expect(berthctl(["lab", "down", name]).status == 0)
        #expect(cleanWait(2) { processes(containing: marker).isEmpty }, "left running: \(processes(containing: marker))")
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))
    }

    @Test("lab hosts have lo up; exec names unknown hosts and lists the lab's; check, exec and graph take the lab's name; check's matrix lines up")
    func hostsAndNames() throws {
        let lab = try LabFixture("hn"), name = lab.name, third = lab.third, file = lab.file, dir = lab.dir
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.225.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n  - name: longhostname\n    networks: [n1]\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        let loop = berthctl(["lab", "exec", name, "a", "--", "ping", "-c", "1", "-W", "1", "127.0.0.1"])
        #expect(loop.status == 0, "\(loop.out)\(loop.err)")
        let unknown = berthctl(["lab", "exec", name, "nohost", "--", "true"])
        #expect(unknown.status != 0 && unknown.err.contains("has no host nohost") && unknown.err.contains("a, longhostname"), "\(unknown.err)")
        let check = berthctl(["lab", "check", name, "--count", "2", "--timeout", "2", "--retries", "1"])
        #expect(check.status == 0, "\(check.out)\(check.err)")
        let matrix = check.out.split(separator: "\n").dropLast().map(String.init)
        #expect(matrix.count == 3 && Set(matrix.map(\.count)).count == 1, "columns do not line up:\n\(check.out)")
        #expect(matrix.first?.hasPrefix("from\\to") == true && matrix[0].contains("longhostname"), "\(check.out)")
        #expect(berthctl(["lab", "check", name, "--count", "0"]).status != 0)
        let dot = "\(dir)/g.dot"
        #expect(berthctl(["lab", "graph", name, "-o", dot]).status == 0)
        #expect(((try? String(contentsOfFile: dot, encoding: .utf8)) ?? "").contains("longhostname"))
        let notUp = berthctl(["lab", "check", "nosuchlab\(third)"])
        #expect(notUp.status != 0 && notUp.err.contains("neither a lab file nor a lab that is up"), "\(notUp.err)")
    }

    @Test("lab exec reports an OOM kill on a host with a memory limit, as run does")
    func execReportsOOM() throws {
        let lab = try LabFixture("om"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.224.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n    memory: 32m\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        let r = berthctl(["lab", "exec", name, "a", "--", "python3", "-c", "a = bytearray(256 * 1024 * 1024); print(len(a))"])
        #expect(r.status == 137, "exit \(r.status): \(r.err)")
        #expect(r.err.contains("host a of lab \(name) ran out of memory"), "\(r.err)")
    }

    @Test("bad options and unknown keys are refused before anything exists")
    func refusedBeforeAnything() throws {
        for (i, text) in ["    options: {mtu: big}\n", "    optons: {mtu: 1400}\n"].enumerated() {
            let lab = try LabFixture("ro\(i)"), name = lab.name, file = lab.file
            defer { lab.cleanUp() }
            try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.223.\(lab.third).0/24\n\(text)hosts:\n  - name: a\n    networks: [n1]\n"
                .write(toFile: file, atomically: false, encoding: .utf8)
            let up = berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
            #expect(up.status != 0 && up.err.contains("line 5") && !up.err.contains("lab down"), "\(up.err)")
            #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
            #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))
        }
    }

    @Test("SIGINT during lab up stops it and removes what it made, exit 130; a failed up shows as partial in lab ls")
    func interruptedUp() throws {
        let lab = try LabFixture("si"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        let hosts = (0..<400).map { "  - name: h\($0)\n    networks: [n1]\n" }.joined()
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.222.\(third / 4 * 4).0/22\nhosts:\n\(hosts)"
            .write(toFile: file, atomically: false, encoding: .utf8)
        let up = try BackgroundBerthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
        let started = cleanWait(20) {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix("lab-\(name)-") }.count >= 5
        }
        kill(up.process.processIdentifier, SIGINT)
        let r = up.wait()
        try #require(started, "the lab did not start coming up")
        #expect(r.status == 130, "exit \(r.status): \(r.err)")
        #expect(r.err.contains("interrupted by signal 2") && r.err.contains("removed what it had made"), "\(r.err)")
        #expect(!NamedNamespacesSnapshot.any(prefix: "lab-\(name)-"))
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/labs/\(name)"))

        let failed = berthctl(["lab", "up", file], cniPath: "/nonexistent")
        #expect(failed.status != 0 && failed.err.contains("lab down \(name)"))
        #expect(berthctl(["lab", "ls"]).out.contains("\(name) (partial"))
        let json = try JSON.parse(berthctl(["lab", "ls", "--json"]).out).arrayValue ?? []
        #expect(json.contains { $0["name"]?.stringValue == name && $0["state"]?.stringValue == "partial" })
    }

    @Test("two lab up of one file at once: one makes the lab, the other is refused without advising lab down, and the lab works")
    func concurrentUps() throws {
        let lab = try LabFixture("cu"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        let hosts = (0..<6).map { "  - name: h\($0)\n    networks: [n1]\n" }.joined()
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.221.\(third).0/24\nhosts:\n\(hosts)"
            .write(toFile: file, atomically: false, encoding: .utf8)
        for round in 0..<3 {
            let a = try BackgroundBerthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
            let b = try BackgroundBerthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir)
            let ra = a.wait(), rb = b.wait()
            #expect([ra.status, rb.status].filter { $0 == 0 }.count == 1, "round \(round): \(ra.status) \(rb.status): \(ra.err) \(rb.err)")
            let loser = ra.status == 0 ? rb : ra
            #expect(!loser.err.contains("lab down") && (loser.err.contains("another process") || loser.err.contains("up already")), "\(loser.err)")
            #expect(berthctl(["lab", "exec", name, "h0", "--", "ping", "-c", "1", "-W", "2", "10.221.\(third).1"]).status == 0)
            #expect(berthctl(["lab", "down", file]).status == 0)
        }
    }
}

extension LabEndToEndTests {
    @Test("a lab host's namespace and labels reach the plugin: its pod is recorded as such, and lab down forgets it")
    func hostIdentity() throws {
        let lab = try LabFixture("pi"), name = lab.name, third = lab.third, file = lab.file
        defer { lab.cleanUp() }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.224.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n    namespace: shop\n    labels: {app: web}\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        let record = "/run/berth/endpoints/lab-\(name)-n1:netns-lab-\(name)-a:eth0"
        let text = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
        #expect(text.contains(#""namespace":"shop""#) && text.contains(#""app":"web""#), "\(text)")
        #expect(berthctl(["lab", "down", name]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: record))
    }
}
