#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import Dispatch
import BerthNetlink
import BerthCNIClient
import BerthRuntime
import BerthSystem
import CBerthSys
import BerthJSON
import BerthNet

/// The lab's links, routes and shaping: what a lab makes in its hosts' namespaces besides their attachments.
extension Lab {
    /// Whether this kernel has netem: tried in a throwaway namespace, which goes again.
    public static func kernelHasNetem() -> Bool {
        let probe = "berth-probe-\(getpid())"
        guard (try? NamedNamespaces.add(probe)) != nil else { return false }
        defer { try? NamedNamespaces.delete(probe) }
        guard let ns = try? NetworkNamespace(path: NamedNamespaces.path(probe)), let sock = try? RouteSocket.opened(in: ns),
              let lo = try? sock.link(named: "lo") else { return false }
        return sock.hasQdisc("netem", on: lo)
    }

    /// The shaping of attachments (ethN in the host) and links (both ends).
    func applyShaping() throws(LabError) {
        for host in topology.hosts where !host.shaping.isEmpty {
            let sock = try socket(in: host.name)
            for (j, net) in host.networks.enumerated() {
                guard let shaping = host.shaping[net] else { continue }
                do {
                    guard let link = try sock.link(named: "eth\(j)") else { throw LabError("host \(host.name) has no eth\(j)") }
                    try sock.shape(link, shaping)
                } catch let e as LabError {
                    throw e
                } catch {
                    throw LabError("host \(host.name) on \(net): \(error)")
                }
            }
        }
        for link in topology.links {
            guard let shaping = link.shaping else { continue }
            for host in link.ends {
                let sock = try socket(in: host)
                do {
                    guard let end = try sock.link(named: link.interface(in: host)) else { throw LabError("host \(host) has no \(link.interface(in: host))") }
                    try sock.shape(end, shaping)
                } catch let e as LabError {
                    throw e
                } catch {
                    throw LabError("link \(link.ends.joined(separator: "-")) in \(host): \(error)")
                }
            }
        }
    }

    /// The namespace file of `host`, opened.
    func namespaceFile(_ host: String) throws(LabError) -> NetworkNamespace {
        do {
            return try NetworkNamespace(path: NamedNamespaces.path(namespace(host)))
        } catch {
            throw LabError("host \(host): \(error)")
        }
    }

    /// A netlink socket inside `host`.
    func socket(in host: String) throws(LabError) -> RouteSocket {
        do {
            return try RouteSocket.opened(in: try namespaceFile(host))
        } catch let e as LabError {
            throw e
        } catch {
            throw LabError("host \(host): \(error)")
        }
    }

    /// Each link: a veth pair made in one request with one end in each host, addressed and up.
    func makeLinks() throws(LabError) {
        for link in topology.links {
            let (a, b) = (link.ends[0], link.ends[1])
            do {
                let sa = try socket(in: a), sb = try socket(in: b)
                try sa.createVethPair(host: VethEnd(name: link.interface(in: a), up: false), master: nil,
                                      peer: VethEnd(name: link.interface(in: b), up: false), peerNamespace: try namespaceFile(b))
                for (k, (sock, host)) in [(sa, a), (sb, b)].enumerated() {
                    guard let end = try sock.link(named: link.interface(in: host)) else {
                        throw LabError("link \(a)-\(b): \(link.interface(in: host)) vanished")
                    }
                    try sock.addAddress(IPPrefix(address: link.addresses[k], prefixLength: link.subnet.prefixLength)!, to: end)
                    try sock.setUp(end)
                }
            } catch let e as LabError {
                throw e
            } catch {
                throw LabError("link \(a)-\(b): \(error)")
            }
        }
    }

    /// The address of `host` on `subnet` (a network's, from its attachment, or a link's).
    func address(of host: String, on subnet: IPPrefix, networkAddresses: [String: [String: String]]) -> IPAddress? {
        if let link = topology.links.first(where: { $0.subnet == subnet && $0.ends.contains(host) }) {
            return link.addresses[link.ends[0] == host ? 0 : 1]
        }
        guard let net = topology.networks.first(where: { $0.subnet == subnet }) else { return nil }
        return networkAddresses[host]?[net.name].flatMap(IPAddress.init)
    }

    /// The static routes of every host: its own, and with `autoRoutes` the planned ones.
    public func plannedRoutes() throws(LabError) -> [String: [Topology.StaticRoute]] {
        let addresses = self.addresses()
        var out: [String: [Topology.StaticRoute]] = [:]
        for host in topology.hosts { out[host.name] = host.routes }
        if topology.autoRoutes {
            let hops: [String: [IPPrefix: RoutePlanner.FirstHop]]
            do { hops = try RoutePlanner(topology).firstHops() } catch { throw LabError("\(error)") }
            for (host, routes) in hops {
                for (destination, hop) in routes.sorted(by: { $0.key.address < $1.key.address }) {
                    guard !out[host, default: []].contains(where: { $0.destination == destination }),
                          let via = address(of: hop.router, on: hop.subnet, networkAddresses: addresses) else { continue }
                    out[host, default: []].append(Topology.StaticRoute(destination: destination, via: via))
                }
            }
        }
        return out
    }

    /// Forwarding on routers, and the routes of every host.
    func makeRoutes() throws(LabError) {
        let routes = try plannedRoutes()
        for host in topology.hosts {
            if host.forwarding {
                do {
                    try namespaceFile(host.name).perform { try Sysctl.ensure("net.ipv4.ip_forward", is: "1") }
                } catch {
                    throw LabError("host \(host.name): turn on forwarding: \(error)")
                }
            }
            guard let list = routes[host.name], !list.isEmpty else { continue }
            let sock = try socket(in: host.name)
            for route in list {
                do {
                    try sock.replaceRoute(GatewayRoute(destination: route.destination, gateway: route.via), owner: RouteSocket.staticRouteProtocol)
                } catch {
                    throw LabError("host \(host.name): route to \(route.destination) via \(route.via): \(error)")
                }
            }
        }
    }

    /// Refuses subnets that overlap a route this machine already has.
    func checkRoutes() throws(LabError) {
        guard let fd = try? OwnedDescriptor(openingForReading: "/proc/net/route"), let bytes = try? fd.readAll() else { return }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count > 7, let dst = UInt32(f[1], radix: 16), let mask = UInt32(f[7], radix: 16), mask != 0 else { continue }
            let d = dst.littleEndian, m = mask.littleEndian
            let route = IPAddress(bytes: [UInt8(d & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 24)])!
            let length = m.nonzeroBitCount
            let prefix = IPPrefix(address: route, prefixLength: length)!
            for net in topology.networks where net.subnet.overlaps(prefix) {
                throw LabError("network \(net.name): \(net.subnet) overlaps the route to \(prefix) via \(f[0]) on this machine")
            }
        }
    }
}
