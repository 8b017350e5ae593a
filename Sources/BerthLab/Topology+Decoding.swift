import BerthCNI
import BerthJSON
import BerthNet
import BerthNetlink
import BerthPlugin
import BerthRuntime
import BerthYAML

/// Reading a lab file: YAML or JSON to JSON values (YAML keeping each key's
/// line), then every field through `FieldReader`, checked whole before
/// anything is made.
extension Topology {
    /// Reads a lab file: JSON when it starts with `{`, YAML otherwise (its first document).
    public static func parse(_ text: String) throws(Problem) -> Topology {
        let documents: [LocatedDocument]
        do {
            documents = try YAMLDocuments.read(text)
        } catch {
            throw Problem(location: error.location, message: error.message)
        }
        guard let document = documents.first else { throw Problem(location: "file", message: "empty") }
        do {
            return try Topology(json: document.value)
        } catch var p {
            p.location = document.located(p.location)
            throw p
        }
    }

    /// Refuses keys of mapping `r` that are not in `known`: a
    /// misspelt key would otherwise be ignored and the lab come up without it.
    static func checkKeys(_ r: FieldReader, _ known: [String]) throws(Problem) {
        for key in r.object.keys where !known.contains(key) {
            let at = r.name(key)
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

    init(json: JSON) throws(Problem) {
        guard let object = json.objectValue else { throw Problem(location: "file", message: "expected a mapping with name, networks and hosts") }
        let top = FieldReader(object)
        try Topology.checkKeys(top, ["name", "networks", "hosts", "links", "autoRoutes"])
        name = try Topology.name(top, "name")
        networks = []
        for r in try reading({ () throws(CNIError) in try top.objects("networks") ?? [] }) {
            networks.append(try Topology.network(r, after: networks))
        }
        if networks.isEmpty { throw Problem(location: "networks", message: "a lab needs at least one network") }
        hosts = []
        for r in try reading({ () throws(CNIError) in try top.objects("hosts") ?? [] }) {
            hosts.append(try Topology.host(r, networks: networks, after: hosts))
        }
        links = []
        for r in try reading({ () throws(CNIError) in try top.objects("links") ?? [] }) {
            links.append(try Topology.link(r, networks: networks, hosts: hosts, after: links))
        }
        autoRoutes = try reading { () throws(CNIError) in try top.bool("autoRoutes") ?? false }
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

    /// A lab, network or host name: a valid container ID no longer than `maximumNameLength`.
    static func name(_ r: FieldReader, _ key: String) throws(Problem) -> String {
        let name = try reading { () throws(CNIError) in try r.requiredString(key) }
        if let problem = CNIEnvironment.containerIDProblem(name) { throw Problem(location: r.name(key), message: "\"\(name)\": \(problem)") }
        if name.utf8.count > Topology.maximumNameLength {
            throw Problem(location: r.name(key), message: "\"\(name)\" is longer than \(Topology.maximumNameLength) characters")
        }
        return name
    }

    static func network(_ r: FieldReader, after networks: [Network]) throws(Problem) -> Network {
        try checkKeys(r, ["name", "subnet", "options"])
        let n = try name(r, "name")
        if networks.contains(where: { $0.name == n }) { throw Problem(location: r.name("name"), message: "network \(n) is declared twice") }
        let subnetText = try reading { () throws(CNIError) in try r.requiredString("subnet") }
        guard let subnet = IPPrefix(subnetText)?.network, subnet.prefixLength < subnet.address.bitWidth - 1 else {
            throw Problem(location: r.name("subnet"), message: "\"\(subnetText)\" is not a subnet with room for hosts")
        }
        if let other = networks.first(where: { $0.subnet.overlaps(subnet) }) {
            throw Problem(location: r.name("subnet"), message: "\(subnet) overlaps network \(other.name)'s \(other.subnet)")
        }
        let options = try reading { () throws(CNIError) in try r.object("options") }?.object ?? [:]
        let at = r.name("options")
        for key in options.keys where ["type", "name", "cniVersion", "bridge", "ipam"].contains(key) {
            throw Problem(location: "\(at).\(key)", message: "is set by the lab")
        }
        for key in options.keys where !BridgeConfig.fields.contains(key) {
            let near = BridgeConfig.fields.first { Topology.isNear($0, key) }
            throw Problem(location: "\(at).\(key)", message: "not an option of the berth plugin" + (near.map { " (did you mean \($0)?)" } ?? ""))
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
                let field = FieldReader.field(of: error)
                throw Problem(location: field.map { "\(at).\($0)" } ?? at, message: error.msg)
            }
        }
        return network
    }

    static func host(_ r: FieldReader, networks: [Network], after hosts: [Host]) throws(Problem) -> Host {
        try checkKeys(r, ["name", "networks", "addresses", "forwarding", "routes", "shaping", "cpus", "memory", "namespace", "labels"])
        let h = try name(r, "name")
        if hosts.contains(where: { $0.name == h }) { throw Problem(location: r.name("name"), message: "host \(h) is declared twice") }
        let list = try reading { () throws(CNIError) in try r.array("networks") } ?? []
        if list.isEmpty { throw Problem(location: r.name("networks"), message: "a host needs at least one network") }
        var nets: [String] = []
        for (j, n) in list.enumerated() {
            guard let name = n.stringValue, networks.contains(where: { $0.name == name }) else {
                throw Problem(location: r.name("networks[\(j)]"), message: "unknown network \(n.stringValue ?? n.typeName)")
            }
            if nets.contains(name) { throw Problem(location: r.name("networks[\(j)]"), message: "\(name) is listed twice") }
            nets.append(name)
        }
        var addresses: [String: IPAddress] = [:]
        for (key, value) in try reading({ () throws(CNIError) in try r.object("addresses") })?.object.entries ?? [] {
            let at = r.name("addresses.\(key)")
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
        let forwarding = try reading { () throws(CNIError) in try r.bool("forwarding") ?? false }
        var routes: [StaticRoute] = []
        for route in try reading({ () throws(CNIError) in try r.objects("routes") ?? [] }) {
            try checkKeys(route, ["to", "destination", "via"])
            guard let to = (route.object["to"] ?? route.object["destination"])?.stringValue.flatMap(IPPrefix.init),
                  let via = route.object["via"]?.stringValue.flatMap(IPAddress.init) else {
                throw Problem(location: route.path, message: "a route needs \"to\" (or \"destination\": a prefix) and \"via\" (an address)")
            }
            routes.append(StaticRoute(destination: to.network, via: via))
        }
        var shaping: [String: Shaping] = [:]
        if let given = try reading({ () throws(CNIError) in try r.object("shaping") }) {
            for key in given.object.keys {
                guard nets.contains(key) else { throw Problem(location: given.name(key), message: "the host is not on a network \(key)") }
                guard let one = try reading({ () throws(CNIError) in try given.object(key) }) else { continue }
                shaping[key] = try Topology.shaping(one)
            }
        }
        let podNamespace = try reading { () throws(CNIError) in try r.string("namespace") }
        if let podNamespace, let problem = KubernetesNames.nameProblem(podNamespace, subdomain: false) {
            throw Problem(location: r.name("namespace"), message: "\"\(podNamespace)\" \(problem)")
        }
        var podLabels: [String: String] = [:]
        if let labels = try reading({ () throws(CNIError) in try r.object("labels") }) {
            for (key, value) in labels.object.entries {
                guard let text = value.stringValue else { throw Problem(location: labels.name(key), message: "a label's value must be a string, got \(value.typeName)") }
                if let problem = KubernetesNames.labelProblem(key: key, value: text) { throw Problem(location: labels.name(key), message: problem) }
                podLabels[key] = text
            }
        }
        return Host(name: h, networks: nets, addresses: addresses, forwarding: forwarding, routes: routes, shaping: shaping,
                    limits: try limits(r), podNamespace: podNamespace, podLabels: podLabels)
    }

    /// A host's `cpus` and `memory`, or nil when it has neither.
    static func limits(_ r: FieldReader) throws(Problem) -> ResourceLimits? {
        var limits = ResourceLimits()
        if let cpus = r.object["cpus"], cpus != .null {
            let text: String
            switch cpus {
            case .number(let n): text = n
            case .string(let s): text = s
            default: text = ""
            }
            guard let value = Double(text), value >= 0.01, value.isFinite else {
                throw Problem(location: r.name("cpus"), message: "expected a number of CPUs of at least 0.01")
            }
            limits.cpus = value
        }
        if let memory = r.object["memory"], memory != .null {
            let text = memory.stringValue ?? memory.intValue.map(String.init) ?? ""
            guard let bytes = ResourceLimits.parseSize(text), bytes >= 4 << 20 else {
                throw Problem(location: r.name("memory"), message: "\"\(text)\" is not a size of at least 4m (such as 256m)")
            }
            limits.memory = bytes
        }
        return limits == ResourceLimits() ? nil : limits
    }

    static func link(_ r: FieldReader, networks: [Network], hosts: [Host], after links: [Link]) throws(Problem) -> Link {
        try checkKeys(r, ["ends", "subnet", "addresses", "shaping"])
        guard let ends = try reading({ () throws(CNIError) in try r.array("ends") })?.compactMap(\.stringValue),
              ends.count == 2, ends[0] != ends[1] else {
            throw Problem(location: r.name("ends"), message: "a link needs two different hosts")
        }
        for (j, end) in ends.enumerated() where !hosts.contains(where: { $0.name == end }) {
            throw Problem(location: r.name("ends[\(j)]"), message: "unknown link end \(end)")
        }
        if links.contains(where: { Set($0.ends) == Set(ends) }) {
            throw Problem(location: r.name("ends"), message: "\(ends[0]) and \(ends[1]) are linked twice")
        }
        let subnetText = try reading { () throws(CNIError) in try r.requiredString("subnet") }
        guard let subnet = IPPrefix(subnetText)?.network, subnet.family == .v4, subnet.prefixLength <= 30 else {
            throw Problem(location: r.name("subnet"), message: "\"\(subnetText)\" is not an IPv4 subnet with room for two hosts")
        }
        let clash = networks.first(where: { $0.subnet.overlaps(subnet) }).map { "network \($0.name)" }
            ?? links.first(where: { $0.subnet.overlaps(subnet) }).map { "link \($0.ends.joined(separator: "-"))" }
        if let clash { throw Problem(location: r.name("subnet"), message: "\(subnet) overlaps \(clash)") }
        var addresses = [subnet.address.advanced(by: 1)!, subnet.address.advanced(by: 2)!]
        for (key, value) in try reading({ () throws(CNIError) in try r.object("addresses") })?.object.entries ?? [] {
            let at = r.name("addresses.\(key)")
            guard let k = ends.firstIndex(of: key) else { throw Problem(location: at, message: "\(key) is not an end of this link") }
            guard let ip = value.stringValue.flatMap(IPAddress.init), subnet.contains(ip), ip != subnet.address,
                  ip != subnet.lastAddress else {
                throw Problem(location: at, message: "\(value.stringValue ?? value.typeName) is not a host address of \(subnet)")
            }
            addresses[k] = ip
        }
        if addresses[0] == addresses[1] { throw Problem(location: r.name("addresses"), message: "both ends have \(addresses[0])") }
        let shaping = try reading { () throws(CNIError) in try r.object("shaping") }.map { (s) throws(Problem) in try Topology.shaping(s) }
        return Link(ends: ends, subnet: subnet, addresses: addresses, shaping: shaping)
    }

    /// Reads `{rate: 10mbit, delay: 20ms, jitter: 5ms, loss: 1%}`.
    static func shaping(_ r: FieldReader) throws(Problem) -> Shaping {
        let path = r.path
        var s = Shaping()
        for (key, v) in r.object.entries {
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
}

/// Runs a `FieldReader` read, its error becoming a problem at the field it names.
func reading<T>(_ body: () throws(CNIError) -> T) throws(Topology.Problem) -> T {
    do {
        return try body()
    } catch {
        let field = FieldReader.field(of: error)
        let prefix = field.map { "field \"\($0)\": " } ?? ""
        throw Topology.Problem(location: field ?? "file", message: String(error.msg.dropFirst(prefix.utf8.count)))
    }
}
