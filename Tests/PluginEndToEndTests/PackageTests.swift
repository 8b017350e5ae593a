import Foundation
import Testing
import BerthJSON
import BerthTestSupport

/// The Debian package scripts/package.sh built (scripts/test.sh builds it
/// before the tests: SwiftPM's build directory is locked while they run).
enum BuiltPackage {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let version: String = {
        let source = (try? String(contentsOfFile: "\(repository)/Sources/BerthCNI/Version.swift", encoding: .utf8)) ?? ""
        let line = source.split(separator: "\n").first { $0.contains("static let string = \"") } ?? ""
        return line.split(separator: "\"").dropFirst().first.map(String.init) ?? "?"
    }()
    static var path: String { "\(repository)/.build/package/berth_\(version)_amd64.deb" }
    static var built: Bool { FileManager.default.fileExists(atPath: path) }
    static var installedAlready: Bool {
        shell(["dpkg-query", "-W", "-f=${Status}", "berth"]).out.contains("installed")
    }
}

@Suite("the Debian package", .ownThreads, .serialized,
       .enabled(if: runningAsRoot, "installing a package needs root"),
       .enabled(if: BuiltPackage.built, "scripts/package.sh has not built .build/package/berth_VERSION_amd64.deb (scripts/test.sh builds it first)"),
       .enabled(if: !BuiltPackage.installedAlready, "a berth package is installed on this machine: the test would remove it"))
struct PackageTests {
    @Test("lintian reports no error, and the package holds what it should where Debian's tools look")
    func contents() throws {
        let lint = shellMerged(["lintian", "--no-tag-display-limit", BuiltPackage.path])
        let errors = lint.out.split(separator: "\n").filter { $0.hasPrefix("E:") }
        #expect(errors.isEmpty, "lintian: \(lint.out)")
        let listing = shell(["dpkg-deb", "--contents", BuiltPackage.path]).out
        for path in ["./usr/lib/cni/berth", "./usr/lib/cni/berth-ipam", "./usr/bin/berthctl", "./usr/bin/berth-agent",
                     "./lib/systemd/system/berth-agent.service", "./etc/default/berth-agent",
                     "./usr/share/man/man8/berthctl.8.gz", "./usr/share/man/man8/berth-agent.8.gz",
                     "./usr/share/man/man8/berth.8.gz", "./usr/share/man/man8/berth-ipam.8.gz",
                     "./usr/share/bash-completion/completions/berthctl", "./usr/share/zsh/vendor-completions/_berthctl",
                     "./usr/share/fish/vendor_completions.d/berthctl.fish",
                     "./usr/share/doc/berth/examples/berth-docker0.conflist", "./usr/share/doc/berth/copyright"] {
            #expect(listing.contains(" \(path)\n") || listing.contains(" \(path) -> "), "the package lacks \(path)")
        }
        let control = shell(["dpkg-deb", "--field", BuiltPackage.path, "Version", "Depends", "Recommends"]).out
        #expect(control.contains("Version: \(BuiltPackage.version)"), "\(control)")
        for dependency in ["libnl-3-200", "libnl-route-3-200", "nftables", "iproute2"] {
            #expect(control.contains(dependency), "Depends lacks \(dependency): \(control)")
        }
        #expect(control.contains("Recommends:") && control.contains("dnsmasq-base") && control.contains("etcd-client"), "\(control)")
    }

