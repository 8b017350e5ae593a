#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthJSON
import BerthNet

/// One range of a range set: addresses `start...end` of `subnet`, with the
/// subnet's gateway (never handed out).
public struct AddressRange: Equatable, Sendable, CustomStringConvertible {
    /// The subnet, masked ("10.1.0.0/16").
    public var subnet: IPPrefix
    public var start: IPAddress
    public var end: IPAddress
    public var gateway: IPAddress?
    /// The pods' MTU from the node file of a `subnetFile` range (the cluster agent's), if it gives one.
    public var linkMTU: Int?

    public var family: IPAddress.Family { subnet.family }
    public var description: String { "\(start)-\(end) of \(subnet)" }

    public func contains(_ ip: IPAddress) -> Bool {
        ip.family == family && start <= ip && ip <= end
    }

    /// Whether `ip` may be given to a container: in the range and not the gateway.
    public func isAllocatable(_ ip: IPAddress) -> Bool {
        contains(ip) && ip != gateway
    }

    public func overlaps(_ other: AddressRange) -> Bool {
        family == other.family && start <= other.end && other.start <= end
    }

    /// Reads one range object (`subnet`, `rangeStart`, `rangeEnd`, `gateway`),
    /// filling defaults as host-local does and refusing what cannot work.
    public init(_ r: FieldReader, readFile: (String) -> [UInt8]? = IPAMConfig.readSmallFile) throws(CNIError) {
        let given: IPPrefix
        if let path = try r.string("subnetFile") {
            let file = try AddressRange.nodeFile(path, field: r, readFile: readFile)
            // "subnetFamily" picks a dual-stack node's IPv4 or IPv6 block; without it, the first block.
            switch try r.string("subnetFamily") {
            case nil: given = file.block
            case let text?:
                guard let family: IPAddress.Family = text == "ipv4" ? .v4 : text == "ipv6" ? .v6 : nil else {
                    throw r.error("subnetFamily", "\"\(text)\" is not \"ipv4\" or \"ipv6\"")
                }
                guard let block = file.block(family: family) else {
                    throw r.error("subnetFamily", "\(path) holds no \(text) block (this node holds \(file.blocks.map(\.description).joined(separator: ", ")): is the cluster dual-stack?)")
                }
                given = block
            }
            linkMTU = file.mtu
        } else if let subnet = try r.prefix("subnet") {
            if r.has("subnetFamily") { throw r.error("subnetFamily", "goes with \"subnetFile\", not \"subnet\"") }
            given = subnet
        } else {
            throw r.error("subnet", "is required (or \"subnetFile\")")
        }
        let subnet = given.network
        let bits = subnet.address.bitWidth
        if subnet.prefixLength >= bits - 1 {
            throw r.error("subnet", "\(given) is too small to allocate from (a /\(bits - 1) or /\(bits) has no room for a gateway and a container)")
        }
        self.subnet = subnet
        let network = subnet.address
        let last = subnet.lastAddress
        // IPv4 keeps the network and broadcast addresses out; IPv6 only the subnet-router anycast (the network address).
        let firstUsable = network.advanced(by: 1)!
        let lastUsable = subnet.family == .v4 ? AddressRange.previous(last) : last

        func inside(_ key: String, _ ip: IPAddress?) throws(CNIError) -> IPAddress? {
            guard let ip else { return nil }
            guard subnet.contains(ip) else { throw r.error(key, "\(ip) is outside subnet \(subnet)") }
            if ip == network { throw r.error(key, "\(ip) is the network address of \(subnet)") }
            if subnet.family == .v4 && ip == last { throw r.error(key, "\(ip) is the broadcast address of \(subnet)") }
            return ip
        }
        gateway = try inside("gateway", try r.address("gateway")) ?? firstUsable
        start = try inside("rangeStart", try r.address("rangeStart")) ?? firstUsable
        end = try inside("rangeEnd", try r.address("rangeEnd")) ?? lastUsable
        if end < start {
            throw r.error("rangeStart", "\(start) comes after rangeEnd \(end)")
        }
        if start == end && start == gateway {
            throw r.error("rangeStart", "the range \(start)-\(end) holds only the gateway: nothing to hand out")
        }
    }

    /// The node file a node's cluster agent wrote (`NodeFile`): until it
    /// exists the node holds no block, and ADD is error 11.
    static func nodeFile(_ path: String, field r: FieldReader,
                         readFile: (String) -> [UInt8]?) throws(CNIError) -> NodeFile {
        guard path.hasPrefix("/") else { throw r.error("subnetFile", "\"\(path)\" must be an absolute path") }
        guard let bytes = readFile(path) else {
            throw CNIError(.tryAgainLater, "field \"\(r.path).subnetFile\": \(path) does not exist: this node holds no address block yet (the cluster agent writes it once it does)")
        }
        switch NodeFile.parse(bytes) {
        case .success(let file): return file
        case .failure(let problem): throw CNIError(.invalidNetworkConfig, "field \"\(r.path).subnetFile\": \(path) \(problem)")
        }
    }

