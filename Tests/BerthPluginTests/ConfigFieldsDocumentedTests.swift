import Foundation
import Testing
import BerthIPAM
import BerthPlugin

/// The README's tables of config fields are the one source of the plugins'
/// manual pages (scripts/plugin-manual.py); these tests keep them equal to
/// the fields the code reads.
@Suite("config fields documented: README tables, manual pages, code")
struct ConfigFieldsDocumentedTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The first column of the `| field |` table under `heading`.
    static func documentedFields(under heading: String) throws -> [String] {
        let readme = try String(contentsOfFile: "\(repository)/README.md", encoding: .utf8)
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: heading), "README has no \(heading)")
        var fields: [String] = [], inTable = false
        for line in lines[(start + 1)...] {
            if line.hasPrefix("## ") { break }
            if line.hasPrefix("| field |") { inTable = true; continue }
            if inTable, line.hasPrefix("| `") {
                fields.append(String(line.dropFirst(3).prefix { $0 != "`" }))
            } else if inTable, !fields.isEmpty, !line.hasPrefix("|") {
                break
            }
        }
        return fields
    }

    @Test("every field berth reads is in the README's Configuration table, and the table names no other")
    func bridgeFields() throws {
        let documented = try Self.documentedFields(under: "## Configuration")
        // The CNI fields every plugin config has (args, runtimeConfig, capabilities) are the spec's, not berth's.
        let read = Set(BridgeConfig.fields).subtracting(["args", "runtimeConfig", "capabilities"]).union(["ipam"])
        #expect(Set(documented) == read, "only in the README: \(Set(documented).subtracting(read).sorted()); not in it: \(read.subtracting(documented).sorted())")
        #expect(documented.count == Set(documented).count, "a field listed twice: \(documented)")
    }

    @Test("every field berth-ipam reads is in the README's berth-ipam table, and the table names no other")
    func ipamFields() throws {
        let documented = try Self.documentedFields(under: "## berth-ipam")
        #expect(Set(documented) == Set(IPAMConfig.fields), "only in the README: \(Set(documented).subtracting(IPAMConfig.fields).sorted()); not in it: \(Set(IPAMConfig.fields).subtracting(documented).sorted())")
    }

    @Test("scripts/plugin-manual.py writes berth(8) and berth-ipam(8) with every documented field")
    func manualPages() throws {
        let out = NSTemporaryDirectory() + "berthtest-man-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "\(Self.repository)/scripts/plugin-manual.py", out, "--version", "test", "--date", "December 6, 2026"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        for (page, heading) in [("berth", "## Configuration"), ("berth-ipam", "## berth-ipam")] {
            let text = try String(contentsOfFile: "\(out)/\(page).8", encoding: .utf8)
            #expect(text.contains(".Dt \(page.uppercased()) 8"))
            for field in try Self.documentedFields(under: heading) {
                #expect(text.contains(".It Sy \(field) Pq"), "\(page).8 lacks \(field)")
            }
        }
    }
}
