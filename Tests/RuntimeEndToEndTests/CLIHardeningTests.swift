import Foundation
import Testing
import BerthSystem
@testable import BerthRuntime
@testable import BerthCNIClient
import BerthTestSupport

@Suite("limits and names checked before anything is made", .ownThreads)
struct LimitCheckTests {
    @Test("limits that can never work are refused in one line naming the flag",
          arguments: [(["--memory", "0"], "below the least"), (["--memory", "1k"], "below the least"),
                      (["--cpus", "1000"], "between 0.01 and"), (["--cpus", "0.0001"], "between 0.01 and"),
                      (["--memory", "-5m"], "--memory -5m is not a size"), (["--cpus", "-1"], "between 0.01 and"),
                      (["--pids-limit", "-3"], "--pids-limit must be at least 2"), (["--pids-limit", "1"], "at least 2"),
                      (["--cpu-shares", "-7"], "--cpu-shares must be within"), (["--cpus", "lots"], "is not a number")])
    func refusedLimits(options: [String], says: String) {
        let name = "berthtest-lim-\(getpid())-\(UInt32.random(in: 0...99999))"
        defer { _ = berthctl(["rm", name]) }  // in case it was (wrongly) started
        let r = berthctl(["run", "--name", name] + options + ["--", "true"])
        #expect(r.status != 0 && r.err.contains(says) && !r.err.contains("Missing value"), "\(options): \(r.err)")
        #expect(r.err.split(separator: "\n").first?.contains(says) == true, "not the first line: \(r.err)")
        #expect(!FileManager.default.fileExists(atPath: "/run/berth/containers/\(name)"))
    }

    @Test("the limit check, pure: the machine's CPUs bound --cpus; init needs two pids")
    func limitProblems() {
        #expect(ResourceLimits(cpus: 2).problem(onlineCPUs: 2) == nil)
        #expect(ResourceLimits(cpus: 2.5).problem(onlineCPUs: 2)?.detail.contains("this machine has 2 CPUs") == true)
        #expect(ResourceLimits(cpus: 2.5).problem(onlineCPUs: 2)?.field == "cpus", "the library names its field, not a flag")
        #expect(ResourceLimits(memory: 4 << 20).problem(onlineCPUs: 1) == nil)
        #expect(ResourceLimits(pids: 1).problem(onlineCPUs: 1, withInit: false) == nil)
        #expect(ResourceLimits(pids: 1).problem(onlineCPUs: 1, withInit: true) != nil)
        let implied = ResourceLimits.withImpliedCPUSet(ResourceLimits(cpus: 0.5), lxcfs: true, online: "0-3")
        #expect(implied.cpusetCpus == "0")
        #expect(ResourceLimits.withImpliedCPUSet(ResourceLimits(cpus: 1.5), lxcfs: true, online: "0-3").cpusetCpus == "0-1")
        #expect(ResourceLimits.withImpliedCPUSet(ResourceLimits(cpus: 0.5), lxcfs: false, online: "0-3").cpusetCpus == nil)
        #expect(ResourceLimits.withImpliedCPUSet(ResourceLimits(cpus: 0.5, cpusetCpus: "3"), lxcfs: true, online: "0-3").cpusetCpus == "3")
    }

    @Test("a name past 128 bytes or a host name past 64 is refused up front; a long name gets a host name cut to 64")
    func names() {
        let long = String(repeating: "n", count: 303)
        defer { _ = berthctl(["rm", long]) }
        let r = berthctl(["run", "--name", long, "--", "true"])
        #expect(r.status != 0 && r.err.contains("at most 128"), "\(r.err)")
        let h = berthctl(["run", "--hostname", String(repeating: "h", count: 65), "--", "true"])
        #expect(h.status != 0 && h.err.contains("the kernel's limit is 64"), "\(h.err)")
        let spec = ContainerSpec(name: String(repeating: "x", count: 66), command: ["true"])
        #expect(spec.effectiveHostname.count == 64)
    }

    @Test("help and usage lines name berthctl for the container commands", arguments: ["run", "stats", "pause", "exec", "rm"])
    func usage(command: String) {
        let r = berthctl([command, "--help"])
        #expect(r.out.contains("USAGE: berthctl \(command)"), "\(r.out)")
    }
}

