import BerthCNI
import BerthNetlink
import BerthPlugin
import BerthRuntime
import Yams
import BerthJSON
import BerthNet

/// A lab: networks (each a Berth bridge with its own subnet) and hosts (each
/// a network namespace attached to some of them). Pure: reading and checking
/// a topology touches nothing.
public struct Topology: Equatable, Sendable {
    public struct Network: Equatable, Sendable {
        public var name: String
        public var subnet: IPPrefix
        /// Extra `berth` options (isGateway, ipMasq, mtu, ...), merged into its config.
        public var options: JSONObject

        public init(name: String, subnet: IPPrefix, options: JSONObject = [:]) {
            self.name = name
            self.subnet = subnet
            self.options = options
        }
    }

    public struct Host: Equatable, Sendable {
        public var name: String
        /// The networks it is on, in interface order (eth0, eth1, ...).
        public var networks: [String]
        /// Fixed addresses per network (the rest are allocated).
        public var addresses: [String: IPAddress]
        /// A router: it forwards IPv4 between its interfaces.
        public var forwarding: Bool
        /// Static routes: destination and next hop (on one of its subnets).
        public var routes: [StaticRoute]
        /// Traffic shaping of its interface on a network, by network name.
        public var shaping: [String: Shaping]
        /// CPU and memory limits (a cgroup of the runtime's); what `lab exec` runs on the host counts against them.
        public var limits: ResourceLimits?

        public init(name: String, networks: [String], addresses: [String: IPAddress] = [:], forwarding: Bool = false,
                    routes: [StaticRoute] = [], shaping: [String: Shaping] = [:], limits: ResourceLimits? = nil) {
            self.limits = limits
            self.name = name
            self.networks = networks
            self.addresses = addresses
            self.forwarding = forwarding
            self.routes = routes
            self.shaping = shaping
        }
    }

    public struct StaticRoute: Equatable, Hashable, Sendable {
        public var destination: IPPrefix
        public var via: IPAddress

        public init(destination: IPPrefix, via: IPAddress) {
            self.destination = destination
            self.via = via
        }
    }

    /// A point-to-point link between two hosts: a veth pair, no bridge. In
    /// host A the interface is `to-B`; the addresses come from `subnet`
    /// (given, or its first two host addresses in the order of `ends`).
    public struct Link: Equatable, Sendable {
        public var ends: [String]
        public var subnet: IPPrefix
        public var addresses: [IPAddress]
        /// Traffic shaping of both ends (each direction alike).
        public var shaping: Shaping?

        public init(ends: [String], subnet: IPPrefix, addresses: [IPAddress], shaping: Shaping? = nil) {
            self.ends = ends
            self.subnet = subnet
            self.addresses = addresses
            self.shaping = shaping
        }

        /// The interface name in host `host` of the link (to its other end).
        public func interface(in host: String) -> String { "to-" + (ends[0] == host ? ends[1] : ends[0]) }
    }

    public var name: String
    public var networks: [Network]
    public var hosts: [Host]
    public var links: [Link]
    /// Compute static routes so every host reaches every subnet across routers.
    public var autoRoutes: Bool

    public init(name: String, networks: [Network] = [], hosts: [Host] = [], links: [Link] = [], autoRoutes: Bool = false) {
        self.name = name
        self.networks = networks
        self.hosts = hosts
        self.links = links
        self.autoRoutes = autoRoutes
    }

    /// A problem in a lab file, naming the key (and line, for YAML) where it is.
    public struct Problem: Error, Equatable, CustomStringConvertible, Sendable {
        public var location: String
        public var message: String
        public var description: String { "\(location): \(message)" }
    }

    /// The longest lab, network and host names: they go into interface and namespace names.
    public static let maximumNameLength = 12

