import Foundation
import Testing
@testable import BerthCluster

@Suite("etcd access: flags, environment, defaults file")
struct EtcdAccessTests {
    let path = "/etc/default/berth-agent"

    @Test("a flag wins over the environment, which wins over the defaults file; each origin is kept for messages")
    func precedence() throws {
        let defaults = """
            # comment
            export BERTH_ETCD_ENDPOINT="https://10.0.0.5:2379"
            BERTH_ETCD_CAFILE='/etc/berth/ca.pem'
            BERTH_ETCD_CERTFILE=/etc/berth/node.pem
            BERTH_ETCD_KEYFILE=/etc/berth/node-key.pem
            BERTH_ETCD_USERNAME=agent
            BERTH_ETCD_PASSWORD=secret
            OTHER=ignored
            """
        let fileOnly = try EtcdAccess.resolve(flags: [:], environment: [:], defaults: defaults, defaultsPath: path)
        #expect(fileOnly.endpoint == "https://10.0.0.5:2379" && fileOnly.caFile == "/etc/berth/ca.pem" && fileOnly.user == "agent"
                && fileOnly.password == "secret" && fileOnly.keyFile == "/etc/berth/node-key.pem")
        #expect(fileOnly.origin(.caFile) == "BERTH_ETCD_CAFILE at /etc/default/berth-agent:3")
        let mixed = try EtcdAccess.resolve(flags: [.caFile: "/flag/ca.pem"], environment: ["BERTH_ETCD_USERNAME": "env-user"],
                                           defaults: defaults, defaultsPath: path)
        #expect(mixed.caFile == "/flag/ca.pem" && mixed.origin(.caFile) == "--etcd-cafile")
        #expect(mixed.user == "env-user" && mixed.origin(.user) == "BERTH_ETCD_USERNAME in the environment")
        #expect(mixed.certFile == "/etc/berth/node.pem")
        let none = try EtcdAccess.resolve(flags: [:], environment: [:], defaults: nil, defaultsPath: path)
        #expect(none == EtcdAccess(endpoint: EtcdAccess.defaultEndpoint) && !none.usesTLS)
    }

    @Test("inconsistent settings are refused naming where they came from")
    func refusals() {
        func problem(_ flags: [EtcdAccess.Setting: String], environment: [String: String] = [:], defaults: String? = nil) -> String {
            do {
                _ = try EtcdAccess.resolve(flags: flags, environment: environment, defaults: defaults, defaultsPath: path)
                return "accepted"
            } catch { return error.description }
        }
        #expect(problem([.caFile: "/ca.pem"]) == "--etcd-cafile is TLS material, but --etcd http://127.0.0.1:2379 is plain http: use https://")
        #expect(problem([.endpoint: "https://e:2379", .certFile: "/c.pem"]).hasPrefix("--etcd-certfile needs --etcd-keyfile (BERTH_ETCD_KEYFILE) too"))
        #expect(problem([.endpoint: "https://e:2379"], environment: ["BERTH_ETCD_KEYFILE": "/k.pem"])
                .hasPrefix("BERTH_ETCD_KEYFILE in the environment needs --etcd-certfile"))
        #expect(problem([.user: "agent"]).hasPrefix("--etcd-username needs a password"))
        #expect(problem([.password: "x"]) == "--etcd-password is given without a user (--etcd-username)")
        #expect(problem([.user: "a", .password: "x", .passwordFile: "/p"]) == "--etcd-password and --etcd-password-file: give one of them")
        #expect(problem([.user: "a", .passwordFile: "/nonexistent/berth-password"]) == "--etcd-password-file /nonexistent/berth-password: cannot read it")
        #expect(problem([.endpoint: "etcd:2379"]).hasPrefix("--etcd etcd:2379: expected http://ADDRESS:PORT"))
        #expect(problem([.endpoint: "http://e:2379/v3"]).hasPrefix("--etcd http://e:2379/v3: expected"))
        #expect(problem([:], defaults: "BERTH_ETCD_ENDPOINT=ftp://x:1\n").hasPrefix("BERTH_ETCD_ENDPOINT at /etc/default/berth-agent:1 ftp://x:1"))
        #expect(problem([:], defaults: "# ok\nBERTH_ETCD_CA=/x\n").hasPrefix("/etc/default/berth-agent:2: BERTH_ETCD_CA is not a setting"))
        #expect(problem([:], defaults: "just words\n") == "/etc/default/berth-agent:1: expected KEY=VALUE, not just words")
        #expect(problem([:], defaults: "BERTH_ETCD_USERNAME=\"agent\n") == "/etc/default/berth-agent:1: BERTH_ETCD_USERNAME: the quote \" is not closed")
    }

    @Test("a password file: its trailing newline is not part of the password; an empty one is refused")
    func passwordFile() throws {
        let file = NSTemporaryDirectory() + "berth-password-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data("s3cret\n".utf8).write(to: URL(fileURLWithPath: file))
        let access = try EtcdAccess.resolve(flags: [.user: "agent"], environment: ["BERTH_ETCD_PASSWORD_FILE": file], defaults: nil, defaultsPath: path)
        #expect(access.password == "s3cret" && access.origin(.password) == "BERTH_ETCD_PASSWORD_FILE in the environment \(file)")
        try Data("\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: EtcdAccessError.self) {
            try EtcdAccess.resolve(flags: [.user: "agent", .passwordFile: file], environment: [:], defaults: nil, defaultsPath: path)
        }
    }

    @Test("etcd's refusals said for the person who configured the client")
    func explainedMessages() async {
        let client = EtcdClient(endpoint: "http://127.0.0.1:1")
        #expect(client.explain(message: "etcdserver: user name is empty", path: "/v3/kv/range", key: "/berth/x").hasPrefix("etcd has authentication on: give a user"))
        #expect(client.explain(message: "etcdserver: permission denied", path: "/v3/kv/put", key: "/berth/x")
                == "permission denied on /berth/x: etcd has authentication on; give a user (--etcd-username, --etcd-password)")
        #expect(client.explain(message: "etcdserver: something new", path: "/v3/kv/put", key: nil) == "etcdserver: something new")
        await client.shutdown()
    }
}

extension EtcdAccessTests {
    @Test("the example defaults file in conf/ is one the agent reads")
    func exampleDefaults() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("conf/berth-agent.default").path
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let access = try EtcdAccess.resolve(flags: [:], environment: [:], defaults: text, defaultsPath: file)
        #expect(access.usesTLS && access.caFile == "/etc/berth/pki/ca.pem" && access.keyFile == "/etc/berth/pki/node-key.pem")
        #expect(access.origin(.endpoint).hasPrefix("BERTH_ETCD_ENDPOINT at \(file):"))
    }
}