@Suite("commands that cannot be executed, and PID 1's name", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root"))
struct ExecFailureTests {
    @Test("run, exec and netns exec say why a command cannot be executed, with 127 (not found) and 126 (not executable)")
    func cannotExecute() throws {
        let plain = NSTemporaryDirectory() + "berthtest-noexec-\(getpid()).sh"
        try "echo hi\n".write(toFile: plain, atomically: false, encoding: .utf8)
        chmod(plain, 0o644)
        defer { unlink(plain) }
        let c = TestContainer()
        defer { c.remove() }
        try #require(c.startDetached() != nil)
        let ns = "berthtest-ef-\(getpid())"
        try #require(berthctl(["netns", "add", ns]).status == 0)
        defer { _ = berthctl(["netns", "del", ns]) }
        let ways: [(String, [String])] = [("run", ["run", "--rm", "--"]), ("run --no-init", ["run", "--rm", "--no-init", "--"]),
                                          ("exec", ["exec", c.name, "--"]), ("netns exec", ["netns", "exec", ns, "--"])]
        for (what, prefix) in ways {
            let missing = berthctl(prefix + ["/nonexistent/berthtest"])
            #expect(missing.status == 127 && missing.err.contains("cannot execute /nonexistent/berthtest: No such file or directory"),
                    "\(what): \(missing.status) \(missing.err)")
            let denied = berthctl(prefix + [plain])
            #expect(denied.status == 126 && denied.err.contains("cannot execute \(plain): Permission denied"), "\(what): \(denied.status) \(denied.err)")
        }
    }

    @Test("PID 1 (Berth's init) shows as the workload in ps, not as berthctl run")
    func initTitle() throws {
        let c = TestContainer()
        defer { c.remove() }
        try #require(c.startDetached([], ["sleep", "31"]) != nil)
        let cmdline = berthctl(["exec", c.name, "--", "cat", "/proc/1/cmdline"]).out
        #expect(cmdline.split(separator: "\0").map(String.init) == ["sleep", "31"], "\(cmdline.debugDescription)")
        #expect(berthctl(["exec", c.name, "--", "cat", "/proc/1/comm"]).out == "sleep\n")
    }
}

extension WiringTests {
    @Test("attach --ip/--mac to a network no plugin of which takes them is refused; detach twice is fine; netns del of an attached namespace is refused (or detaches with --detach); ipam ls reads the conflist's dataDir")
    func wiringEdges() throws {
        let net = try WiringFixture.berth(prefix: "we", subnetBase: "10.217")
        defer { net.cleanUp() }
        #expect(ip(["netns", "add", net.a]).status == 0)
        let ipRefused = net.attach(net.a, ["--ip", "\(net.subnet).50/24"])
        #expect(ipRefused.status != 0 && ipRefused.err.contains("--ip") && ipRefused.err.contains("\"ips\" capability"), "\(ipRefused.err)")
        let macRefused = net.attach(net.a, ["--mac", "0a:58:0a:58:00:32"])
        #expect(macRefused.status != 0 && macRefused.err.contains("\"mac\" capability"), "\(macRefused.err)")
        #expect(berthctl(["ls"]).out.contains(net.a) == false, "a refused attach left a record")
        let attach = net.attach(net.a)
        try #require(attach.status == 0, "\(attach.err)")
        // ipam ls finds the network's store through its conflist.
        let ls = berthctl(["ipam", "ls", net.network, "--cni-conf-dir", net.confDir])
        #expect(ls.status == 0 && ls.out.contains("\(net.subnet).2"), "\(ls.out)\(ls.err)")
        let del = berthctl(["netns", "del", net.a])
        #expect(del.status != 0 && del.err.contains("is attached to \(net.network)"), "\(del.err)")
        #expect(FileManager.default.fileExists(atPath: "/run/netns/\(net.a)"))
        #expect(net.detach(net.a).status == 0)
        let again = net.detach(net.a)
        #expect(again.status == 0 && again.err.contains("nothing to do"), "\(again.err)")
        #expect(net.attach(net.a).status == 0)
        let forced = berthctl(["netns", "del", "--detach", net.a], cniPath: net.cni)
        #expect(forced.status == 0, "\(forced.err)")
        #expect(!berthctl(["ls"]).out.contains(net.a))
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(net.a)"))
    }
}
