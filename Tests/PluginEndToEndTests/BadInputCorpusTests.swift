import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthTestSupport

/// One case of Corpus/bad-input.json: stdin, environment changes, an optional
/// setup, and the CNI error it must produce.
struct BadInputCase: CustomStringConvertible, Sendable {
    let name: String
    let code: Int
    let mentions: [String]
    let stdin: String
    let env: [String: String?]
    let setup: String?
    var description: String { name }

    static let all: [BadInputCase] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus/bad-input.json")
        guard let data = try? Data(contentsOf: url), let json = try? JSON.parse(Array(data)), let items = json.arrayValue else { return [] }
        return items.compactMap { item in
            guard let name = item["name"]?.stringValue, let code = item["code"]?.intValue,
                  let stdin = item["stdin"]?.stringValue else { return nil }
            var env: [String: String?] = [:]
            for (k, v) in item["env"]?.objectValue?.entries ?? [] { env[k] = v.stringValue }
            return BadInputCase(name: name, code: code, mentions: item["mentions"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                                stdin: stdin, env: env, setup: item["setup"]?.stringValue)
        }
    }()
}

/// Everything a bad input could have touched and must leave as it was: the
/// test's bridge (whether it exists, its addresses, its ports), the links and
/// addresses of the test's namespace, the nftables rules and set elements
/// naming the test's network, bridge or subnet, and the IPAM store. (Host-wide
/// lists would also see the other tests running side by side.)
func machineState(net: TestNetwork, netns: String) -> String {
    func lines(_ text: String, _ fields: Int) -> String {
        text.split(separator: "\n").map { $0.split(separator: " ").prefix(fields).joined(separator: " ") }.joined(separator: "\n")
    }
    let bridge = lines(shell(["ip", "-o", "link", "show", "dev", net.bridge]).out, 3)
        + "\n" + lines(shell(["ip", "-o", "addr", "show", "dev", net.bridge]).out, 4)
        + "\n" + lines(shell(["ip", "-o", "link", "show", "master", net.bridge]).out, 2)
    let inside = lines(net.inNamespace(netns, ["ip", "-o", "link"]).out, 3) + "\n" + lines(net.inNamespace(netns, ["ip", "-o", "addr"]).out, 4)
    let rules = shell(["nft", "list", "ruleset"]).out.split(separator: "\n")
        .filter { $0.contains(net.name) || $0.contains(net.bridge) || $0.contains("\(net.subnetBase).") }
        .joined(separator: "\n")
    var files: [String] = []
    if let walker = FileManager.default.enumerator(atPath: net.dataDir) {
        for case let path as String in walker where !path.contains("scratch/") {
            let contents = (try? String(contentsOfFile: "\(net.dataDir)/\(path)", encoding: .utf8)) ?? "<dir>"
            files.append("\(path)=\(contents)")
        }
    }
    return [bridge, inside, rules, files.sorted().joined(separator: "\n")].joined(separator: "\n---\n")
}

extension FirewallTouchingTests {
@Suite("bad input corpus", .ownThreads)
struct BadInputCorpusTests {
    @Test("the corpus has at least 60 cases")
    func size() {
        #expect(BadInputCase.all.count >= 60)
    }

    @Test("each bad input is refused with the right CNI error naming the problem, and changes nothing",
          arguments: BadInputCase.all)
    func refused(_ c: BadInputCase) throws {
        let net = TestNetwork()
        let scratch = NSTemporaryDirectory() + "berthtest-corpus-\(net.id)"
        try FileManager.default.createDirectory(atPath: "\(scratch)/dir", withIntermediateDirectories: true)
        touchFile("\(scratch)/file")
        defer {
            net.cleanUp()
            try? FileManager.default.removeItem(atPath: scratch)
        }
        let netns = net.makeNamespace()
        func fill(_ text: String) -> String {
            text.replacingOccurrences(of: "$NETWORK", with: net.name).replacingOccurrences(of: "$BRIDGE", with: net.bridge)
                .replacingOccurrences(of: "$DATADIR", with: net.dataDir).replacingOccurrences(of: "$SUBNET", with: net.subnetBase)
                .replacingOccurrences(of: "$NETNSPATH", with: netns).replacingOccurrences(of: "$FILE", with: "\(scratch)/file")
                .replacingOccurrences(of: "$DIR", with: "\(scratch)/dir").replacingOccurrences(of: "$HOSTNS", with: "/proc/\(getpid())/ns/net")
        }
        let base = fill(#"{"cniVersion":"1.0.0","name":"$NETWORK","type":"berth","bridge":"$BRIDGE","ipam":{"type":"berth-ipam","dataDir":"$DATADIR","subnet":"$SUBNET.0/24"}}"#)
        var stdin: Data
        switch c.stdin {
        case "$BADUTF8": stdin = Data(#"{"cniVersion":"1.0.0","name":""#.utf8) + Data([0xFF, 0xFE]) + Data(#""}"#.utf8)
        case "$DEEP": stdin = Data((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        case "$BIG":
            stdin = Data(fill(#"{"cniVersion":"1.0.0","name":"$NETWORK","type":"berth","padding":""#).utf8)
                + Data(repeating: UInt8(ascii: "x"), count: 5 << 20) + Data(#"","mtu":"x"}"#.utf8)
        default: stdin = Data(fill(c.stdin).utf8)
        }

        switch c.setup {
        case "existing-ifname":
            net.inNamespace(netns, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
        case "bridge-address":
            shell(["ip", "link", "add", net.bridge, "type", "bridge"])
            shell(["ip", "addr", "add", "\(net.subnetBase).1/24", "dev", net.bridge])
        case "exhausted":
            let holder = net.makeNamespace()
            let r = net.run("ADD", netns: holder, containerID: "holder", config: String(decoding: stdin, as: UTF8.self))
            try #require(r.status == 0, "setup: \(r.stdout)")
        case "attached":
            let r = net.run("ADD", netns: netns, containerID: "corpus", config: base)
            try #require(r.status == 0, "setup: \(r.stdout)")
        default:
            break
        }

        var env = [
            "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "corpus", "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
            "CNI_PATH": "\(productsDirectory):\(referencePluginDirectory)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        for (k, v) in c.env { env[k] = v.map(fill) }

        let before = machineState(net: net, netns: netns)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "\(productsDirectory)/berth")
        p.environment = env.compactMapValues { $0 }
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        try p.run()
        let payload = stdin
        let writer = Thread { input.fileHandleForWriting.write(payload); try? input.fileHandleForWriting.close() }
        writer.start()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let after = machineState(net: net, netns: netns)

        #expect(p.terminationStatus != 0)
        let json = try #require(try? JSON.parse(Array(out)), "stdout is not JSON: \(String(decoding: out, as: UTF8.self))")
        #expect(json["code"]?.intValue == c.code, "\(json.serialized())")
        let message = (json["msg"]?.stringValue ?? "") + " " + (json["details"]?.stringValue ?? "")
        for word in c.mentions { #expect(message.contains(fill(word)), "\(message)") }
        #expect(json["cniVersion"]?.stringValue != nil)
        #expect(before == after, "the machine changed")
    }
}
}