    /// Reads a lab file: JSON when it starts with `{`, YAML otherwise.
    public static func parse(_ text: String) throws(Problem) -> Topology {
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        if trimmed.hasPrefix("{") {
            let json: JSON
            do {
                json = try JSON.parse(text)
            } catch {
                let (line, column) = Topology.lineAndColumn(Array(text.utf8), offset: error.offset)
                throw Problem(location: "file (line \(line), column \(column))", message: "not valid JSON: \(error.reason)")
            }
            return try Topology(json: json)
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw Problem(location: "file", message: "not valid YAML: \(error)")
        }
        guard let node else { throw Problem(location: "file", message: "empty") }
        var lines: [String: Int] = [:]
        let json = convert(node, path: "", lines: &lines)
        do {
            return try Topology(json: json)
        } catch var p {
            if let line = lines[p.location] { p.location += " (line \(line))" }
            throw p
        }
    }

    /// The line and column (both from 1, columns in characters) of byte `offset` of `bytes`.
    static func lineAndColumn(_ bytes: [UInt8], offset: Int) -> (line: Int, column: Int) {
        var line = 1, start = 0
        let end = min(offset, bytes.count)
        for i in 0..<end where bytes[i] == UInt8(ascii: "\n") {
            line += 1
            start = i + 1
        }
        return (line, String(decoding: bytes[start..<end], as: UTF8.self).count + 1)
    }

    /// Refuses keys of mapping `o` (at `path`) that are not in `known`: a
    /// misspelt key would otherwise be ignored and the lab come up without it.
    static func checkKeys(_ o: JSONObject, _ known: [String], _ path: String) throws(Problem) {
        for key in o.keys where !known.contains(key) {
            let at = path.isEmpty ? key : "\(path).\(key)"
            let near = known.first { Topology.isNear($0, key) }
            throw Problem(location: at, message: "unknown key" + (near.map { " (did you mean \($0)?)" } ?? " (known: \(known.joined(separator: ", ")))"))
        }
    }

