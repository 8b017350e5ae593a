import BerthJSON
import BerthNet
/// A CNI result, held in the newest form (1.1.0) and printed in any version.
///
/// 0.1.0 and 0.2.0 print `ip4`/`ip6` objects; 0.3.x and 0.4.0 print
/// `interfaces`, `ips` (with `"version"`), `routes`; 1.0.0 drops `version`;
/// 1.1.0 adds route `mtu/advmss/priority/table/scope` and interface `mtu`.
public struct CNIResult: Equatable, Sendable {
    /// Puts `previous` (the result an earlier plugin of a chain handed over)
    /// before this one: its interfaces, addresses and routes first, with this
    /// result's interface indexes shifted past them; its DNS when this has none.
    public mutating func prepend(_ previous: CNIResult) {
        let offset = previous.interfaces.count
        interfaces = previous.interfaces + interfaces
        ips = previous.ips + ips.map { ip in
            var shifted = ip
            shifted.interface = ip.interface.map { $0 + offset }
            return shifted
        }
        routes = previous.routes + routes
        if dns.isEmpty { dns = previous.dns }
    }

    public struct Interface: Equatable, Sendable {
        public var name: String
        public var mac: String
        public var mtu: Int?
        public var sandbox: String
        public var socketPath: String
        public var pciID: String

        public init(name: String, mac: String = "", mtu: Int? = nil, sandbox: String = "",
                    socketPath: String = "", pciID: String = "") {
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.sandbox = sandbox
            self.socketPath = socketPath
            self.pciID = pciID
        }
    }

    public struct IPConfig: Equatable, Sendable {
        /// The interface's address with its prefix length ("10.1.0.5/24").
        public var address: IPPrefix
        public var gateway: IPAddress?
        /// Index into `interfaces`.
        public var interface: Int?

        public init(address: IPPrefix, gateway: IPAddress? = nil, interface: Int? = nil) {
            self.address = address
            self.gateway = gateway
            self.interface = interface
        }
    }

    public struct Route: Equatable, Sendable {
        public var dst: IPPrefix
        public var gw: IPAddress?
        public var mtu: Int?
        public var advmss: Int?
        public var priority: Int?
        public var table: Int?
        public var scope: Int?

        public init(dst: IPPrefix, gw: IPAddress? = nil, mtu: Int? = nil, advmss: Int? = nil,
                    priority: Int? = nil, table: Int? = nil, scope: Int? = nil) {
            self.dst = dst
            self.gw = gw
            self.mtu = mtu
            self.advmss = advmss
            self.priority = priority
            self.table = table
            self.scope = scope
        }
    }

    public struct DNS: Equatable, Sendable {
        public var nameservers: [String] = []
        public var domain: String = ""
        public var search: [String] = []
        public var options: [String] = []

        public init(nameservers: [String] = [], domain: String = "", search: [String] = [], options: [String] = []) {
            self.nameservers = nameservers
            self.domain = domain
            self.search = search
            self.options = options
        }

        public var isEmpty: Bool { nameservers.isEmpty && domain.isEmpty && search.isEmpty && options.isEmpty }
    }

    public var interfaces: [Interface] = []
    public var ips: [IPConfig] = []
    public var routes: [Route] = []
    public var dns = DNS()

    public init(interfaces: [Interface] = [], ips: [IPConfig] = [], routes: [Route] = [], dns: DNS = DNS()) {
        self.interfaces = interfaces
        self.ips = ips
        self.routes = routes
        self.dns = dns
    }
}

// MARK: - Printing

extension CNIResult {
    /// The result as `version` prints it.
    public func json(version: CNIVersion) -> JSON {
        if version.usesLegacyResult { return legacyJSON(version: version) }
        var out: JSONObject = ["cniVersion": .string(version.description)]
        if !interfaces.isEmpty {
            out["interfaces"] = .array(interfaces.map { iface in
                var o: JSONObject = ["name": .string(iface.name)]
                if !iface.mac.isEmpty { o["mac"] = .string(iface.mac) }
                if version >= .v1_1_0, let mtu = iface.mtu, mtu > 0 { o["mtu"] = .int(mtu) }
                if !iface.sandbox.isEmpty { o["sandbox"] = .string(iface.sandbox) }
                if version >= .v1_1_0 {
                    if !iface.socketPath.isEmpty { o["socketPath"] = .string(iface.socketPath) }
                    if !iface.pciID.isEmpty { o["pciID"] = .string(iface.pciID) }
                }
                return .object(o)
            })
        }
        if !ips.isEmpty {
            out["ips"] = .array(ips.map { ip in
                var o = JSONObject()
                if version < .v1_0_0 { o["version"] = .string(ip.address.family == .v4 ? "4" : "6") }
                if let i = ip.interface { o["interface"] = .int(i) }
                o["address"] = .string(ip.address.description)
                if let gw = ip.gateway { o["gateway"] = .string(gw.description) }
                return .object(o)
            })
        }
        if !routes.isEmpty {
            out["routes"] = .array(routes.map { routeJSON($0, version: version) })
        }
        out["dns"] = dnsJSON
        return .object(out)
    }

