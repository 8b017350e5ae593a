import Foundation
import Testing
import BerthTestSupport

/// A podman of the test's own: storage, run state, network configs and
/// containers.conf in one scratch directory, the CNI backend pointed at
/// Berth's plugins and the reference ones, containers in a cgroup parent of
/// their own. `cleanUp` removes the containers, their cgroups and the files.
final class PrivatePodman: @unchecked Sendable {
    let directory: String
    let cgroupParent: String
    var networkDirectory: String { "\(directory)/net" }
    var rootfs: String { "\(directory)/rootfs" }

    init(id: String) throws {
        directory = NSTemporaryDirectory() + "berthtest-podman-\(id)"
        cgroupParent = "berthtest-podman-\(id)"
        for sub in ["net", "root", "runroot", "tmp"] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(sub)", withIntermediateDirectories: true)
        }
        // No systemd here: cgroupfs, events in a file. Only the CNI backend reads network_config_dir.
        try """
        [engine]
        cgroup_manager = "cgroupfs"
        events_logger = "file"
        runtime = "runc"
        [network]
        network_backend = "cni"
        cni_plugin_dirs = ["\(productsDirectory)", "\(referencePluginDirectory)"]
        network_config_dir = "\(networkDirectory)"
        """.write(toFile: "\(directory)/containers.conf", atomically: true, encoding: .utf8)
        try RuntimeRootfs.make(rootfs)
    }

    func addNetwork(_ name: String, conflist: String) throws {
        try conflist.write(toFile: "\(networkDirectory)/\(name).conflist", atomically: true, encoding: .utf8)
    }

    /// `podman ARGS` against this podman's state; stdout and stderr together.
    @discardableResult
    func podman(_ args: [String]) -> (status: Int32, out: String) {
        shellMerged(["env", "CONTAINERS_CONF=\(directory)/containers.conf", "podman",
                     "--root", "\(directory)/root", "--runroot", "\(directory)/runroot",
                     "--tmpdir", "\(directory)/tmp", "--storage-driver", "vfs"] + args)
    }

    /// `podman run` of the busybox root file system on `network`. podman asks for
    /// rlimits above this machine's hard limits by default; the current ones are passed.
    /// (`--rootfs` is a switch: the image argument is then a directory.)
    @discardableResult
    func run(_ network: String, _ extra: [String], _ command: [String]) -> (status: Int32, out: String) {
        let hard = shell(["sh", "-c", "ulimit -Hn; ulimit -Hu"]).out.split(separator: "\n").map(String.init)
        let files = hard.first ?? "1024", procs = hard.dropFirst().first ?? "4096"
        return podman(["run", "--ulimit", "nofile=\(files):\(files)", "--ulimit", "nproc=\(procs):\(procs)",
                       "--cgroup-parent", "/\(cgroupParent)", "--network", network] + extra + ["--rootfs", rootfs] + command)
    }

    func cleanUp() {
        podman(["rm", "--all", "--force", "--time", "0"])
        // Each hierarchy's cgroups under the parent, deepest first; conmon may
        // still be leaving its cgroup just after `rm` returns, so a few tries.
        let hierarchies = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []
        let tops = hierarchies.map { "/sys/fs/cgroup/\($0)/\(cgroupParent)" }
        _ = cleanWait(10) {
            for top in tops where FileManager.default.fileExists(atPath: top) {
                let children = (FileManager.default.subpaths(atPath: top) ?? []).map { "\(top)/\($0)" }
                    .filter { var isDir: ObjCBool = false; return FileManager.default.fileExists(atPath: $0, isDirectory: &isDir) && isDir.boolValue }
                    .sorted { $0.count > $1.count }
                for dir in children + [top] { rmdir(dir) }
            }
            return !tops.contains { FileManager.default.fileExists(atPath: $0) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The project's busybox root file system (scripts/make-rootfs.sh).
enum RuntimeRootfs {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func make(_ dir: String) throws {
        let made = shell(["bash", "\(repository)/scripts/make-rootfs.sh", dir])
        try #require(made.status == 0, "scripts/make-rootfs.sh failed: \(made.out)")
    }
}

@Suite("podman with its CNI backend", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && ["/usr/bin/podman", "/usr/sbin/dnsmasq", "/bin/busybox", "/usr/sbin/runc"].allSatisfy { FileManager.default.fileExists(atPath: $0) },
                "needs root, podman, runc, dnsmasq and busybox (scripts/setup.sh installs them)"))
struct PodmanTests {
    @Test("two podman containers on a Berth network with names resolve each other (A, AAAA, a --network-alias, reverse) through the resolv.conf podman writes from the result; on a reference bridge network (podman's dnsname-less default) they cannot; nothing is left")
    func containersResolveEachOther() throws {
        let names = NamesNetwork(domain: "pod.internal"), reference = TestNetwork()
        let podman = try PrivatePodman(id: names.net.id)
        defer { podman.cleanUp(); names.cleanUp(); reference.cleanUp() }
        let n = names.net
        try podman.addNetwork(n.name, conflist: """
        {"cniVersion":"1.0.0","name":"\(n.name)","plugins":[{"type":"berth","bridge":"\(n.bridge)","isGateway":true,
         "runDir":"\(names.runDir)","names":{"domain":"pod.internal"},"capabilities":{"aliases":true},
         "ipam":{"type":"berth-ipam","dataDir":"\(n.dataDir)","ranges":[[{"subnet":"\(n.subnetBase).0/24"}],[{"subnet":"\(n.subnet6Base)::/64"}]]}}]}
        """)
        try podman.addNetwork(reference.name, conflist: """
        {"cniVersion":"1.0.0","name":"\(reference.name)","plugins":[{"type":"bridge","bridge":"\(reference.bridge)","isGateway":true,
         "ipam":{"type":"host-local","dataDir":"\(reference.dataDir)","ranges":[[{"subnet":"\(reference.subnetBase).0/24"}]]}}]}
        """)
        let listed = podman.podman(["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
        #expect(listed.out.contains("\(n.name) berth"), "\(listed.out)")

        // A long-running container named web, with an alias.
        let web = podman.run(n.name, ["-d", "--name", "web", "--network-alias", "shop"], ["sleep", "600"])
        try #require(web.status == 0, "podman run web: \(web.out)")
        let webID = String(web.out.split(separator: "\n").last ?? "").trimmingCharacters(in: .whitespaces)
        let inspect = podman.podman(["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}", webID])
        let webAddresses = inspect.out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(webAddresses.count == 2 && webAddresses[0].hasPrefix(n.subnetBase + ".") && webAddresses[1].hasPrefix(n.subnet6Base), "podman inspect: \(inspect.out)")

        // The client resolves web by its name, its alias and its address, with the resolver podman configured.
        let client = podman.run(n.name, ["--rm", "--name", "client"], ["sh", "-c", """
            cat /etc/resolv.conf; echo ===
            nslookup -type=a web; echo ===; nslookup -type=aaaa web; echo ===
            nslookup shop.pod.internal; echo ===; nslookup \(webAddresses[0]); echo ===
            ping -c 1 -W 2 web && echo PING-OK
            """])
        #expect(client.status == 0, "\(client.out)")
        let parts = client.out.components(separatedBy: "===\n")
        try #require(parts.count == 6, "\(client.out)")
        #expect(parts[0].contains("nameserver \(names.gateway4)") && parts[0].contains("search pod.internal"), "podman's resolv.conf: \(parts[0])")
        #expect(parts[1].contains("web.pod.internal") && parts[1].contains(webAddresses[0]), "A: \(parts[1])")
        #expect(parts[2].contains(webAddresses[1]), "AAAA: \(parts[2])")
        #expect(parts[3].contains(webAddresses[0]), "alias: \(parts[3])")
        #expect(parts[4].contains("web.pod.internal"), "PTR: \(parts[4])")
        #expect(parts[5].contains("PING-OK"), "ping web: \(parts[5])")
        #expect(try String(contentsOfFile: "\(names.directory)/hosts.d/\(n.name):\(webID):eth0", encoding: .utf8).contains(" web.pod.internal "))

        // The same on a reference bridge network: podman writes only the host's servers, no name of web anywhere.
        let plain = podman.run(reference.name, ["--rm"], ["sh", "-c",
            "cat /etc/resolv.conf; echo ===; cat /etc/hosts; echo ===; nslookup web.pod.internal \(reference.subnetBase).1 >/dev/null 2>&1 && echo RESOLVED || echo NOT-RESOLVED"])
        #expect(plain.status == 0, "\(plain.out)")
        #expect(!plain.out.contains("nameserver \(reference.subnetBase).") && !plain.out.contains("search pod.internal"), "\(plain.out)")
        #expect(plain.out.contains("NOT-RESOLVED") && !plain.out.contains(" web"), "\(plain.out)")

        // The client's DEL forgot it; removing web forgets it and stops the server.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(names.directory)/hosts.d"))?.count == 1)
        let pid = try #require(names.serverPID)
        let removed = podman.podman(["rm", "--force", "--time", "0", "web"])
        #expect(removed.status == 0, "\(removed.out)")
        #expect(cleanWait(5) { kill(pid, 0) != 0 }, "dnsmasq \(pid) still runs after the network's last container went")
        #expect(!FileManager.default.fileExists(atPath: "\(names.directory)/hosts.d/\(n.name):\(webID):eth0"))
        #expect(podman.podman(["ps", "--all", "--quiet"]).out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }
}
