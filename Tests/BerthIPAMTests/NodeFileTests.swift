import Testing
import BerthCNI
import BerthNet
@testable import BerthIPAM

@Suite("the node file berth-ipam reads (written by berth-agent)")
struct NodeFileTests {
    @Test("berth-ipam reads a node's block from its subnetFile: missing is 11 (50 for STATUS), unreadable is 7")
    func subnetFile() throws {
        let text = #"{"cniVersion":"1.1.0","name":"pods","type":"berth","ipam":{"type":"berth-ipam","ranges":[[{"subnetFile":"/run/berth/cluster/pods.json"}]]}}"#
        let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
        let ipam = try IPAMConfig(network: network, reader: reader, cniArgs: [],
                                  readFile: { _ in Array(#"{"block":"10.244.7.0/24"}"#.utf8) })
        #expect(ipam.rangeSets[0].ranges[0].subnet.description == "10.244.7.0/24")
        #expect(ipam.rangeSets[0].gatewayPrefix?.description == "10.244.7.1/24")
        do {
            _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in nil })
            Issue.record("a missing subnet file was accepted")
        } catch {
            #expect(error.code == 11 && error.msg.contains("no address block yet"), "\(error)")
            #expect(error.forStatus(.status).code == 50 && error.forStatus(.add).code == 11)
        }
        do {
            _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array("garbage".utf8) })
            Issue.record("an unreadable subnet file was accepted")
        } catch {
            #expect(error.code == 7 && error.msg.contains("subnetFile"), "\(error)")
        }
    }

    @Test("the node file's MTU reaches berth-ipam's config (the plugin takes it when its config sets none); a bad MTU is error 7")
    func nodeFileMTU() throws {
        let text = #"{"cniVersion":"1.1.0","name":"pods","type":"berth","ipam":{"type":"berth-ipam","ranges":[[{"subnetFile":"/run/berth/cluster/pods.json"}]]}}"#
        let (network, reader) = try NetworkConfig.decode(Array(text.utf8))
        let file = NodeFile(cluster: "pods", network: IPPrefix("10.244.0.0/16"), block: IPPrefix("10.244.7.0/24")!, mtu: 1450)
        #expect(try NodeFile.parse(file.bytes).get() == file)
        let ipam = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in file.bytes })
        #expect(ipam.linkMTU == 1450)
        let plain = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array(#"{"block":"10.244.7.0/24"}"#.utf8) })
        #expect(plain.linkMTU == nil)
        for bad in [#"{"block":"10.244.7.0/24","mtu":"big"}"#, #"{"block":"10.244.7.0/24","mtu":20}"#] {
            do {
                _ = try IPAMConfig(network: network, reader: reader, cniArgs: [], readFile: { _ in Array(bad.utf8) })
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.code == 7 && error.msg.contains("mtu"), "\(error)")
            }
        }
    }
}