    /// Whether `a` and `b` differ by at most one edit (a likely misspelling).
    static func isNear(_ a: String, _ b: String) -> Bool {
        let x = Array(a.lowercased()), y = Array(b.lowercased())
        if abs(x.count - y.count) > 1 { return false }
        var previous = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var current = [i] + Array(repeating: 0, count: y.count)
            for j in stride(from: 1, through: y.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[y.count] <= 1
    }

    /// The `berth` plugin config of network `net` as a lab writes it.
    public static func pluginConfig(_ net: Network, bridge: String, networkName: String, dataDir: String) -> JSON {
        var plugin: JSONObject = ["type": .string("berth"), "bridge": .string(bridge), "isGateway": .bool(true),
                                  "capabilities": .object(["ips": .bool(true)])]
        for (k, v) in net.options.entries { plugin[k] = v }
        plugin["ipam"] = .object(["type": .string("berth-ipam"), "dataDir": .string(dataDir), "subnet": .string(net.subnet.description)])
        return .object(["cniVersion": .string("1.1.0"), "name": .string(networkName), "plugins": .array([.object(plugin)])])
    }

    /// YAML to JSON values, remembering each key path's line.
    static func convert(_ node: Node, path: String, lines: inout [String: Int]) -> JSON {
        if let line = node.mark?.line { lines[path.isEmpty ? "file" : path] = line }
        switch node {
        case .mapping(let mapping):
            var o = JSONObject()
            for (k, v) in mapping {
                let key = k.string ?? ""
                let at = path.isEmpty ? key : "\(path).\(key)"
                o[key] = convert(v, path: at, lines: &lines)
                // A key's own line (its value may start on the next one).
                if let line = k.mark?.line { lines[at] = line }
            }
            return .object(o)
        case .sequence(let sequence):
            return .array(sequence.enumerated().map { i, v in convert(v, path: "\(path)[\(i)]", lines: &lines) })
        case .scalar(let scalar):
            if scalar.style == .plain {
                if let b = Bool.construct(from: scalar) { return .bool(b) }
                if let i = Int.construct(from: scalar) { return .int(i) }
                if scalar.string == "null" || scalar.string == "~" { return .null }
            }
            return .string(scalar.string)
        }
    }

    init(json: JSON) throws(Problem) {
        guard let top = json.objectValue else { throw Problem(location: "file", message: "expected a mapping with name, networks and hosts") }
        try Topology.checkKeys(top, ["name", "networks", "hosts", "links", "autoRoutes"], "")
        func string(_ o: JSONObject, _ key: String, _ path: String) throws(Problem) -> String {
            guard let s = o[key]?.stringValue, !s.isEmpty else { throw Problem(location: path, message: "a non-empty string is required") }
            return s
        }
        func checkName(_ name: String, _ path: String) throws(Problem) {
            if let problem = CNIEnvironment.containerIDProblem(name) { throw Problem(location: path, message: "\"\(name)\": \(problem)") }
            if name.utf8.count > Topology.maximumNameLength {
                throw Problem(location: path, message: "\"\(name)\" is longer than \(Topology.maximumNameLength) characters")
            }
        }
        name = try string(top, "name", "name")
        try checkName(name, "name")
        networks = []
        for (i, item) in (top["networks"]?.arrayValue ?? []).enumerated() {
            let path = "networks[\(i)]"
            guard let o = item.objectValue else { throw Problem(location: path, message: "expected a mapping") }
            try Topology.checkKeys(o, ["name", "subnet", "options"], path)
            let n = try string(o, "name", "\(path).name")
            try checkName(n, "\(path).name")
            if networks.contains(where: { $0.name == n }) { throw Problem(location: "\(path).name", message: "network \(n) is declared twice") }
            let subnetText = try string(o, "subnet", "\(path).subnet")
            guard let subnet = IPPrefix(subnetText)?.network, subnet.prefixLength < subnet.address.bitWidth - 1 else {
                throw Problem(location: "\(path).subnet", message: "\"\(subnetText)\" is not a subnet with room for hosts")
            }
            if let other = networks.first(where: { $0.subnet.overlaps(subnet) }) {
                throw Problem(location: "\(path).subnet", message: "\(subnet) overlaps network \(other.name)'s \(other.subnet)")
            }
            var options = JSONObject()
            if let given = o["options"] {
                guard let obj = given.objectValue else { throw Problem(location: "\(path).options", message: "expected a mapping of berth options") }
                for key in obj.keys where ["type", "name", "cniVersion", "bridge", "ipam"].contains(key) {
                    throw Problem(location: "\(path).options.\(key)", message: "is set by the lab")
                }
                for key in obj.keys where !BridgeConfig.fields.contains(key) {
                    let near = BridgeConfig.fields.first { Topology.isNear($0, key) }
                    throw Problem(location: "\(path).options.\(key)", message: "not an option of the berth plugin" + (near.map { " (did you mean \($0)?)" } ?? ""))
                }
                options = obj
            }
            let network = Network(name: n, subnet: subnet, options: options)
            // The plugin's own decoding, now, so a bad option is refused before anything exists.
            let config = Topology.pluginConfig(network, bridge: "blcheck", networkName: "lab-check", dataDir: "/nonexistent")
            if let plugin = config["plugins"]?.arrayValue?.first {
                var object = plugin.objectValue ?? [:]
                object["cniVersion"] = .string("1.1.0")
                object["name"] = .string("lab-check")
                do {
                    _ = try BridgeConfig(Array(JSON.object(object).serialized().utf8))
                } catch {
                    var at = "\(path).options"
                    if error.msg.hasPrefix("field \""), let field = error.msg.dropFirst(7).split(separator: "\"").first {
                        at += ".\(field)"
                    }
                    throw Problem(location: at, message: error.msg)
                }
            }
            networks.append(network)
        }
        if networks.isEmpty { throw Problem(location: "networks", message: "a lab needs at least one network") }
        hosts = []
        for (i, item) in (top["hosts"]?.arrayValue ?? []).enumerated() {
            let path = "hosts[\(i)]"
            guard let o = item.objectValue else { throw Problem(location: path, message: "expected a mapping") }
            try Topology.checkKeys(o, ["name", "networks", "addresses", "forwarding", "routes", "shaping", "cpus", "memory"], path)
            let h = try string(o, "name", "\(path).name")
            try checkName(h, "\(path).name")
            if hosts.contains(where: { $0.name == h }) { throw Problem(location: "\(path).name", message: "host \(h) is declared twice") }
            guard let list = o["networks"]?.arrayValue, !list.isEmpty else {
                throw Problem(location: "\(path).networks", message: "a host needs at least one network")
            }
            var nets: [String] = []
            for (j, n) in list.enumerated() {
                guard let name = n.stringValue, networks.contains(where: { $0.name == name }) else {
                    throw Problem(location: "\(path).networks[\(j)]", message: "unknown network \(n.stringValue ?? n.typeName)")
                }
                if nets.contains(name) { throw Problem(location: "\(path).networks[\(j)]", message: "\(name) is listed twice") }
                nets.append(name)
            }
            var addresses: [String: IPAddress] = [:]
            for (key, value) in o["addresses"]?.objectValue?.entries ?? [] {
                let at = "\(path).addresses.\(key)"
                guard let net = networks.first(where: { $0.name == key }), nets.contains(key) else {
                    throw Problem(location: at, message: "the host is not on a network \(key)")
                }
                guard let text = value.stringValue, let ip = IPAddress(text.split(separator: "/").first.map(String.init) ?? text),
                      net.subnet.contains(ip), ip != net.subnet.address, ip != net.subnet.address.advanced(by: 1) else {
                    throw Problem(location: at, message: "\(value.stringValue ?? value.typeName) is not a host address of \(net.subnet) (the first address is the gateway)")
                }
                if hosts.contains(where: { $0.addresses[key] == ip }) {
                    throw Problem(location: at, message: "\(ip) is given to another host too")
                }
                addresses[key] = ip
            }
            let forwarding: Bool
            switch o["forwarding"] {
            case nil: forwarding = false
            case .bool(let b)?: forwarding = b
            case let other?: throw Problem(location: "\(path).forwarding", message: "expected true or false, got \(other.typeName)")
            }
            var routes: [StaticRoute] = []
            for (j, item) in (o["routes"]?.arrayValue ?? []).enumerated() {
                let at = "\(path).routes[\(j)]"
                if let r = item.objectValue { try Topology.checkKeys(r, ["to", "destination", "via"], at) }
                guard let r = item.objectValue, let to = (r["to"] ?? r["destination"])?.stringValue.flatMap(IPPrefix.init),
                      let via = r["via"]?.stringValue.flatMap(IPAddress.init) else {
                    throw Problem(location: at, message: "a route needs \"to\" (or \"destination\": a prefix) and \"via\" (an address)")
                }
                routes.append(StaticRoute(destination: to.network, via: via))
            }
            var shaping: [String: Shaping] = [:]
            for (key, value) in o["shaping"]?.objectValue?.entries ?? [] {
                guard nets.contains(key) else { throw Problem(location: "\(path).shaping.\(key)", message: "the host is not on a network \(key)") }
                shaping[key] = try Topology.shaping(value, "\(path).shaping.\(key)")
            }
            var limits = ResourceLimits()
            if let cpus = o["cpus"] {
                let text: String
                switch cpus {
                case .number(let n): text = n
                case .string(let s): text = s
                default: text = ""
                }
                guard let value = Double(text), value >= 0.01, value.isFinite else {
                    throw Problem(location: "\(path).cpus", message: "expected a number of CPUs of at least 0.01")
                }
                limits.cpus = value
            }
            if let memory = o["memory"] {
                let text = memory.stringValue ?? memory.intValue.map(String.init) ?? ""
                guard let bytes = ResourceLimits.parseSize(text), bytes >= 4 << 20 else {
                    throw Problem(location: "\(path).memory", message: "\"\(text)\" is not a size of at least 4m (such as 256m)")
                }
                limits.memory = bytes
            }
            hosts.append(Host(name: h, networks: nets, addresses: addresses, forwarding: forwarding, routes: routes, shaping: shaping,
                              limits: limits == ResourceLimits() ? nil : limits))
        }
        links = []
        for (i, item) in (top["links"]?.arrayValue ?? []).enumerated() {
            let path = "links[\(i)]"
            guard let o = item.objectValue else { throw Problem(location: path, message: "expected a mapping") }
            try Topology.checkKeys(o, ["ends", "subnet", "addresses", "shaping"], path)
            guard let ends = o["ends"]?.arrayValue?.compactMap(\.stringValue), ends.count == 2, ends[0] != ends[1] else {
                throw Problem(location: "\(path).ends", message: "a link needs two different hosts")
            }
            for (j, end) in ends.enumerated() where !hosts.contains(where: { $0.name == end }) {
                throw Problem(location: "\(path).ends[\(j)]", message: "unknown link end \(end)")
            }
            if links.contains(where: { Set($0.ends) == Set(ends) }) {
                throw Problem(location: "\(path).ends", message: "\(ends[0]) and \(ends[1]) are linked twice")
            }
            let subnetText = try string(o, "subnet", "\(path).subnet")
            guard let subnet = IPPrefix(subnetText)?.network, subnet.family == .v4, subnet.prefixLength <= 30 else {
                throw Problem(location: "\(path).subnet", message: "\"\(subnetText)\" is not an IPv4 subnet with room for two hosts")
            }
            let clash = networks.first(where: { $0.subnet.overlaps(subnet) }).map { "network \($0.name)" }
                ?? links.first(where: { $0.subnet.overlaps(subnet) }).map { "link \($0.ends.joined(separator: "-"))" }
            if let clash { throw Problem(location: "\(path).subnet", message: "\(subnet) overlaps \(clash)") }
            var addresses = [subnet.address.advanced(by: 1)!, subnet.address.advanced(by: 2)!]
            for (key, value) in o["addresses"]?.objectValue?.entries ?? [] {
                let at = "\(path).addresses.\(key)"
                guard let k = ends.firstIndex(of: key) else { throw Problem(location: at, message: "\(key) is not an end of this link") }
                guard let ip = value.stringValue.flatMap(IPAddress.init), subnet.contains(ip), ip != subnet.address,
                      ip != subnet.lastAddress else {
                    throw Problem(location: at, message: "\(value.stringValue ?? value.typeName) is not a host address of \(subnet)")
                }
                addresses[k] = ip
            }
            if addresses[0] == addresses[1] { throw Problem(location: "\(path).addresses", message: "both ends have \(addresses[0])") }
            let shaping = try o["shaping"].map { (v) throws(Problem) in try Topology.shaping(v, "\(path).shaping") }
            links.append(Link(ends: ends, subnet: subnet, addresses: addresses, shaping: shaping))
        }
        switch top["autoRoutes"] {
        case nil: autoRoutes = false
        case .bool(let b)?: autoRoutes = b
        case let other?: throw Problem(location: "autoRoutes", message: "expected true or false, got \(other.typeName)")
        }
        // Every next hop must be on a subnet of its host: a route that does not resolve is refused now.
        for (i, host) in hosts.enumerated() {
            for (j, route) in host.routes.enumerated() where !subnets(of: host.name).contains(where: { $0.contains(route.via) }) {
                throw Problem(location: "hosts[\(i)].routes[\(j)].via",
                              message: "\(route.via) is on none of \(host.name)'s subnets: the route to \(route.destination) would not resolve")
            }
        }
        if autoRoutes { _ = try RoutePlanner(self).firstHops() }
        _ = try addressPlan()
    }

    /// Every host's address on each of its networks: the one given, or the
    /// next free one of the subnet in the order of the hosts (after the
    /// gateway, the first address, and skipping every given one). `lab up`
    /// asks for exactly these, so addresses do not depend on the order in
    /// which hosts are attached (it attaches several at once). A subnet too
    /// small for its hosts is refused here, before anything is made.
    public func addressPlan() throws(Problem) -> [String: [String: IPAddress]] {
        var plan: [String: [String: IPAddress]] = [:]
        for (i, net) in networks.enumerated() {
            let gateway = net.subnet.address.advanced(by: 1)!
            var taken: Set<IPAddress> = [gateway]
            for host in hosts { if let ip = host.addresses[net.name] { taken.insert(ip) } }
            let last = net.subnet.lastAddress
            var next = gateway
            for host in hosts where host.networks.contains(net.name) {
                if let ip = host.addresses[net.name] {
                    plan[host.name, default: [:]][net.name] = ip
                    continue
                }
                var found: IPAddress?
                while let candidate = next.advanced(by: 1), candidate < last || (net.subnet.family == .v6 && candidate == last) {
                    next = candidate
                    if !taken.contains(candidate) { found = candidate; break }
                }
                guard let ip = found else {
                    let count = hosts.filter { $0.networks.contains(net.name) }.count
                    throw Problem(location: "networks[\(i)].subnet", message: "\(net.subnet) has no room for its \(count) hosts")
                }
                taken.insert(ip)
                plan[host.name, default: [:]][net.name] = ip
            }
        }
        return plan
    }

    /// Every shaping that needs netem, with where it is declared.
    public var netemUses: [String] {
        var out: [String] = []
        for (i, host) in hosts.enumerated() {
            for (net, s) in host.shaping.sorted(by: { $0.key < $1.key }) where s.needsNetem { out.append("hosts[\(i)].shaping.\(net)") }
        }
        for (i, link) in links.enumerated() where link.shaping?.needsNetem == true { out.append("links[\(i)].shaping") }
        return out
    }

    /// Reads `{rate: 10mbit, delay: 20ms, jitter: 5ms, loss: 1%}`.
    static func shaping(_ value: JSON, _ path: String) throws(Problem) -> Shaping {
        guard let o = value.objectValue else { throw Problem(location: path, message: "expected a mapping of rate, delay, jitter, loss") }
        var s = Shaping()
        for (key, v) in o.entries {
            let text = v.stringValue ?? (v.intValue.map(String.init) ?? "")
            switch key {
            case "rate":
                guard let bits = Topology.rate(text), bits >= 8_000 else {
                    throw Problem(location: "\(path).rate", message: "\"\(text)\" is not a rate of at least 8kbit (such as 10mbit)")
                }
                s.rate = bits
            case "delay", "jitter":
                guard let us = Topology.duration(text) else {
                    throw Problem(location: "\(path).\(key)", message: "\"\(text)\" is not a time (such as 20ms)")
                }
                if key == "delay" { s.delay = us } else { s.jitter = us }
            case "loss":
                guard text.hasSuffix("%"), let p = Double(text.dropLast()), p >= 0, p <= 100 else {
                    throw Problem(location: "\(path).loss", message: "\"\(text)\" is not a percentage (such as 1%)")
                }
                s.loss = p
            default:
                throw Problem(location: "\(path).\(key)", message: "unknown shaping key (rate, delay, jitter, loss)")
            }
        }
        return s
    }

    /// "10mbit", "500kbit", "1gbit", "64000bit" as bits per second.
    static func rate(_ text: String) -> UInt64? {
        for (unit, factor) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000), ("bit", 1)] as [(String, UInt64)]
        where text.hasSuffix(unit) {
            guard let n = Double(text.dropLast(unit.count)), n > 0 else { return nil }
            return UInt64(n * Double(factor))
        }
        return nil
    }

    /// "20ms", "500us", "1s" as microseconds.
    static func duration(_ text: String) -> UInt32? {
        for (unit, factor) in [("us", 1.0), ("ms", 1_000.0), ("s", 1_000_000.0)] where text.hasSuffix(unit) {
            guard let n = Double(text.dropLast(unit.count)), n >= 0, n * factor < 60_000_000 else { return nil }
            return UInt32(n * factor)
        }
        return nil
    }

    /// The subnets host `name` is on: its networks' and its links'.
    public func subnets(of name: String) -> [IPPrefix] {
        let host = hosts.first { $0.name == name }
        return (host?.networks ?? []).compactMap { n in networks.first { $0.name == n }?.subnet }
            + links.filter { $0.ends.contains(name) }.map(\.subnet)
    }
}
