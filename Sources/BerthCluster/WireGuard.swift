import BerthNet
import BerthNetlink
import BerthSystem
import CBerthCrypto
import Foundation

/// A WireGuard key pair (Curve25519), as WireGuard writes keys: 32 bytes in
/// base64 in files and records, hex on the UAPI socket.
public struct WireGuardKey: Equatable, Sendable {
    public let privateKey: [UInt8]
    public let publicKey: [UInt8]

    public init(privateKey: [UInt8]) throws(ClusterError) {
        guard privateKey.count == 32 else { throw ClusterError("a WireGuard private key is 32 bytes") }
        var publicKey = [UInt8](repeating: 0, count: 32)
        guard berth_x25519_public(privateKey, &publicKey) == 0 else {
            throw ClusterError("libcrypto refused a WireGuard private key (X25519)")
        }
        self.privateKey = privateKey
        self.publicKey = publicKey
    }

    /// A new key from the system's random source; throws only when libcrypto has no randomness to give.
    public static func generate() throws(ClusterError) -> WireGuardKey {
        var privateKey = [UInt8](repeating: 0, count: 32)
        guard berth_x25519_generate(&privateKey) == 0 else { throw ClusterError("libcrypto could not make a WireGuard key (no random bytes)") }
        return try WireGuardKey(privateKey: privateKey)
    }

    public var publicBase64: String { Data(publicKey).base64EncodedString() }

    /// The 32 bytes of a key written in base64 (a record's, a key file's); nil when it is not one.
    public static func bytes(base64 text: String) -> [UInt8]? {
        guard text.count == 44, let data = Data(base64Encoded: text), data.count == 32 else { return nil }
        return Array(data)
    }

    /// The node's key from `path` (base64, as `wg genkey` writes it), or a
    /// new one written there first (0600, its directory 0700), so that a
    /// restarted agent keeps its key and no peer has to learn a new one.
    public static func loadOrCreate(_ path: String) throws(ClusterError) -> WireGuardKey {
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let bytes = bytes(base64: text) else { throw ClusterError("\(path) holds no WireGuard private key (44 characters of base64)") }
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
                throw ClusterError("\(path): the WireGuard private key is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it")
            }
            return try WireGuardKey(privateKey: bytes)
        }
        let key = try generate()
        // Written once beside and renamed over (0600, its directory 0700), as the project's other state files.
        let directory = (path as NSString).deletingLastPathComponent
        do {
            let dir = try DirectoryHandle(path: directory, create: true)
            let scratch = try dir.writeScratch(Array((Data(key.privateKey).base64EncodedString() + "\n").utf8))
            try dir.publish(scratch, as: (path as NSString).lastPathComponent, in: dir)
        } catch {
            throw ClusterError("cannot write the WireGuard key \(path): \(error)")
        }
        return key
    }
}

/// One peer as a WireGuard device holds it.
struct WireGuardPeer: Equatable {
    var publicKey: [UInt8]
    var endpoint: String?
    var allowedIPs: [String]
}

/// wireguard-go's control socket (`/var/run/wireguard/NAME.sock`), speaking
/// WireGuard's cross-platform UAPI: `get=1` and `set=1` with `key=value` lines.
struct WireGuardUAPI {
    let path: String

    static func socketPath(_ device: String) -> String { "/var/run/wireguard/\(device).sock" }

