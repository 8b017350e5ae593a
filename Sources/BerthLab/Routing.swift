import BerthNet

/// Static routes for `autoRoutes`: for every host and every subnet it is not
/// on, the first hop of a shortest path through routers (hosts with
/// `forwarding`). Pure. A destination reached at the same least distance
/// through two different first hops is ambiguous and refused.
struct RoutePlanner {
    let topology: Topology

    init(_ topology: Topology) { self.topology = topology }

    struct FirstHop: Equatable, Hashable {
        /// The subnet the host leaves on, and the router on it that takes the traffic.
        var subnet: IPPrefix
        var router: String
    }

    /// host -> destination subnet -> first hop.
    func firstHops() throws(Topology.Problem) -> [String: [IPPrefix: FirstHop]] {
        let allSubnets = topology.networks.map(\.subnet) + topology.links.map(\.subnet)
        func hosts(on subnet: IPPrefix) -> [Topology.Host] {
            topology.hosts.filter { topology.subnets(of: $0.name).contains(subnet) }
        }
        var out: [String: [IPPrefix: FirstHop]] = [:]
        for host in topology.hosts {
            let own = topology.subnets(of: host.name)
            // Breadth first over subnets: the first hops that reach each at its least distance.
            var best: [IPPrefix: (distance: Int, hops: Set<FirstHop>)] = [:]
            var frontier: [(subnet: IPPrefix, hop: FirstHop?)] = own.map { ($0, nil) }
            for s in own { best[s] = (0, []) }
            var distance = 0
            while !frontier.isEmpty {
                distance += 1
                var next: [(subnet: IPPrefix, hop: FirstHop?)] = []
                for (subnet, hop) in frontier {
                    for router in hosts(on: subnet) where router.forwarding && router.name != host.name {
                        let first = hop ?? FirstHop(subnet: subnet, router: router.name)
                        for beyond in topology.subnets(of: router.name) where beyond != subnet {
                            if let known = best[beyond] {
                                if known.distance == distance && !known.hops.contains(first) {
                                    best[beyond]!.hops.insert(first)
                                }
                                continue
                            }
                            best[beyond] = (distance, [first])
                            next.append((beyond, first))
                        }
                    }
                }
                frontier = next
            }
            var routes: [IPPrefix: FirstHop] = [:]
            for subnet in allSubnets where !own.contains(subnet) {
                guard let found = best[subnet], !found.hops.isEmpty else { continue }
                if found.hops.count > 1 {
                    let ways = found.hops.map { "\($0.router) on \($0.subnet)" }.sorted().joined(separator: ", ")
                    throw Topology.Problem(location: "autoRoutes",
                                           message: "host \(host.name) reaches \(subnet) through routers at the same distance (\(ways)): the way is ambiguous, give routes by hand")
                }
                routes[subnet] = found.hops.first!
            }
            out[host.name] = routes
        }
        return out
    }
}