    public init(subnet: IPPrefix, start: IPAddress, end: IPAddress, gateway: IPAddress?) {
        self.subnet = subnet.network
        self.start = start
        self.end = end
        self.gateway = gateway
    }

    static func previous(_ ip: IPAddress) -> IPAddress {
        var bytes = ip.bytes
        var i = bytes.count - 1
        while i >= 0 {
            if bytes[i] > 0 { bytes[i] -= 1; break }
            bytes[i] = 0xFF
            i -= 1
        }
        return IPAddress(bytes: bytes)!
    }
}

/// A list of ranges from which one address is handed out per ADD.
public struct RangeSet: Equatable, Sendable, CustomStringConvertible {
    public var ranges: [AddressRange]

    public var family: IPAddress.Family { ranges[0].family }
    public var description: String { ranges.map(\.description).joined(separator: ", ") }

    public func range(containing ip: IPAddress) -> AddressRange? {
        ranges.first { $0.contains(ip) }
    }

    public func isAllocatable(_ ip: IPAddress) -> Bool {
        ranges.contains { $0.isAllocatable(ip) }
    }

    /// The gateway with its subnet's prefix length, known before any address
    /// is chosen: when every range of the set has the same subnet and gateway.
    public var gatewayPrefix: IPPrefix? {
        guard let first = ranges.first, let gateway = first.gateway,
              ranges.allSatisfy({ $0.subnet == first.subnet && $0.gateway == gateway }) else { return nil }
        return IPPrefix(address: gateway, prefixLength: first.subnet.prefixLength)
    }

    /// The allocatable addresses after `cursor` in round-robin order: the rest
    /// of the range holding `cursor`, the following ranges, then from the
    /// first range's start back up to and including `cursor`. Lazy, so a huge
    /// IPv6 range costs nothing until walked.
    public func candidates(after cursor: IPAddress?) -> RangeSetCandidates {
        RangeSetCandidates(set: self, cursor: cursor.flatMap { c in
            ranges.firstIndex(where: { $0.contains(c) }).map { ($0, c) }
        })
    }
}

/// See `RangeSet.candidates(after:)`.
public struct RangeSetCandidates: Sequence, IteratorProtocol {
    let set: RangeSet
    var rangeIndex: Int
    var upcoming: IPAddress?
    let stopAt: (Int, IPAddress)?
    var finished = false

    init(set: RangeSet, cursor: (Int, IPAddress)?) {
        self.set = set
        if let (index, ip) = cursor, ip < set.ranges[index].end {
            rangeIndex = index
            upcoming = ip.advanced(by: 1)
        } else if let (index, _) = cursor {
            rangeIndex = (index + 1) % set.ranges.count
            upcoming = set.ranges[rangeIndex].start
        } else {
            rangeIndex = 0
            upcoming = set.ranges[0].start
        }
        stopAt = cursor
    }

    public mutating func next() -> IPAddress? {
        while !finished, let ip = upcoming {
            let range = set.ranges[rangeIndex]
            // Advance first, so that `ip` is returned exactly once.
            if ip < range.end {
                upcoming = ip.advanced(by: 1)
            } else {
                rangeIndex = (rangeIndex + 1) % set.ranges.count
                upcoming = set.ranges[rangeIndex].start
            }
            if let (_, stop) = stopAt {
                if ip == stop { finished = true }
            } else if rangeIndex == 0 && upcoming == set.ranges[0].start && ip == set.ranges[set.ranges.count - 1].end {
                finished = true
            }
            if range.isAllocatable(ip) { return ip }
        }
        return nil
    }
}

/// `berth-ipam`'s configuration: everything host-local accepts.
public struct IPAMConfig: Sendable {
    /// The fields of the `ipam` section this config reads (top level and in
    /// a range), as the README's and berth-ipam(8)'s table lists them.
    public static let fields = ["type", "ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "subnetFile", "subnetFamily",
                                "routes", "dataDir", "resolvConf"]
    public var network: NetworkConfig
    public var rangeSets: [RangeSet]
    public var routes: [CNIResult.Route]
    /// Where the store lives: `dataDir/NETWORK` (default /var/lib/berth/ipam/NETWORK).
    public var dataDir: String
    public var resolvConf: String?
    /// The MTU the cluster agent's node file asks for (the smallest of the
    /// `subnetFile` ranges that give one): the bridge plugin uses it when its
    /// config sets no `mtu`.
    public var linkMTU: Int? { rangeSets.flatMap(\.ranges).compactMap(\.linkMTU).min() }
    /// Addresses the runtime asked for (`runtimeConfig.ips`, `args.cni.ips`, `CNI_ARGS IP=`).
    public var requested: [IPAddress]

    public static let defaultDataDir = "/var/lib/berth/ipam"