    /// Sends one request, returns the answer's lines (without the `errno=0`); throws on a nonzero errno.
    func exchange(_ request: String) throws(ClusterError) -> [String] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClusterError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw ClusterError("\(path): too long for a socket path") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw ClusterError("cannot reach wireguard-go at \(path): \(String(cString: strerror(errno)))") }
        let out = Array(request.utf8)
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ClusterError("writing to \(path): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !(answer.count >= 2 && answer.suffix(2) == [10, 10]) {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { throw ClusterError("reading from \(path): \(n == 0 ? "closed" : String(cString: strerror(errno)))") }
            answer += buffer[0..<n]
        }
        let lines = String(decoding: answer, as: UTF8.self).split(separator: "\n").map(String.init)
        guard let last = lines.last, last.hasPrefix("errno=") else { throw ClusterError("\(path): no errno in the answer") }
        guard last == "errno=0" else { throw ClusterError("wireguard-go at \(path) refused the change (\(last))") }
        return Array(lines.dropLast())
    }

    /// The device's peers.
    func peers() throws(ClusterError) -> [WireGuardPeer] {
        var out: [WireGuardPeer] = []
        for line in try exchange("get=1\n\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq], value = String(line[line.index(after: eq)...])
            switch key {
            case "public_key":
                out.append(WireGuardPeer(publicKey: hexBytes(value) ?? [], endpoint: nil, allowedIPs: []))
            case "endpoint" where !out.isEmpty: out[out.count - 1].endpoint = value
            case "allowed_ip" where !out.isEmpty: out[out.count - 1].allowedIPs.append(value)
            default: break
            }
        }
        return out
    }
}

/// Bytes from lower- or upper-case hex; nil when it is not hex.
func hexBytes(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(chars.count / 2)
    for i in stride(from: 0, to: chars.count, by: 2) {
        guard let byte = UInt8(String(decoding: chars[i...i + 1], as: UTF8.self), radix: 16) else { return nil }
        out.append(byte)
    }
    return out
}

/// wireguard: one WireGuard device per node (wireguard-go, userspace, where
/// the kernel has no WireGuard module: this machine's case), its key kept in
/// the agent's state directory, its public key and port published in the
/// node record; per peer a WireGuard peer (endpoint ADDRESS:PORT, allowed
/// IPs = its block) and a route `BLOCK via BLOCK-FIRST dev DEVICE onlink`,
/// both kept by difference. Pods get the underlay's MTU less 60 (WireGuard
/// over IPv4: 20 IP + 8 UDP + 32 WireGuard).
final class WireGuardBackend: NodeBackend {
    let programmer: PeerProgrammer
    let device: LinkInfo
    let key: WireGuardKey
    let port: Int
    let uapi: WireGuardUAPI
    let podMTU: Int
    let log: (String) -> Void
    private var peerChanges = 0
    var vtepMAC: String? { nil }
    var publicKey: String? { key.publicBase64 }

    /// WireGuard's overhead over an IPv4 underlay, and over an IPv6 one.
    static let overhead = 60
    static let overhead6 = 80

    /// The device's name: one per cluster and node, so that simulated nodes
    /// on one machine (which share /var/run/wireguard) never collide.
    static func deviceName(cluster: String, node: String) -> String {
        "bwg" + String(hexString(SHA256.digest(Array("\(cluster)/\(node)".utf8))).prefix(10))
    }

    init(config: ClusterConfig, address: IPAddress, node: String, stateDirectory: String, log: @escaping (String) -> Void) throws {
        let (socket, underlay) = try NodeNetwork.underlay(address)
        // WireGuard's overhead: 60 bytes over an IPv4 underlay, 80 over IPv6 (40 IP + 8 UDP + 32).
        podMTU = underlay.mtu - (address.family == .v4 ? WireGuardBackend.overhead : WireGuardBackend.overhead6)
        self.log = log
        port = config.port
        key = try WireGuardKey.loadOrCreate("\(stateDirectory)/wireguard/\(config.name).key")
        let name = WireGuardBackend.deviceName(cluster: config.name, node: node)
        uapi = WireGuardUAPI(path: WireGuardUAPI.socketPath(name))
        if let existing = try socket.link(named: name), (try? uapi.exchange("get=1\n\n")) != nil {
            device = existing
        } else {
            if let stale = try socket.link(named: name) { _ = try socket.deleteLink(named: stale.name) }
            try WireGuardBackend.startUserspace(name)
            guard let made = try socket.link(named: name) else { throw ClusterError("wireguard-go made no device \(name)") }
            device = made
            log("created WireGuard device \(name) (wireguard-go, UDP \(config.port), over \(underlay.name))")
        }
        _ = try uapi.exchange("set=1\nprivate_key=\(hexString(key.privateKey))\nlisten_port=\(config.port)\n\n")
        try socket.setMTUAndUp(device, mtu: podMTU)
        programmer = PeerProgrammer(socket: socket, device: nil, log: log)
    }

