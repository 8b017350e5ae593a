import Foundation
import Testing
@testable import BerthCNI
@testable import BerthPlugin
import BerthIPAM
import BerthJSON

/// The conflists shipped in conf/ must be valid for the plugins they name.
@Suite("Example configs in conf/")
struct ExampleConfigTests {
    static let confDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("conf")

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: confDirectory.path)) ?? []).filter { $0.hasSuffix(".conflist") }.sorted()
    }

    @Test("there are example conflists to check")
    func present() {
        #expect(ExampleConfigTests.files.count >= 3)
    }

    @Test("each berth plugin entry parses as libcni would hand it over", arguments: ExampleConfigTests.files)
    func parses(file: String) throws {
        let data = try Data(contentsOf: ExampleConfigTests.confDirectory.appendingPathComponent(file))
        let list = try #require(try JSON.parse(Array(data)).objectValue)
        let plugins = try #require(list["plugins"]?.arrayValue)
        var berthEntries = 0
        for plugin in plugins {
            guard var object = plugin.objectValue, object["type"] == .string("berth") else { continue }
            object["name"] = list["name"]
            object["cniVersion"] = list["cniVersion"]
            let (network, reader) = try NetworkConfig.decode(Array(JSON.object(object).serialized().utf8))
            let config = try BridgeConfig(network: network, reader: reader)
            #expect(config.network.ipamType != nil)
            if config.network.ipamType == "berth-ipam" {
                // A cluster node's block file, as berth-agent writes it (a dual-stack node's: both blocks).
                let block = Array(#"{"cluster":"pods","network":"10.244.0.0/16","block":"10.244.7.0/24","ipv6Network":"fd42::/48","ipv6Block":"fd42:0:0:7::/64","mtu":1500}"#.utf8)
                let ipam = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in block })
                #expect(ipam.rangeSets.count == (file.contains("dualstack") ? 2 : 1), "\(file)")
            }
            berthEntries += 1
        }
        #expect(berthEntries == 1)
    }
}
