import BerthCNI
import BerthNetlink
import BerthRuntime
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
        /// Who the host is for network policy: a namespace and labels (given to the plugins as `args.cni`).
        public var podNamespace: String?
        public var podLabels: [String: String]

        public init(name: String, networks: [String], addresses: [String: IPAddress] = [:], forwarding: Bool = false,
                    routes: [StaticRoute] = [], shaping: [String: Shaping] = [:], limits: ResourceLimits? = nil,
                    podNamespace: String? = nil, podLabels: [String: String] = [:]) {
            self.limits = limits
            self.podNamespace = podNamespace
            self.podLabels = podLabels
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

    /// The `berth` plugin config of network `net` as a lab writes it.
    public static func pluginConfig(_ net: Network, bridge: String, networkName: String, dataDir: String) -> JSON {
        var plugin: JSONObject = ["type": .string("berth"), "bridge": .string(bridge), "isGateway": .bool(true),
                                  "capabilities": .object(["ips": .bool(true)])]
        for (k, v) in net.options.entries { plugin[k] = v }
        plugin["ipam"] = .object(["type": .string("berth-ipam"), "dataDir": .string(dataDir), "subnet": .string(net.subnet.description)])
        return .object(["cniVersion": .string("1.1.0"), "name": .string(networkName), "plugins": .array([.object(plugin)])])
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

    /// The subnets host `name` is on: its networks' and its links'.
    public func subnets(of name: String) -> [IPPrefix] {
        let host = hosts.first { $0.name == name }
        return (host?.networks ?? []).compactMap { n in networks.first { $0.name == n }?.subnet }
            + links.filter { $0.ends.contains(name) }.map(\.subnet)
    }
}
