import Foundation
import BerthCNI
import BerthJSON
import BerthSystem
import BerthNet

/// Whether the kernel tests can run: they need root for namespaces and links.
package let runningAsRoot = getuid() == 0

/// The directory holding the built `berth` executable: BERTH_BIN_DIR, or the
/// build directory the test bundle itself was built into.
package let productsDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["BERTH_BIN_DIR"] { return dir }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().path
}()

/// Where Debian's reference plugins live.
package let referencePluginDirectory = "/usr/lib/cni"

/// Runs a command line, returns exit status and stdout. stdin is `input`.
///
/// Not through Foundation's `Process`: it closes the parent's descriptors in
/// the child from a list taken before the spawn, so a pipe another thread
/// opens meanwhile can leak into a long-lived child (a `swift build`, a
/// server) and keep that thread's read waiting for as long as the child
/// lives, locks held or not. `runExecutable` closes them in the child and
/// reads the output from a memory file once the command has exited.
@discardableResult
package func shell(_ args: [String], input: String? = nil, environment: [String: String]? = nil) -> (status: Int32, out: String) {
    do {
        let r = try runExecutable("/usr/bin/env", arguments: args, environment: environment ?? ProcessInfo.processInfo.environment,
                                  input: Array((input ?? "").utf8), discardStandardError: true)
        return (r.status, String(decoding: r.stdout, as: UTF8.self))
    } catch {
        return (127, "\(error)")
    }
}

/// The host's IP forwarding settings (IPv4, and IPv6 on all interfaces), which
/// ipMasq, the reference bridge plugin, isolation and policy tests turn on: put
/// back as they were when the last of the tests holding one is done. Tests run
/// side by side, so one that finished first must not turn forwarding off under
/// another: the first holder records the settings, the last puts them back.
package final class HostForwarding: @unchecked Sendable {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var holders = 0
    nonisolated(unsafe) private static var original: (v4: String, v6: String) = ("", "")
    private var held = true

    static let v4 = "/proc/sys/net/ipv4/ip_forward", v6 = "/proc/sys/net/ipv6/conf/all/forwarding"

    /// Holds the settings; with `on`, turns both forwardings on.
    package init(on: Bool = false) {
        HostForwarding.lock.withLock {
            if HostForwarding.holders == 0 {
                HostForwarding.original = (Self.read(Self.v4), Self.read(Self.v6))
            }
            HostForwarding.holders += 1
            if on { Self.write(Self.v4, "1"); Self.write(Self.v6, "1") }
        }
    }

    package func restore() {
        HostForwarding.lock.withLock {
            guard held else { return }
            held = false
            HostForwarding.holders -= 1
            if HostForwarding.holders == 0 {
                Self.write(Self.v4, HostForwarding.original.v4)
                Self.write(Self.v6, HostForwarding.original.v6)
            }
        }
    }

    private static func read(_ path: String) -> String {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }
    private static func write(_ path: String, _ value: String) {
        guard !value.isEmpty else { return }
        try? value.write(toFile: path, atomically: false, encoding: .utf8)
    }
}

/// What a plugin invocation printed.
package struct PluginRun {
    package var status: Int32
    package var stdout: String
    package init(status: Int32, stdout: String) {
        self.status = status
        self.stdout = stdout
    }
    package var json: JSON? { try? JSON.parse(stdout) }
    package var errorCode: Int? { json?["code"]?.intValue }
    package var message: String { json?["msg"]?.stringValue ?? stdout }
}

