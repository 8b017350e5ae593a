// Reads a CNI network config on stdin with BerthJSON and prints two of its
// fields: the work `berth` does with its input, alone (scripts/bench_json.sh).
#if canImport(Glibc)
import Glibc
#endif

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
        guard let config = try? JSON.parse(bytes), let name = config["name"]?.stringValue,
              let subnet = config["ipam"]?["subnet"]?.stringValue else { exit(1) }
        print(name, subnet, config.serialized().utf8.count)
    }
}
