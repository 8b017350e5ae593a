import BerthCNI
import BerthJSON
import BerthNet

/// DNS names of a network's attachments: what a name may be, where it comes
/// from, and how a network's server is told of it. Pure: no files, no processes.
public enum DNSName {
    /// The longest name DNS carries (253 characters written out) and label (63).
    public static let maximumLength = 253
    public static let maximumLabelLength = 63

    /// A name as a runtime or a person gives it, made canonical: lower case,
    /// and `_` as `-` (container names of podman and Docker often carry one,
    /// which no host name may); the reason when it still is not a DNS label
    /// (letters, digits and `-`, not beginning or ending with `-`, at most 63
    /// characters). A name is one label: the network's domain follows it, and
    /// no attachment can claim a name outside that domain.
    public static func canonical(_ text: String) -> Result<String, NameProblem> {
        let name = String(text.lowercased().map { $0 == "_" ? "-" : $0 })
        if name.contains(".") { return .failure(NameProblem("is not a DNS label: a name is one label, without '.' (the network's domain follows it)")) }
        if let problem = problem(name, what: "label") { return .failure(NameProblem(problem)) }
        return .success(name)
    }

    /// Why `name` (lower case already) is not a DNS name, or nil.
    public static func problem(_ name: String, what: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > maximumLength { return "is longer than \(maximumLength) characters" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            let b = Array(label.utf8)
            if b.isEmpty { return "has an empty label (two dots, or a dot at an end)" }
            if b.count > maximumLabelLength { return "has a label longer than \(maximumLabelLength) characters" }
            guard b.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }) else {
                return "is not a DNS \(what): only letters, digits, '-' and '.' between labels"
            }
            if b.first == 0x2D || b.last == 0x2D { return "is not a DNS \(what): a label begins or ends with '-'" }
        }
        return nil
    }

    /// The reverse zone that holds `prefix`'s addresses: its length rounded
    /// down to whole octets (IPv4, in-addr.arpa) or nibbles (IPv6, ip6.arpa).
    public static func reverseZone(_ prefix: IPPrefix) -> String {
        let bytes = prefix.network.address.bytes
        if prefix.family == .v4 {
            let octets = prefix.prefixLength / 8
            return (bytes.prefix(octets).reversed().map { String($0) } + ["in-addr", "arpa"]).joined(separator: ".")
        }
        let nibbles = prefix.prefixLength / 4
        let digits = bytes.flatMap { [$0 >> 4, $0 & 0xF] }.prefix(nibbles).map { String($0, radix: 16) }
        return (digits.reversed() + ["ip6", "arpa"]).joined(separator: ".")
    }
}

public struct NameProblem: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The `names` field of a `berth` config: each attachment's names are
/// served by a DNS server of the network's own, on its gateway addresses.
///
///     "names": true                              (domain berth.internal)
///     "names": {"domain": "shop.internal"}
public struct NamesConfig: Equatable, Sendable {
    public var domain: String

    public static let defaultDomain = "berth.internal"

    public init(domain: String = NamesConfig.defaultDomain) {
        self.domain = domain
    }

    /// Reads `names` of the config; nil when it is absent, false or null.
    public static func read(_ r: FieldReader) throws(CNIError) -> NamesConfig? {
        switch r.object["names"] {
        case nil, .null?, .bool(false)?: return nil
        case .bool(true)?: return NamesConfig()
        case .object?:
            guard let n = try r.object("names") else { return nil }
            let given = try n.string("domain") ?? NamesConfig.defaultDomain
            let domain = given.lowercased().hasSuffix(".") ? String(given.lowercased().dropLast()) : given.lowercased()
            if let problem = DNSName.problem(domain, what: "domain") { throw n.error("domain", "\"\(given)\" \(problem)") }
            if domain.hasSuffix("in-addr.arpa") || domain.hasSuffix("ip6.arpa") { throw n.error("domain", "\"\(given)\" is a reverse zone") }
            return NamesConfig(domain: domain)
        case let other?:
            throw r.error("names", "expected true, false or an object such as {\"domain\": \"berth.internal\"}, got \(other.typeName)")
        }
    }
}

/// The names one attachment asks for, each with where it came from.
public enum RequestedNames {
    /// The attachment's names, canonical and without repeats: the pod's name
    /// (`CNI_ARGS K8S_POD_NAME` as kubelet, CRI-O and podman pass it, or
    /// `args.cni.podName`), then its aliases (`runtimeConfig.aliases`, either
    /// a list or, as podman's `aliases` capability has it, a map of network
    /// name to list; `args.cni.aliases`). A name that is not a DNS name is
    /// an error naming where it came from (4 from CNI_ARGS, 7 from the config).
    public static func read(top: FieldReader, cniArgs: [(key: String, value: String)], network: String) throws(CNIError) -> [String] {
        var given = try RuntimeInput.values("podName", cniArgsKey: "K8S_POD_NAME", in: top, cniArgs: cniArgs, list: false)
        if let runtime = try top.object("runtimeConfig"), runtime.has("aliases") {
            if case .object? = runtime.object["aliases"] {
                let byNetwork = try runtime.object("aliases")!
                if byNetwork.has(network) {
                    given += (try byNetwork.strings(network) ?? []).map {
                        RuntimeValue(text: $0, source: "runtimeConfig.aliases.\(network)", code: .invalidNetworkConfig)
                    }
                }
            } else {
                given += (try runtime.strings("aliases") ?? []).map {
                    RuntimeValue(text: $0, source: "runtimeConfig.aliases", code: .invalidNetworkConfig)
                }
            }
        }
        if let args = try top.object("args")?.object("cni") {
            given += (try args.strings("aliases") ?? []).map { RuntimeValue(text: $0, source: "args.cni.aliases", code: .invalidNetworkConfig) }
        }
        var out: [String] = []
        for value in given {
            switch DNSName.canonical(value.text) {
            case .success(let name): if !out.contains(name) { out.append(name) }
            case .failure(let problem): throw value.error(problem.description)
            }
        }
        return out
    }
}

