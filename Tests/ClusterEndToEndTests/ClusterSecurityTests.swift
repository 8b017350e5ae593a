import Foundation
import Testing
import BerthTestSupport

/// scripts/etcd-certs.sh, which makes a CA and certificates with openssl.
let etcdCertsScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("scripts/etcd-certs.sh").path

/// Runs scripts/etcd-certs.sh; the test fails when it does.
func makeCertificates(_ args: [String]) throws {
    let r = shellMerged(["bash", etcdCertsScript] + args)
    try #require(r.status == 0, "etcd-certs.sh \(args.joined(separator: " ")): \(r.out)")
}

/// The material of a TLS etcd with `--client-cert-auth`: CA `a` signs etcd's
/// certificate (its address in the SAN), one for etcdctl and one per node;
/// CA `b` is a stranger's, or the one a rotation moves to.
func tlsSecurity(_ work: String, _ address: String) throws -> SimulatedCluster.Security {
    let a = "\(work)/pki/a", b = "\(work)/pki/b"
    try makeCertificates([a, "ca"])
    try makeCertificates([b, "ca"])
    try makeCertificates([a, "server", "etcd", "IP:\(address)"])
    try makeCertificates([a, "server", "expired", "IP:\(address)", "--dates", "20200101000000Z", "20200201000000Z"])
    try makeCertificates([a, "client", "admin"])
    try makeCertificates([a, "client", "node"])
    try makeCertificates([a, "client", "old", "--dates", "20200101000000Z", "20200201000000Z"])
    try makeCertificates([b, "client", "node"])
    try makeCertificates([b, "server", "etcd", "IP:\(address)"])
    var s = SimulatedCluster.Security()
    s.scheme = "https"
    s.etcdArguments = ["--cert-file", "\(a)/etcd.pem", "--key-file", "\(a)/etcd-key.pem",
                       "--trusted-ca-file", "\(a)/ca.pem", "--client-cert-auth"]
    s.etcdctlArguments = ["--cacert", "\(a)/ca.pem", "--cert", "\(a)/admin.pem", "--key", "\(a)/admin-key.pem"]
    s.clientArguments = ["--etcd-cafile", "\(a)/ca.pem", "--etcd-certfile", "\(a)/node.pem", "--etcd-keyfile", "\(a)/node-key.pem"]
    return s
}

@Suite("etcd over TLS and as etcd users", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd") && FileManager.default.fileExists(atPath: "/usr/bin/openssl"),
                "needs root, etcd and openssl (scripts/setup.sh installs them)"))