    private func routeJSON(_ r: Route, version: CNIVersion) -> JSON {
        var o: JSONObject = ["dst": .string(r.dst.description)]
        if let gw = r.gw { o["gw"] = .string(gw.description) }
        if version >= .v1_1_0 {
            if let v = r.mtu { o["mtu"] = .int(v) }
            if let v = r.advmss { o["advmss"] = .int(v) }
            if let v = r.priority { o["priority"] = .int(v) }
            if let v = r.table { o["table"] = .int(v) }
            if let v = r.scope { o["scope"] = .int(v) }
        }
        return .object(o)
    }

    private var dnsJSON: JSON {
        var o = JSONObject()
        if !dns.nameservers.isEmpty { o["nameservers"] = .array(dns.nameservers.map(JSON.string)) }
        if !dns.domain.isEmpty { o["domain"] = .string(dns.domain) }
        if !dns.search.isEmpty { o["search"] = .array(dns.search.map(JSON.string)) }
        if !dns.options.isEmpty { o["options"] = .array(dns.options.map(JSON.string)) }
        return .object(o)
    }

    /// 0.1.0/0.2.0: the first address of each family, with the routes of that family.
    private func legacyJSON(version: CNIVersion) -> JSON {
        var out: JSONObject = ["cniVersion": .string(version.description)]
        for (key, family) in [("ip4", IPAddress.Family.v4), ("ip6", .v6)] {
            guard let ip = ips.first(where: { $0.address.family == family }) else { continue }
            var o: JSONObject = ["ip": .string(ip.address.description)]
            if let gw = ip.gateway { o["gateway"] = .string(gw.description) }
            let familyRoutes = routes.filter { $0.dst.family == family }
            if !familyRoutes.isEmpty {
                o["routes"] = .array(familyRoutes.map { routeJSON($0, version: version) })
            }
            out[key] = .object(o)
        }
        out["dns"] = dnsJSON
        return .object(out)
    }
}

// MARK: - Reading

extension CNIResult {
    /// Reads a result of any version: the legacy `ip4`/`ip6` form or the
    /// `ips` form. `field` names where it came from ("prevResult", "IPAM
    /// result") in errors, which carry `code`.
    public init(json: JSON, field: String, code: CNIError.Code = .decodeFailure) throws(CNIError) {
        guard let object = json.objectValue else {
            throw CNIError(code, "\(field): expected an object, got \(json.typeName)")
        }
        let r = FieldReader(object, path: field, code: code)
        self.init()
        if r.has("ip4") || r.has("ip6") {
            for key in ["ip4", "ip6"] {
                guard let ipr = try r.object(key) else { continue }
                guard let ip = try ipr.prefix("ip") else { throw ipr.error("ip", "is required") }
                ips.append(IPConfig(address: ip, gateway: try CNIResult.gateway(ipr, of: ip)))
                for routeReader in try ipr.objects("routes") ?? [] {
                    routes.append(try CNIResult.readRoute(routeReader))
                }
            }
        } else {
            for ir in try r.objects("interfaces") ?? [] {
                interfaces.append(Interface(
                    name: try ir.string("name") ?? "",
                    mac: try ir.string("mac") ?? "",
                    mtu: try ir.int("mtu"),
                    sandbox: try ir.string("sandbox") ?? "",
                    socketPath: try ir.string("socketPath") ?? "",
                    pciID: try ir.string("pciID") ?? ""))
            }
            for ipr in try r.objects("ips") ?? [] {
                guard let address = try ipr.prefix("address") else { throw ipr.error("address", "is required") }
                let index = try ipr.int("interface")
                if let index, index < 0 || index >= interfaces.count {
                    throw ipr.error("interface", "\(index) is not an index into interfaces")
                }
                ips.append(IPConfig(address: address, gateway: try CNIResult.gateway(ipr, of: address), interface: index))
            }
            for routeReader in try r.objects("routes") ?? [] {
                routes.append(try CNIResult.readRoute(routeReader))
            }
        }
        if let d = try r.object("dns") {
            dns = try CNIResult.readDNS(d)
        }
    }

    /// An address's `gateway`, which must be of the address's family.
    static func gateway(_ r: FieldReader, of address: IPPrefix) throws(CNIError) -> IPAddress? {
        guard let gateway = try r.address("gateway") else { return nil }
        guard gateway.family == address.family else {
            throw r.error("gateway", "\(gateway) is not of the family of the address \(address)")
        }
        return gateway
    }

    /// Reads a route object (a result's, or an IPAM config's `routes`).
    public static func readRoute(_ r: FieldReader) throws(CNIError) -> Route {
        guard let dst = try r.prefix("dst") else { throw r.error("dst", "is required") }
        return Route(dst: dst, gw: try r.address("gw"), mtu: try r.int("mtu"), advmss: try r.int("advmss"),
                     priority: try r.int("priority"), table: try r.int("table"), scope: try r.int("scope"))
    }

    /// Reads a DNS object (a result's `dns`, or a network config's).
    public static func readDNS(_ d: FieldReader) throws(CNIError) -> DNS {
        DNS(nameservers: try d.strings("nameservers") ?? [],
            domain: try d.string("domain") ?? "",
            search: try d.strings("search") ?? [],
            options: try d.strings("options") ?? [])
    }
}