/// One attachment's entry in its network's names: a hosts file of its own
/// (dnsmasq reads a directory of them and notices each change), headed by a
/// comment that says whose it is and since when.
///
///     # berth attachment=pods:3f2a...:eth0 since=1765000000
///     10.22.0.5 web.berth.internal web
///     fd00:22::5 web.berth.internal web
public struct NameEntry: Equatable, Sendable {
    public var attachment: String
    public var names: [String]
    public var addresses: [IPAddress]
    /// Seconds since 1970.
    public var since: Int
    /// The cluster node the attachment is on, for another node's (nil: this node's).
    public var node: String?

    public init(attachment: String, names: [String], addresses: [IPAddress], since: Int, node: String? = nil) {
        self.attachment = attachment
        self.names = names
        self.addresses = addresses
        self.since = since
        self.node = node
    }

    /// The hosts file: every address with every name, short and in `domain`.
    public func hostsFile(domain: String) -> [UInt8] {
        var text = "# berth attachment=\(attachment) since=\(since)\(node.map { " node=\($0)" } ?? "")\n"
        // The name in the domain first: the one a PTR answer gives.
        let written = names.flatMap { $0.hasSuffix("." + domain) ? [$0] : ["\($0).\(domain)", $0] }
        for address in addresses { text += "\(address) \(written.joined(separator: " "))\n" }
        return Array(text.utf8)
    }

    /// Reads a hosts file written by `hostsFile` back (nil when it is not one).
    public static func parse(_ bytes: [UInt8], domain: String) -> NameEntry? {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard let head = lines.first, head.hasPrefix("# berth ") else { return nil }
        var fields: [String: String] = [:]
        for word in head.dropFirst(8).split(separator: " ") {
            guard let eq = word.firstIndex(of: "=") else { continue }
            fields[String(word[..<eq])] = String(word[word.index(after: eq)...])
        }
        guard let attachment = fields["attachment"], let since = fields["since"].flatMap({ Int($0) }) else { return nil }
        var addresses: [IPAddress] = [], names: [String] = []
        for line in lines.dropFirst() {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, let address = IPAddress(first) else { continue }
            addresses.append(address)
            for name in words.dropFirst() where !name.hasSuffix("." + domain) && !names.contains(name) { names.append(name) }
        }
        return NameEntry(attachment: attachment, names: names, addresses: addresses, since: since, node: fields["node"])
    }
}

/// How a network's server runs: Debian's dnsmasq, bound to the network's
/// gateway addresses only, reading nothing of the host's configuration,
/// authoritative for the network's domain and reverse zones (a name it does
/// not hold there is NXDOMAIN, never asked upstream), forwarding every
/// other question to the host's resolvers.
public struct NameServerPlan: Equatable, Sendable {
    public var domain: String
    /// The gateway addresses it listens on (port 53, UDP and TCP).
    public var listen: [IPAddress]
    /// The network's subnets: their reverse zones are answered here.
    public var subnets: [IPPrefix]
    /// Directories of hosts files: the node's own attachments', then other nodes' (a cluster).
    public var hostsDirectories: [String]
    public var pidFile: String
    public var logFile: String
    /// 53, or a port of its own when 53 is taken on the gateway (`NameServerRedirect` sends queries there).
    public var port: Int

    public init(domain: String, listen: [IPAddress], subnets: [IPPrefix], hostsDirectories: [String], pidFile: String, logFile: String,
                port: Int = 53) {
        self.port = port
        self.domain = domain
        self.listen = listen
        self.subnets = subnets
        self.hostsDirectories = hostsDirectories
        self.pidFile = pidFile
        self.logFile = logFile
    }

    /// The port the server takes when 53 is taken: one per network (from a
    /// hash of its name) in 10053-19052, and the next ones after it.
    public static func fallbackPorts(network: String) -> [Int] {
        let hash = SHA256.digest(Array(network.utf8)).prefix(2).reduce(0) { $0 << 8 | Int($1) }
        return (0..<4).map { 10053 + (hash + $0 * 997) % 9000 }
    }

    /// dnsmasq's arguments.
    public var arguments: [String] {
        var a = ["--conf-file=/dev/null", "--no-hosts", "--no-poll", "--bind-dynamic", "--port=\(port)",
                 "--pid-file=\(pidFile)", "--log-facility=\(logFile)",
                 "--domain-needed", "--bogus-priv", "--domain=\(domain)", "--local=/\(domain)/"]
        // Listening addresses only (no --interface): dnsmasq then binds neither loopback nor the host's other addresses.
        a += listen.map { "--listen-address=\($0)" }
        var zones: [String] = []
        for subnet in subnets {
            let zone = DNSName.reverseZone(subnet)
            if !zones.contains(zone) { zones.append(zone) }
        }
        a += zones.map { "--local=/\($0)/" }
        a += hostsDirectories.map { "--hostsdir=\($0)" }
        return a
    }
}