    /// A file of at most 64 KB, or nil when it cannot be read.
    public static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 65537)
        var count = 0
        while count < bytes.count {
            let n = bytes[count...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            count += n
        }
        return count < bytes.count ? Array(bytes[..<count]) : nil
    }

    /// Reads the `ipam` object of `config` (and the runtime's requests).
    /// `readFile` reads a range's `subnetFile` (tests give their own).
    public init(network: NetworkConfig, reader top: FieldReader, cniArgs: [(key: String, value: String)],
                readFile: (String) -> [UInt8]? = IPAMConfig.readSmallFile) throws(CNIError) {
        self.network = network
        guard let r = try top.object("ipam") else {
            throw top.error("ipam", "is required")
        }
        var sets: [[FieldReader]] = []
        var path = "ipam.ranges"
        var rangeSource = r
        if let runtime = try top.object("runtimeConfig"), runtime.has("ipRanges") {
            rangeSource = runtime
            path = "runtimeConfig.ipRanges"
        }
        let key = rangeSource === r ? "ranges" : "ipRanges"
        if rangeSource === r, r.has("subnet") || r.has("subnetFile") {
            sets.append([r])  // legacy top-level subnet: the first set
        }
        for (i, item) in (try rangeSource.array(key) ?? []).enumerated() {
            guard let list = item.arrayValue else {
                throw CNIError(.invalidNetworkConfig, "field \"\(path)[\(i)]\": expected a list of ranges, got \(item.typeName)")
            }
            var readers: [FieldReader] = []
            for (j, rangeJSON) in list.enumerated() {
                guard let o = rangeJSON.objectValue else {
                    throw CNIError(.invalidNetworkConfig, "field \"\(path)[\(i)][\(j)]\": expected an object, got \(rangeJSON.typeName)")
                }
                readers.append(FieldReader(o, path: "\(path)[\(i)][\(j)]"))
            }
            if readers.isEmpty {
                throw CNIError(.invalidNetworkConfig, "field \"\(path)[\(i)]\": a range set needs at least one range")
            }
            sets.append(readers)
        }
        if sets.isEmpty {
            throw r.error("ranges", "no address ranges given (set \"ranges\" or \"subnet\")")
        }
        var rangeSets: [RangeSet] = []
        var seen: [(AddressRange, String)] = []
        for readers in sets {
            var ranges: [AddressRange] = []
            for rr in readers {
                let range = try AddressRange(rr, readFile: readFile)
                if let first = ranges.first, first.family != range.family {
                    throw rr.error("subnet", "a range set must hold one address family; \(range.subnet) differs from \(first.subnet)")
                }
                if let (other, otherPath) = seen.first(where: { $0.0.overlaps(range) }) {
                    throw rr.error("subnet", "range \(range) overlaps \(otherPath) (\(other))")
                }
                seen.append((range, rr.path))
                ranges.append(range)
            }
            rangeSets.append(RangeSet(ranges: ranges))
        }
        self.rangeSets = rangeSets

        routes = []
        for rr in try r.objects("routes") ?? [] {
            var route = try CNIResult.readRoute(rr)
            route.dst = route.dst.network  // a config may write a destination with host bits
            routes.append(route)
        }
        let dir = try r.string("dataDir") ?? ""
        if !dir.isEmpty && !dir.hasPrefix("/") {
            throw r.error("dataDir", "\"\(dir)\" must be an absolute path")
        }
        dataDir = dir.isEmpty ? IPAMConfig.defaultDataDir : dir
        resolvConf = try r.string("resolvConf").flatMap { $0.isEmpty ? nil : $0 }

        requested = try IPAMConfig.requestedAddresses(top: top, cniArgs: cniArgs)
        for ip in requested where !rangeSets.contains(where: { $0.isAllocatable(ip) }) {
            throw CNIError(.invalidNetworkConfig, "requested address \(ip) is not in any range of network \(network.name)",
                           details: "ranges: " + rangeSets.map(\.description).joined(separator: "; "))
        }
        let setOfRequested = requested.map { ip in rangeSets.firstIndex { $0.isAllocatable(ip) } }
        if Set(setOfRequested).count != setOfRequested.count {
            throw CNIError(.invalidNetworkConfig, "requested addresses "
                + requested.map(\.description).joined(separator: ", ")
                + " put two addresses in one range set: a container gets one address per set")
        }
    }

    /// The addresses asked for, from `runtimeConfig.ips`, `args.cni.ips` and `CNI_ARGS IP=` (comma separated).
    static func requestedAddresses(top: FieldReader, cniArgs: [(key: String, value: String)]) throws(CNIError) -> [IPAddress] {
        let given = try RuntimeInput.values("ips", cniArgsKey: "IP", in: top, cniArgs: cniArgs, list: true)
        var out: [IPAddress] = []
        for value in given {
            let trimmed = value.text.split(separator: "/").first.map(String.init) ?? value.text
            guard let ip = IPAddress(trimmed) else { throw value.error("is not an IP address") }
            if !out.contains(ip) { out.append(ip) }
        }
        return out
    }
}

extension FieldReader {
    /// Whether both readers view the same object at the same path.
    static func === (a: FieldReader, b: FieldReader) -> Bool { a.path == b.path }
}