struct ClusterSecurityTests {
    @Test("TLS with client certificates: nodes converge; a wrong CA, an address not in the SAN, expired certificates, a stranger's or no client certificate each fail saying so")
    func tlsAndItsFailures() throws {
        let c = try SimulatedCluster(mode: "host-gw", nodes: 2, security: tlsSecurity)
        defer { c.cleanUp() }
        try c.converge(2)
        let a = "\(c.work)/pki/a", b = "\(c.work)/pki/b"
        #expect(c.log(0).contains("over TLS"), "\(c.log(0))")

        func show(_ flags: [String], etcd: String? = nil) -> (status: Int32, out: String) {
            shellMerged(["\(productsDirectory)/berth-agent", "show", "--cluster", c.name, "--etcd", etcd ?? c.etcdURL] + flags)
        }
        let good = show(c.clientArguments)
        #expect(good.status == 0 && good.out.contains(c.name), "\(good.out)")
        // berthctl cluster hands the flags over.
        let viaBerthctl = shellMerged(["\(productsDirectory)/berthctl", "cluster", "show", "--cluster", c.name, "--etcd", c.etcdURL] + c.clientArguments)
        #expect(viaBerthctl.status == 0 && viaBerthctl.out.contains(c.name), "\(viaBerthctl.out)")
        let policies = shellMerged(["\(productsDirectory)/berthctl", "policy", "ls", "--cluster", c.name, "--etcd", c.etcdURL] + c.clientArguments)
        #expect(policies.status == 0, "berthctl policy --cluster takes the TLS flags: \(policies.out)")
        let refused = shellMerged(["\(productsDirectory)/berthctl", "policy", "ls", "--cluster", c.name, "--etcd", c.etcdURL])
        #expect(refused.status != 0 && refused.out.contains("is not signed by a CA of the system's"), "\(refused.out)")

        let client = ["--etcd-certfile", "\(a)/node.pem", "--etcd-keyfile", "\(a)/node-key.pem"]
        let cases: [(String, [String], String)] = [
            ("a CA that did not sign etcd's certificate", ["--etcd-cafile", "\(b)/ca.pem"] + client, "is not signed by the CA in \(b)/ca.pem"),
            ("no CA: the system's do not know it", client, "is not signed by a CA of the system's"),
            ("an expired client certificate", ["--etcd-cafile", "\(a)/ca.pem", "--etcd-certfile", "\(a)/old.pem", "--etcd-keyfile", "\(a)/old-key.pem"],
             "--etcd-certfile \(a)/old.pem: the client certificate expired on 2020-02-01"),
            ("a client certificate of another CA", ["--etcd-cafile", "\(a)/ca.pem", "--etcd-certfile", "\(b)/node.pem", "--etcd-keyfile", "\(b)/node-key.pem"],
             "etcd refused the client certificate \(b)/node.pem (--etcd-certfile): it is not signed by a CA etcd trusts"),
            ("no client certificate", ["--etcd-cafile", "\(a)/ca.pem"], "etcd asks for a client certificate"),
            ("a key that is not the certificate's", ["--etcd-cafile", "\(a)/ca.pem", "--etcd-certfile", "\(a)/node.pem", "--etcd-keyfile", "\(b)/node-key.pem"],
             "--etcd-keyfile \(b)/node-key.pem: the key does not belong to the certificate"),
            ("a certificate without its key", ["--etcd-cafile", "\(a)/ca.pem", "--etcd-certfile", "\(a)/node.pem"], "--etcd-certfile needs --etcd-keyfile"),
            ("a CA file that is no certificate", ["--etcd-cafile", "\(a)/node-key.pem"] + client, "--etcd-cafile \(a)/node-key.pem: holds no PEM certificate"),
            ("a missing file", ["--etcd-cafile", "\(a)/none.pem"] + client, "--etcd-cafile \(a)/none.pem: cannot read it"),
        ]
        for (what, flags, expected) in cases {
            let r = show(flags)
            #expect(r.status != 0 && r.out.contains(expected) && !r.out.contains("Usage:"), "\(what): \(r.out)")
            #expect(r.out.split(separator: "\n").count == 1, "\(what): one line: \(r.out)")
        }
        // Plain HTTP to a TLS etcd, TLS flags with http://.
        let plain = show([], etcd: c.etcdURL.replacingOccurrences(of: "https://", with: "http://"))
        #expect(plain.status != 0 && plain.out.contains("speaks TLS: give https://"), "\(plain.out)")
        let mixed = show(["--etcd-cafile", "\(a)/ca.pem"], etcd: c.etcdURL.replacingOccurrences(of: "https://", with: "http://"))
        #expect(mixed.status != 0 && mixed.out.contains("--etcd-cafile is TLS material, but --etcd"), "\(mixed.out)")

        // An address that is not in etcd's certificate: etcd also listens on loopback.
        let loopPort = c.etcdPort + 2
        c.stopEtcd()
        let listening = c.etcdArguments
        c.etcdArguments += ["--listen-client-urls", "\(c.etcdURL),https://127.0.0.1:\(loopPort)"]
        try c.startEtcd()
        let san = show(c.clientArguments, etcd: "https://127.0.0.1:\(loopPort)")
        #expect(san.status != 0 && san.out.contains("is not valid for 127.0.0.1: 127.0.0.1 is not in its subject alternative names")
                && san.out.contains("IP:\(c.base).1"), "\(san.out)")

