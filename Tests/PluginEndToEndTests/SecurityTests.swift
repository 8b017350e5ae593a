import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

@Suite("security review", .ownThreads, .enabled(if: runningAsRoot, "needs root for namespaces and links"))
struct SecurityTests {
    @Test("a delegated IPAM plugin inherits no descriptor but stdio and the attachment's lock: none of berth's (netlink sockets, namespace, store), none berth inherited")
    func descriptorsClosedOnExec() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let listing = NSTemporaryDirectory() + "berthtest-fds-\(net.id)"
        defer { try? FileManager.default.removeItem(atPath: listing) }
        let (dir, _) = try net.fakePlugin("fake-ipam", script: """
        #!/bin/sh
        ls -l /proc/self/fd/ > \(listing)
        echo '{"cniVersion":"1.0.0","code":11,"msg":"fake IPAM: no addresses today"}'
        exit 1
        """)

        let ns = net.makeNamespace()
        let config = net.config(ipam: #"{"type":"fake-ipam"}"#)
        let env = ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "fds-\(net.id)", "CNI_NETNS": ns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": "\(productsDirectory):\(dir)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        // berth itself inherits descriptor 9 (not close-on-exec) from its caller.
        let r = shell(["sh", "-c", "exec 9</dev/null; exec \"$0\"", "\(productsDirectory)/berth"], input: config, environment: env)
        #expect(r.status != 0 && r.out.contains("no addresses today"), "\(r.out)")
        // `ls -l` lines end in "FD -> TARGET"; ls itself holds the directory it lists.
        let fds = try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n").compactMap { line -> (Int, String)? in
            let words = line.split(separator: " ")
            guard let arrow = words.firstIndex(of: "->"), arrow > 0, let fd = Int(words[arrow - 1]) else { return nil }
            return (fd, words[(arrow + 1)...].joined(separator: " "))
        }
        #expect(Set(fds.map(\.0)).isSuperset(of: [0, 1, 2]), "\(fds)")
        // Descriptor 4 is the attachment's lock, passed on on purpose: it stays
        // held while the IPAM plugin runs, even if berth is killed.
        #expect(fds.contains { $0.0 == 4 && $0.1.hasPrefix("/run/berth/locks/") }, "\(fds)")
        for (fd, target) in fds where fd > 2 && fd != 4 {
            #expect(target.hasPrefix("/proc/") && target.hasSuffix("/fd"), "descriptor \(fd) leaked into the IPAM plugin: \(target)")
        }
        #expect(net.portsOfBridge().isEmpty, "the refused ADD left a veth")
    }

    @Test("an IPAM plugin's result with a gateway of the other family is refused (error 6 naming the field) and leaves nothing")
    func mismatchedGatewayFromIPAM() throws {
        let net = TestNetwork()
        defer { net.cleanUp() }
        let (dir, _) = try net.fakePlugin("bad-ipam", script: """
        #!/bin/sh
        case "$CNI_COMMAND" in
        ADD) echo '{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64","gateway":"\(net.subnetBase).1"}]}' ;;
        *) echo '{}' ;;
        esac
        """)
        let ns = net.makeNamespace()
        let env = ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "gw-\(net.id)", "CNI_NETNS": ns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": "\(productsDirectory):\(dir)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let r = shell(["\(productsDirectory)/berth"], input: net.config(ipam: #"{"type":"bad-ipam"}"#), environment: env)
        let json = try #require(try? JSON.parse(r.out), "not a CNI error: \(r.out)")
        #expect(r.status == 1 && json["code"]?.intValue == 6, "\(r.out)")
        #expect(json["msg"]?.stringValue?.contains("ips[0].gateway") == true, "\(r.out)")
        #expect(net.portsOfBridge().isEmpty)
        #expect(net.inNamespace(ns, ["ip", "link", "show", "eth0"]).status != 0)
    }

    @Test("berth-ipam does not follow a symbolic link planted in its data directory",
          arguments: ["network", "attachments", "addresses", "lock"])
    func plantedSymlink(at planted: String) throws {
        let net = TestNetwork()
        let elsewhere = NSTemporaryDirectory() + "berthtest-elsewhere-\(net.id)"
        defer {
            net.cleanUp()
            try? FileManager.default.removeItem(atPath: elsewhere)
        }
        let fm = FileManager.default
        try fm.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        let store = "\(net.dataDir)/\(net.name)"
        if planted == "network" {
            try fm.createDirectory(atPath: net.dataDir, withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: store, withDestinationPath: elsewhere)
        } else {
            try fm.createDirectory(atPath: store, withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: "\(store)/\(planted)", withDestinationPath: planted == "lock" ? "\(elsewhere)/lock" : elsewhere)
        }
        let ns = net.makeNamespace()
        let add = net.run("ADD", netns: ns, containerID: "ln-\(net.id)", config: net.config(ipam: net.berthIPAM))
        #expect(add.status != 0, "ADD through a planted link \(planted) succeeded: \(add.stdout)")
        #expect(add.errorCode == 5 && add.message.contains(store), "the error must name the store's file: \(add.stdout)")
        #expect(try fm.contentsOfDirectory(atPath: elsewhere).isEmpty, "berth wrote through the link")
        #expect(net.portsOfBridge().isEmpty, "the refused ADD left a veth")
    }
}
