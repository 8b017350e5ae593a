// The same as berth.swift with FoundationEssentials' JSONDecoder and
// JSONEncoder (scripts/bench_json.sh).
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

struct Config: Codable {
    struct IPAM: Codable {
        var type: String
        var subnet: String?
        var dataDir: String?
    }
    var cniVersion: String?
    var name: String
    var type: String
    var bridge: String?
    var isGateway: Bool?
    var ipMasq: Bool?
    var mtu: Int?
    var ipam: IPAM?
}

@main
struct Probe {
    static func main() {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(0, &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        guard let config = try? JSONDecoder().decode(Config.self, from: Data(bytes)), let subnet = config.ipam?.subnet,
              let out = try? JSONEncoder().encode(config) else { exit(1) }
        print(config.name, subnet, out.count)
    }
}