    /// Starts wireguard-go for `name` in this namespace (it goes to the background itself).
    static func startUserspace(_ name: String) throws {
        let binary = ["/usr/bin/wireguard-go", "/usr/local/bin/wireguard-go"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else {
            throw ClusterError("wireguard mode needs WireGuard: this kernel has no WireGuard module and wireguard-go is not installed (apt-get install wireguard-go)")
        }
        let run = try runExecutable(binary, arguments: [name], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
                                    input: [], outliveCaller: true)
        guard run.status == 0 else {
            throw ClusterError("wireguard-go \(name) failed (exit \(run.status)): \(String(decoding: run.stdout.suffix(300), as: UTF8.self))")
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: WireGuardUAPI.socketPath(name)) { usleep(20_000) }
    }

    func holdBlock(_ block: IPPrefix) throws { try programmer.hold(block, addressOn: device) }

    func sync(peers: [NodeRecord]) throws -> [String: String] {
        var failures: [String: String] = [:]
        var want: [[UInt8]: WireGuardPeer] = [:]
        var usable: [NodeRecord] = []
        for p in peers {
            guard let text = p.publicKey, let bytes = WireGuardKey.bytes(base64: text) else { continue }
            if p.blocks.contains(where: programmer.isOwn) { continue }
            let endpoint = p.address.family == .v4 ? "\(p.address):\(port)" : "[\(p.address)]:\(port)"
            // Allowed IPs: the peer's blocks, IPv4 and IPv6 with dual stack, as wireguard-go lists them back.
            want[bytes] = WireGuardPeer(publicKey: bytes, endpoint: endpoint, allowedIPs: p.blocks.map(\.description))
            usable.append(p)
        }
        let have = try uapi.peers()
        var request = ""
        for peer in have where want[peer.publicKey] == nil {
            request += "public_key=\(hexString(peer.publicKey))\nremove=true\n"
            log("removed WireGuard peer \(Data(peer.publicKey).base64EncodedString())")
        }
        let current = Dictionary(have.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        for (bytes, peer) in want.sorted(by: { $0.value.allowedIPs[0] < $1.value.allowedIPs[0] }) {
            if let now = current[bytes], now.endpoint == peer.endpoint, Set(now.allowedIPs) == Set(peer.allowedIPs) { continue }
            request += "public_key=\(hexString(bytes))\nendpoint=\(peer.endpoint!)\nreplace_allowed_ips=true\n"
                + peer.allowedIPs.map { "allowed_ip=\($0)\n" }.joined()
            log("\(current[bytes] == nil ? "added" : "updated") WireGuard peer \(peer.allowedIPs.joined(separator: ", ")) at \(peer.endpoint!)")
        }
        if !request.isEmpty {
            do {
                _ = try uapi.exchange("set=1\n" + request + "\n")
                peerChanges += request.components(separatedBy: "public_key=").count - 1
            } catch {
                for p in usable { failures[p.node] = "\(error)" }
                return failures
            }
        }
        let device = self.device
        let routed = try programmer.sync(usable) { p in
            PeerEntries(routes: p.blocks.map { GatewayRoute(destination: $0, gateway: $0.network.address, outputIndex: device.index) })
        }
        return failures.merging(routed) { a, _ in a }
    }

    func teardown() {
        programmer.removeRoutes()
        // wireguard-go ends when its device goes.
        _ = try? programmer.socket.deleteLink(named: device.name)
    }

    var changesMade: Int { programmer.changes + peerChanges }
    func monitor(_ onChange: @escaping @Sendable (String) -> Void) throws -> RouteMonitor? { try programmer.monitor(onChange) }
}
