// libFuzzer target for the decoders every `berth` process runs on input it
// does not control: the network config (JSON, the bridge fields, the IPAM
// section), `prevResult` (shaped like the result of a delegated IPAM plugin,
// which the bridge plugin turns into an address plan), and `CNI_ARGS`. Built by scripts/fuzz.sh together
// with the sources of BerthCNI and BerthIPAM's IPAMConfig as one module.
//
// Besides "no crash, no hang, no memory error", it checks two properties:
// printed JSON parses back to the same value, and a decoded result printed
// in any supported version decodes again.

@_cdecl("LLVMFuzzerTestOneInput")
public func berthFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)

    // CNI_ARGS: the input as the variable's value.
    let cniArgs = (try? CNIEnvironment.parseArgs(text)) ?? []

    // JSON: printing and parsing again gives the same value.
    guard let json = try? JSON.parse(bytes) else { return 0 }
    let again = try? JSON.parse(Array(json.serialized().utf8))
    precondition(again == json, "JSON did not survive printing and parsing again")

    // The config: the bridge plugin's fields, then the IPAM section.
    guard let (network, reader) = try? NetworkConfig.decode(bytes) else { return 0 }
    _ = try? BridgeConfig(network: network, reader: reader, cniArgs: cniArgs)
    if let ipam = try? IPAMConfig(network: network, reader: reader, cniArgs: cniArgs) {
        for set in ipam.rangeSets {
            var looked = 0
            for _ in set.candidates(after: ipam.requested.first) {
                looked += 1
                if looked == 4 { break }
            }
        }
    }

    // prevResult: decoded, planned as the bridge plugin plans an IPAM result,
    // printed in every version, decoded again.
    if let previous = network.prevResult, let result = try? CNIResult(json: previous, field: "prevResult") {
        _ = AddressPlan(ipamResult: result, isGateway: true, isDefaultGateway: true, interfaceIndex: 2)
        for version in CNIVersion.supported {
            let printed = result.json(version: version)
            _ = try? CNIResult(json: printed, field: "prevResult")
        }
    }
    return 0
}
