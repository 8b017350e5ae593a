import Foundation
import Testing
@testable import BerthCNI
@testable import BerthIPAM
import BerthJSON

@Suite("berthctl ipam ls")
struct BerthctlIPAMTests {
    static let berthctl = URL(fileURLWithPath: berthIPAMPath).deletingLastPathComponent().appendingPathComponent("berthctl").path

    func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: BerthctlIPAMTests.berthctl)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test("lists a network's allocations as a table and as JSON")
    func list() throws {
        let dir = TemporaryDataDir()
        let a = AddressAllocator(config: try ipamConfig(#"{"type":"berth-ipam","dataDir":"\#(dir.path)","ranges":[[{"subnet":"10.8.0.0/24"}],[{"subnet":"fd08::/64"}]]}"#))
        _ = try a.add(key("web"))
        _ = try a.add(key("db", "net1"))

        let table = try run(["ipam", "ls", "net1", "--data-dir", dir.path])
        #expect(table.status == 0)
        let lines = table.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("ADDRESS") == true)
        #expect(lines.contains { $0.hasPrefix("10.8.0.2 ") && $0.contains("web") && $0.hasSuffix("eth0") })
        #expect(lines.contains { $0.hasPrefix("fd08::3 ") && $0.contains("db") && $0.hasSuffix("net1") })

        let json = try run(["ipam", "ls", "net1", "--data-dir", dir.path, "--json"])
        let parsed = try JSON.parse(json.out)
        let items = try #require(parsed["allocations"]?.arrayValue)
        #expect(items.count == 4)
        #expect(items.contains { $0["address"] == .string("10.8.0.3") && $0["containerID"] == .string("db") })
    }

    @Test("an unknown network is one line naming it and the directory, and creates nothing")
    func unknown() throws {
        let dir = TemporaryDataDir()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let r = try run(["ipam", "ls", "nosuch", "--data-dir", dir.path])
        #expect(r.status != 0)
        #expect(r.err.split(separator: "\n").count == 1)
        #expect(r.err.contains("nosuch") && r.err.contains(dir.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