/// One test's private piece of the kernel: a bridge, a subnet, namespaces and
/// an IPAM data directory, all with names unique to this test, and removed by
/// `cleanUp()` (call it in `defer`, so failures clean up too).
package final class TestNetwork: @unchecked Sendable {
    package let id: String
    package let bridge: String
    package let name: String
    /// A /24 that no route on the host covers, e.g. "10.243.17".
    package let subnetBase: String
    /// A /64 base for IPv6, e.g. "fd42:1a2b:3c4d:1".
    package let subnet6Base: String
    package let dataDir: String
    package private(set) var namespaces: [String] = []
    private var scratchDirectories: [String] = []
    private let lock = NSLock()

    package init() {
        let rand = UInt32.random(in: 0...UInt32.max)
        id = String(format: "%06x", rand & 0xFFFFFF) + String(getpid() % 100)
        bridge = "bt" + String(id.prefix(10))
        name = "berthtest-\(id)"
        dataDir = NSTemporaryDirectory() + "berthtest-ipam-\(id)"
        let routes = shell(["ip", "-4", "route", "show", "table", "all"]).out
        var base: String
        repeat {
            base = "10.\(Int.random(in: 240...254)).\(Int.random(in: 0...255))"
        } while routes.contains(base + ".")
        subnetBase = base
        subnet6Base = String(format: "fd42:%x:%x:1", Int.random(in: 1...0xffff), Int.random(in: 1...0xffff))
    }

    /// Creates a namespace with `ip netns` (as a runtime would); returns its path.
    package func makeNamespace() -> String {
        let nsName: String = lock.withLock {
            let n = "\(name)-\(namespaces.count)"
            namespaces.append(n)
            return n
        }
        shell(["ip", "netns", "add", nsName])
        return "/run/netns/\(nsName)"
    }

    package func deleteNamespace(_ path: String) {
        shell(["ip", "netns", "del", URL(fileURLWithPath: path).lastPathComponent])
    }

    /// Removes everything this test made: namespaces (their veth ends go with
    /// them), host veths still on the bridge, the bridge, the IPAM data.
    package func cleanUp() {
        // Rules of this network that a failed test left (GC with nothing valid removes them all).
        let gc = #"{"cniVersion":"1.1.0","name":"\#(name)","type":"berth","bridge":"\#(bridge)","cni.dev/valid-attachments":[]}"#
        shell(["\(productsDirectory)/berth"], input: gc, environment: ["CNI_COMMAND": "GC", "CNI_PATH": productsDirectory])
        for ns in namespaces { shell(["ip", "netns", "del", ns]) }
        for port in portsOfBridge() { shell(["ip", "link", "del", port]) }
        shell(["ip", "link", "del", bridge])
        try? FileManager.default.removeItem(atPath: dataDir)
        for dir in scratchDirectories { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// An `ipam` section for Berth's own IPAM on this test's subnet and data directory.
    package var berthIPAM: String {
        #"{"type":"berth-ipam","dataDir":"\#(dataDir)","subnet":"\#(subnetBase).0/24"}"#
    }

    /// A directory with one executable `name` holding `script` (a fake plugin
    /// for CNI_PATH); removed by `cleanUp()`.
    package func fakePlugin(_ name: String, script: String) throws -> (directory: String, path: String) {
        let dir = NSTemporaryDirectory() + "berthtest-plugins-\(id)"
        lock.withLock { scratchDirectories.append(dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/\(name)"
        try script.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o755)
        return (dir, path)
    }

    /// A config for the berth plugin. `ipam` defaults to host-local on this test's subnet.
    package func config(version: String = "1.0.0", ipam: String? = nil, extra: String = "") -> String {
        let ipamJSON = ipam ?? #"{"type":"host-local","subnet":"\#(subnetBase).0/24","dataDir":"\#(dataDir)"}"#
        return #"{"cniVersion":"\#(version)","name":"\#(name)","type":"berth","bridge":"\#(bridge)","isGateway":true\#(extra),"ipam":\#(ipamJSON)}"#
    }

    /// Runs a plugin executable the way a runtime does.
    package func run(_ command: String, netns: String, containerID: String, ifname: String = "eth0", config: String,
             plugin: String = "berth", args: String? = nil) -> PluginRun {
        var env = [
            "CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
            "CNI_PATH": "\(productsDirectory):\(referencePluginDirectory)",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        if let args { env["CNI_ARGS"] = args }
        let dir = plugin == "berth" ? productsDirectory : referencePluginDirectory
        let r = shell(["\(dir)/\(plugin)"], input: config, environment: env)
        return PluginRun(status: r.status, stdout: r.out)
    }

    /// A new namespace with one container added to it by `berth`; the ADD must succeed.
    package func addContainer(config: String? = nil, id: String? = nil) throws -> (netns: String, id: String, add: PluginRun) {
        let ns = makeNamespace()
        let containerID = id ?? "c-\(self.id)"
        let add = run("ADD", netns: ns, containerID: containerID, config: config ?? self.config())
        guard add.status == 0 else { throw SupportError("ADD of \(containerID) failed: \(add.stdout)") }
        return (ns, containerID, add)
    }

    /// `config` with `prevResult` set to `result`.
    package func config(_ config: String, prevResult: String) -> String {
        var object = try! JSON.parse(config).objectValue!
        object["prevResult"] = try! JSON.parse(prevResult)
        return JSON.object(object).serialized()
    }

    /// Names of the links that are ports of this test's bridge.
    package func portsOfBridge() -> [String] {
        shell(["ip", "-o", "link", "show", "master", bridge]).out
            .split(separator: "\n")
            .compactMap { line in line.split(separator: ":").dropFirst().first.map { String($0.trimmingCharacters(in: .whitespaces).split(separator: "@")[0]) } }
    }

    /// Runs `command` inside a namespace.
    @discardableResult
    package func inNamespace(_ netns: String, _ command: [String]) -> (status: Int32, out: String) {
        shell(["ip", "netns", "exec", URL(fileURLWithPath: netns).lastPathComponent] + command)
    }

    /// Whether `address` (one this test gave out) answers pings from inside `netns`.
    package func ping(from netns: String, to address: String) -> Bool {
        let tool = address.contains(":") ? ["ping", "-6"] : ["ping"]
        // Three echoes 0.2 s apart, any answer will do: on a loaded machine the first
        // (neighbour discovery on the way) may come late; no answer costs 2.4 s.
        return inNamespace(netns, tool + ["-c", "3", "-i", "0.2", "-W", "2", address]).status == 0
    }
}

/// The address part ("10.1.2.3") of the first `ips` entry of a result, or of a 0.x `ip4`.
package func firstAddress(_ result: JSON?, family: IPAddress.Family = .v4) -> String? {
    if let ips = result?["ips"]?.arrayValue {
        for ip in ips {
            if let a = ip["address"]?.stringValue, let p = IPPrefix(a), p.family == family { return p.address.description }
        }
        return nil
    }
    let key = family == .v4 ? "ip4" : "ip6"
    return result?[key]?["ip"]?.stringValue.flatMap(IPPrefix.init)?.address.description
}

/// Creates an empty file (FileManager.createFile writes atomically and leaves a TemporaryDirectory.* behind in /tmp).
@discardableResult
package func touchFile(_ path: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
    if fd >= 0 { close(fd) }
    return fd >= 0
}

/// `args` through a shell with stderr joined to stdout (shell() drops stderr).
package func shellMerged(_ args: [String], input: String? = nil, environment: [String: String]? = nil) -> (status: Int32, out: String) {
    let quoted = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    return shell(["sh", "-c", quoted + " 2>&1"], input: input, environment: environment)
}

/// The built `berthctl`.
package let berthctlPath: String = {
    if let dir = ProcessInfo.processInfo.environment["BERTH_BIN_DIR"] { return dir + "/berthctl" }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("berthctl").path
}()

/// Runs berthctl; `cniPath` sets its CNI_PATH (per process: suites run in parallel).
package func berthctl(_ args: [String], cniPath: String? = nil) -> (status: Int32, out: String, err: String) {
    // Through runExecutable, not Foundation's Process (see `command` in
    // PackageConsumerTests); stderr goes to a file of its own.
    var env = ProcessInfo.processInfo.environment
    if let cniPath { env["CNI_PATH"] = cniPath }
    let errFile = NSTemporaryDirectory() + "berthtest-stderr-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    defer { unlink(errFile) }
    do {
        let r = try runExecutable("/bin/sh", arguments: ["-c", "f=$1; shift; exec \"$@\" 2>\"$f\"", "sh", errFile, berthctlPath] + args,
                                  environment: env, input: [])
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        return (r.status, String(decoding: r.stdout, as: UTF8.self), err)
    } catch {
        return (127, "", "\(error)")
    }
}

package func ip(_ args: [String]) -> (status: Int32, out: String) {
    do {
        let r = try runExecutable("/usr/sbin/ip", arguments: args, environment: ProcessInfo.processInfo.environment,
                                  input: [], discardStandardError: true)
        return (r.status, String(decoding: r.stdout, as: UTF8.self))
    } catch {
        return (127, "")
    }
}

/// The pids of processes whose command line contains `marker`.
package func processes(containing marker: String) -> [Int32] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { name -> Int32? in
        guard let pid = Int32(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { return nil }
        let text = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        guard text.contains(marker), !text.contains("pgrep") else { return nil }
        let state = (try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
        return state == "Z" ? nil : pid
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
package func cleanWait(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}


/// Topologies more than one suite uses.
package enum SampleTopologies {
    /// Two hosts, each behind its own router, the routers joined by a link.
    package static let twoRouters = """
    name: rt
    autoRoutes: true
    networks:
      - name: left
        subnet: 10.231.1.0/24
      - name: right
        subnet: 10.231.2.0/24
    hosts:
      - name: h1
        networks: [left]
      - name: r1
        networks: [left]
        forwarding: true
      - name: r2
        networks: [right]
        forwarding: true
      - name: h2
        networks: [right]
    links:
      - ends: [r1, r2]
        subnet: 10.231.9.0/30
    """
}

/// A step of a fixture that failed: the test that asked for it fails with this.
/// (Swift Testing is not imported here: this module is built by `swift build`
/// too, where only test targets can import it.)
package struct SupportError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