    @Test("apt-get installs it; man berthctl, --version and the plugins work from the installed files (two namespaces reach each other and the gateway); apt-get purge leaves nothing")
    func installUseRemove() throws {
        let net = TestNetwork()
        // containerd's /opt/cni/bin, made for the test when it is not there (and removed after).
        let madeOpt = !FileManager.default.fileExists(atPath: "/opt/cni"), madeBin = !FileManager.default.fileExists(atPath: "/opt/cni/bin")
        if madeBin { try FileManager.default.createDirectory(atPath: "/opt/cni/bin", withIntermediateDirectories: true) }
        let optLinks = !FileManager.default.fileExists(atPath: "/opt/cni/bin/berth")
        defer {
            _ = shellMerged(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "berth"])
            net.cleanUp()
            if madeBin { rmdir("/opt/cni/bin") }
            if madeOpt { rmdir("/opt/cni") }
        }
        let install = shellMerged(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", BuiltPackage.path])
        try #require(install.status == 0, "apt-get install: \(install.out)")
        let files = shell(["dpkg", "-L", "berth"]).out.split(separator: "\n").map(String.init)
        if optLinks {
            // containerd's directory exists: the plugins are linked there.
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "/opt/cni/bin/berth")) == "/usr/lib/cni/berth")
        }

        // The defaults file comes with its settings commented out: nothing on this
        // machine (other tests' agents and berthctl among them) reads a made-up etcd from it.
        let defaults = (try? String(contentsOfFile: "/etc/default/berth-agent", encoding: .utf8)) ?? ""
        #expect(defaults.contains("#BERTH_ETCD_ENDPOINT="), "\(defaults)")
        #expect(!defaults.split(separator: "\n").contains { $0.hasPrefix("BERTH_") }, "\(defaults)")

        // Versions, from one place.
        #expect(shell(["/usr/bin/berthctl", "--version"]).out.trimmingCharacters(in: .whitespacesAndNewlines) == BuiltPackage.version)
        #expect(shell(["/usr/bin/berth-agent", "--version"]).out.trimmingCharacters(in: .whitespacesAndNewlines) == BuiltPackage.version)
        #expect(shell(["/usr/lib/cni/berth", "--version"]).out.hasPrefix("berth \(BuiltPackage.version) "))
        let version = shell(["/usr/lib/cni/berth"], input: "", environment: ["CNI_COMMAND": "VERSION"])
        #expect(version.out.contains("\"supportedVersions\""), "\(version.out)")

        // Manual pages through man(1).
        for page in ["berthctl", "berth-agent", "berth", "berth-ipam"] {
            let man = shell(["env", "MANPAGER=cat", "MANWIDTH=100", "man", "8", page])
            #expect(man.status == 0 && man.out.contains(page.uppercased() + "(8)"), "man 8 \(page): \(man.out.prefix(300))")
        }
        #expect(shell(["env", "MANPAGER=cat", "man", "berthctl"]).out.contains("lab"))
        #expect(shell(["env", "MANPAGER=cat", "man", "8", "berth"]).out.contains("isGateway"))
        #expect(shell(["bash", "-c", "source /usr/share/bash-completion/completions/berthctl && complete -p berthctl"]).out.contains("_berthctl"))

        // The demo's wiring through the installed plugins.
        let config = #"{"cniVersion":"1.0.0","name":"\#(net.name)","type":"berth","bridge":"\#(net.bridge)","isGateway":true,"ipam":{"type":"berth-ipam","subnet":"\#(net.subnetBase).0/24","dataDir":"\#(net.dataDir)"}}"#
        var addresses: [String] = []
        var namespaces: [String] = []
        for i in 0..<2 {
            let ns = net.makeNamespace()
            namespaces.append(ns)
            let add = shell(["/usr/lib/cni/berth"], input: config, environment: [
                "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "pkg-\(net.id)-\(i)", "CNI_NETNS": ns, "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"])
            try #require(add.status == 0, "ADD through /usr/lib/cni/berth: \(add.out)")
            let address = try #require(firstAddress(try? JSON.parse(add.out)))
            addresses.append(address)
        }
        #expect(net.ping(from: namespaces[0], to: addresses[1]))
        #expect(net.ping(from: namespaces[1], to: addresses[0]))
        #expect(net.ping(from: namespaces[0], to: "\(net.subnetBase).1"))
        for (i, ns) in namespaces.enumerated() {
            let del = shell(["/usr/lib/cni/berth"], input: config, environment: [
                "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "pkg-\(net.id)-\(i)", "CNI_NETNS": ns, "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"])
            #expect(del.status == 0, "\(del.out)")
        }
        #expect(net.portsOfBridge().isEmpty)

        // Purged: no file of the package, the conffile included, and no /opt/cni/bin link of it.
        let purge = shellMerged(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "berth"])
        #expect(purge.status == 0, "\(purge.out)")
        #expect(!BuiltPackage.installedAlready)
        let left = files.filter { !$0.isEmpty && FileManager.default.fileExists(atPath: $0) && !isDirectory($0) }
        #expect(left.isEmpty, "left after purge: \(left)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/default/berth-agent"))
        #expect(!FileManager.default.fileExists(atPath: "/usr/share/doc/berth"))
        if optLinks { #expect(!FileManager.default.fileExists(atPath: "/opt/cni/bin/berth")) }
    }
}

private func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
}