        // etcd with an expired certificate: the agent's log says so, and it holds on.
        c.stopEtcd()
        c.etcdArguments = listening.map { $0.replacingOccurrences(of: "/etcd.pem", with: "/expired.pem").replacingOccurrences(of: "/etcd-key.pem", with: "/expired-key.pem") }
        try c.startEtcd(healthCheck: false)
        let expired = show(c.clientArguments)
        #expect(expired.status != 0 && expired.out.contains("the certificate of etcd at \(c.etcdURL) expired on 2020-02-01"), "\(expired.out)")
        #expect(c.wait(seconds: 10) { c.log(0).contains("expired on 2020-02-01") } != nil, "\(c.log(0))")
        #expect(c.routes(0).count == 1 && c.routes(1).count == 1, "routes stay while etcd cannot be trusted")
        c.stopEtcd()
        c.etcdArguments = listening
        try c.startEtcd()
    }

    @Test("a client certificate replaced on disk is used without a restart; SIGHUP reads it at once; a half-written one leaves the last good in use")
    func rotation() throws {
        let c = try SimulatedCluster(mode: "host-gw", nodes: 3, security: tlsSecurity)
        defer { c.cleanUp() }
        try c.converge(2)
        let a = "\(c.work)/pki/a", b = "\(c.work)/pki/b"
        // Each node's agent reads its own copy of the files.
        func nodeFiles(_ i: Int) -> (ca: String, cert: String, key: String) {
            ("\(c.work)/node\(i)-ca.pem", "\(c.work)/node\(i).pem", "\(c.work)/node\(i)-key.pem")
        }
        func install(_ i: Int, from dir: String) throws {
            let (ca, cert, key) = nodeFiles(i)
            // As an operator's tool does: new files beside, renamed over.
            for (from, to) in [("\(dir)/ca.pem", ca), ("\(dir)/node-key.pem", key), ("\(dir)/node.pem", cert)] {
                try? FileManager.default.removeItem(atPath: to + ".new")
                try FileManager.default.copyItem(atPath: from, toPath: to + ".new")
                #expect(rename(to + ".new", to) == 0)
            }
        }
        // Restart the two agents on their own copies of CA a's material.
        for i in 0..<2 {
            c.stopAgent(i)
            try install(i, from: a)
            try c.startAgent(i, extra: ["--etcd-cafile", nodeFiles(i).ca, "--etcd-certfile", nodeFiles(i).cert, "--etcd-keyfile", nodeFiles(i).key])
        }
        #expect(c.wait(seconds: 15) { c.routes(0).count == 1 && c.routes(1).count == 1 } != nil, "\(c.log(0))")

        // The operator moves etcd to CA b (its own certificate and the clients' it trusts): the agents refuse it...
        c.stopEtcd()
        c.etcdArguments = c.etcdArguments.map { $0.replacingOccurrences(of: "\(a)/", with: "\(b)/") }
        c.etcdctlArguments = c.etcdctlArguments.map { $0.replacingOccurrences(of: "\(a)/admin", with: "\(b)/node").replacingOccurrences(of: "\(a)/", with: "\(b)/") }
        try c.startEtcd()
        #expect(c.wait(seconds: 15) { c.log(0).contains("is not signed by the CA in \(nodeFiles(0).ca)") } != nil, "\(c.log(0))")
        // ...until their files are replaced by CA b's: picked up from disk, no restart.
        let pid0 = try #require(c.agentPID(0))
        for i in 0..<2 { try install(i, from: b) }
        #expect(c.wait(seconds: 10) { (0..<2).allSatisfy { c.log($0).contains("etcd TLS material changed on disk, now in use") } } != nil,
                "\(c.log(0))\n\(c.log(1))")
        // They work: a third node (with CA b's material) joins, both route to it.
        let rotated = c.clientArguments.map { $0.replacingOccurrences(of: "\(a)/", with: "\(b)/") }
        try c.startAgent(2, extra: rotated)
        #expect(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } } != nil, "routes \((0..<3).map(c.routes)); \(c.log(0))")
        #expect(c.agentPID(0) == pid0 && c.agentState(0).hasPrefix("running"), "the same agent, not restarted")

        // SIGHUP: read again at once.
        kill(pid0, SIGHUP)
        #expect(c.wait(seconds: 5) { c.log(0).contains("SIGHUP: etcd TLS material read again, now in use: 1 CA certificate from \(nodeFiles(0).ca), client certificate \(nodeFiles(0).cert)") } != nil, "\(c.log(0))")
        // A certificate half written (garbage): the last good stays in use, it is said once, the node keeps working.
        let cert1 = nodeFiles(1).cert
        try Data("-----BEGIN CERTIFICATE-----\nnot yet\n".utf8).write(to: URL(fileURLWithPath: cert1))
        #expect(c.wait(seconds: 10) { c.log(1).contains("etcd TLS material changed on disk but does not load, the previous stays in use: --etcd-certfile \(cert1): holds no PEM certificate") } != nil, "\(c.log(1))")
        c.stopAgent(2)
        let release = shellMerged(["\(productsDirectory)/berth-agent", "release", "n2", "--force", "--cluster", c.name, "--etcd", c.etcdURL]
                                  + rotated)
        #expect(release.status == 0, "\(release.out)")
        #expect(c.wait(seconds: 10) { c.routes(1).count == 1 } != nil, "node 1 still follows etcd with its last good material: \(c.routes(1)); \(c.log(1))")
        #expect(c.log(1).components(separatedBy: "does not load").count == 2, "said once: \(c.log(1))")
    }

    @Test("etcd users: an agent with readwrite on the prefix works (tokens renewed as they lapse); wrong password, read-only user, no user fail saying so; settings from the defaults file")
    func users() throws {
        let c = try SimulatedCluster(mode: "vxlan", nodes: 2) { work, _ in
            try Data("agentpw\n".utf8).write(to: URL(fileURLWithPath: "\(work)/agent.password"))
            var s = SimulatedCluster.Security()
            // Tokens that lapse after a second unused: the agent must renew them.
            s.etcdArguments = ["--auth-token-ttl", "1"]
            s.clientArguments = ["--etcd-username", "agent", "--etcd-password-file", "\(work)/agent.password"]
            s.setUp = { c in
                for args in [["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"],
                             ["role", "add", "berth"], ["role", "grant-permission", "berth", "--prefix=true", "readwrite", "/berth/"],
                             ["user", "add", "agent:agentpw"], ["user", "grant-role", "agent", "berth"],
                             ["role", "add", "reader"], ["role", "grant-permission", "reader", "--prefix=true", "read", "/berth/"],
                             ["user", "add", "ro:ropw"], ["user", "grant-role", "ro", "reader"], ["auth", "enable"]] {
                    let r = c.etcdctl(args)
                    try #require(r.status == 0, "etcdctl \(args): \(r.out)")
                }
                c.etcdctlArguments = ["--user", "root:rootpw"]
            }
            return s
        }
        defer { c.cleanUp() }
        try c.converge(2)
        #expect(c.log(0).contains("etcd user agent (--etcd-username)"), "\(c.log(0))")
        // Past several token lifetimes, a change still arrives: the watch, leases and the probe renew tokens.
        usleep(3_000_000)
        c.addNode(2)
        try c.startAgent(2)
        #expect(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } } != nil, "routes \((0..<3).map(c.routes)); \(c.log(0))")
        #expect(!c.log(0).contains("invalid auth token"), "\(c.log(0))")

        func show(_ flags: [String], environment: [String: String]? = nil) -> (status: Int32, out: String) {
            shellMerged(["\(productsDirectory)/berth-agent", "show", "--cluster", c.name] + flags, environment: environment)
        }
        let wrong = show(["--etcd", c.etcdURL, "--etcd-username", "agent", "--etcd-password", "nope"])
        #expect(wrong.status != 0 && wrong.out.contains("user agent was refused: wrong password or no such user (--etcd-username, --etcd-password)"), "\(wrong.out)")
        let none = show(["--etcd", c.etcdURL])
        #expect(none.status != 0 && none.out.contains("etcd has authentication on: give a user"), "\(none.out)")
        let readOnly = shellMerged(["\(productsDirectory)/berth-agent", "init", "--cluster", "other", "--network", "10.250.0.0/16",
                                    "--etcd", c.etcdURL, "--etcd-username", "ro", "--etcd-password", "ropw"])
        #expect(readOnly.status != 0 && readOnly.out.contains("permission denied on /berth/clusters/other/config for user ro"), "\(readOnly.out)")
        let reads = show(["--etcd", c.etcdURL, "--etcd-username", "ro", "--etcd-password", "ropw"])
        #expect(reads.status == 0 && reads.out.contains(c.name), "\(reads.out)")
        let noPassword = show(["--etcd", c.etcdURL, "--etcd-username", "agent"])
        #expect(noPassword.status != 0 && noPassword.out.contains("--etcd-username needs a password"), "\(noPassword.out)")

        // An agent running as the read-only user says why it cannot hold a block.
        c.stopAgent(2)
        try Data("ropw".utf8).write(to: URL(fileURLWithPath: "\(c.work)/ro.password"))
        try c.startAgent(2, extra: ["--etcd-username", "ro", "--etcd-password-file", "\(c.work)/ro.password"])
        #expect(c.wait(seconds: 10) { c.log(2).contains("for user ro: etcd RBAC gives its roles no write permission") } != nil, "\(c.log(2))")
        c.stopAgent(2)

        // The defaults file (as /etc/default/berth-agent), through berthctl; a flag wins over it.
        let defaults = "\(c.work)/berth-agent.defaults"
        try Data("""
            # etcd for berth-agent
            export BERTH_ETCD_ENDPOINT="\(c.etcdURL)"
            BERTH_ETCD_USERNAME=agent
            BERTH_ETCD_PASSWORD='agentpw'
            OTHER_SETTING=kept for others

            """.utf8).write(to: URL(fileURLWithPath: defaults))
        var environment = ProcessInfo.processInfo.environment
        environment["BERTH_AGENT_DEFAULTS"] = defaults
        let fromFile = shellMerged(["\(productsDirectory)/berthctl", "cluster", "show", "--cluster", c.name], environment: environment)
        #expect(fromFile.status == 0 && fromFile.out.contains(c.name), "\(fromFile.out)")
        let flagWins = show(["--etcd-password", "nope"], environment: environment)
        #expect(flagWins.status != 0 && flagWins.out.contains("wrong password"), "\(flagWins.out)")
        var fromEnvironment = environment
        fromEnvironment["BERTH_ETCD_PASSWORD"] = "nope"
        let environmentWins = show([], environment: fromEnvironment)
        #expect(environmentWins.status != 0 && environmentWins.out.contains("(--etcd-username") == false
                && environmentWins.out.contains("BERTH_ETCD_PASSWORD in the environment"), "\(environmentWins.out)")
        try Data("BERTH_ETCD_ENDPOINT=\(c.etcdURL)\nBERTH_ETCD_USER=agent\n".utf8).write(to: URL(fileURLWithPath: defaults))
        let badKey = show([], environment: environment)
        #expect(badKey.status != 0 && badKey.out.contains("\(defaults):2: BERTH_ETCD_USER is not a setting"), "\(badKey.out)")
    }
}
