#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import BerthNet

/// A route of the main table to a prefix through a gateway, as Berth
/// installs and reads back those it owns (marked with a routing protocol
/// number of the owner's: the cluster agent's, a lab's static routes).
public struct GatewayRoute: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var destination: IPPrefix
    public var gateway: IPAddress
    /// The link the route leaves through when it names one (VXLAN: onlink through the device).
    public var outputIndex: Int32?

    public init(destination: IPPrefix, gateway: IPAddress, outputIndex: Int32? = nil) {
        self.destination = destination
        self.gateway = gateway
        self.outputIndex = outputIndex
    }

    public var description: String { "\(destination) via \(gateway)" }
}

/// A permanent neighbour (ARP) or forwarding (FDB) entry on a link.
public struct OverlayEntry: Equatable, Hashable, Sendable {
    public var address: IPAddress
    public var mac: String

    public init(address: IPAddress, mac: String) {
        self.address = address
        self.mac = mac
    }
}

extension RouteSocket {
    /// The routing protocol of routes set by hand or from a file (RTPROT_STATIC, `proto static`).
    public static let staticRouteProtocol: UInt8 = 4

    /// Creates VXLAN device `name` (VNI `vni`, UDP `port`, no learning: the
    /// agent programs every peer), sending from `local` over `underlay`, with
    /// MAC `mac`, up.
    public func createVXLAN(name: String, vni: UInt32, local: IPAddress, underlay: LinkInfo, port: UInt16,
                            mac: String, mtu: Int?) throws(NetlinkError) {
        guard let raw = rtnl_link_vxlan_alloc() else { throw NetlinkError("allocate vxlan", code: NLE_NOMEM) }
        let link = LinkObject(raw)
        rtnl_link_set_name(link.pointer, name)
        try check(rtnl_link_vxlan_set_id(link.pointer, vni), "set VNI of \(name)")
        let source = try AddressObject(local, prefixLength: local.bitWidth)
        try check(rtnl_link_vxlan_set_local(link.pointer, source.pointer), "set local address of \(name)")
        try check(rtnl_link_vxlan_set_link(link.pointer, UInt32(underlay.index)), "set underlay of \(name)")
        try check(rtnl_link_vxlan_set_port(link.pointer, UInt32(port)), "set UDP port of \(name)")
        try check(rtnl_link_vxlan_set_learning(link.pointer, 0), "turn off learning on \(name)")
        if let mtu { rtnl_link_set_mtu(link.pointer, UInt32(mtu)) }
        try withLinkLayerAddress(mac) { rtnl_link_set_addr(link.pointer, $0) }
        rtnl_link_set_flags(link.pointer, UInt32(IFF_UP.rawValue))
        try check(rtnl_link_add(sk, link.pointer, NLM_F_CREATE | NLM_F_EXCL), "create VXLAN device \(name)")
    }

    /// Adds or replaces the route `route`, marked with routing protocol `owner`.
    public func replaceRoute(_ route: GatewayRoute, owner: UInt8) throws(NetlinkError) {
        try changeRoute(route, owner: owner, add: true)
    }

    /// Removes `route` (of protocol `owner`); gone already is fine.
    public func deleteRoute(_ route: GatewayRoute, owner: UInt8) throws(NetlinkError) {
        do {
            try changeRoute(route, owner: owner, add: false)
        } catch {
            if !error.isNotFound && error.code != NLE_OBJ_NOTFOUND && error.code != NLE_NOADDR { throw error }
        }
    }

    private func changeRoute(_ spec: GatewayRoute, owner: UInt8, add: Bool) throws(NetlinkError) {
        guard let route = rtnl_route_alloc() else { throw NetlinkError("allocate route", code: NLE_NOMEM) }
        defer { rtnl_route_put(route) }
        rtnl_route_set_family(route, UInt8(spec.destination.family == .v4 ? AF_INET : AF_INET6))
        let dst = try AddressObject(spec.destination.network.address, prefixLength: spec.destination.prefixLength)
        try check(rtnl_route_set_dst(route, dst.pointer), "set route destination \(spec.destination)")
        rtnl_route_set_table(route, UInt32(RT_TABLE_MAIN.rawValue))
        rtnl_route_set_protocol(route, owner)
        rtnl_route_set_scope(route, UInt8(RT_SCOPE_UNIVERSE.rawValue))
        guard let hop = rtnl_route_nh_alloc() else { throw NetlinkError("allocate next hop", code: NLE_NOMEM) }
        rtnl_route_add_nexthop(route, hop)  // owned by the route from here
        let gateway = try AddressObject(spec.gateway, prefixLength: spec.gateway.bitWidth)
        rtnl_route_nh_set_gateway(hop, gateway.pointer)
        if let index = spec.outputIndex {
            rtnl_route_nh_set_ifindex(hop, index)
            rtnl_route_nh_set_flags(hop, UInt32(RTNH_F_ONLINK))
        }
        if add {
            try check(rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_REPLACE), "add route \(spec)")
        } else {
            try check(rtnl_route_delete(sk, route, 0), "remove route \(spec)")
        }
    }

    /// The gateway routes of the main table with routing protocol `owner`.
    public func routes(owner: UInt8) throws(NetlinkError) -> [GatewayRoute] {
        try dump("list routes", fill: { rtnl_route_alloc_cache($0, AF_UNSPEC, 0, &$1) }) { route in
            let family = Int32(rtnl_route_get_family(route))
            guard rtnl_route_get_protocol(route) == owner,
                  rtnl_route_get_table(route) == UInt32(RT_TABLE_MAIN.rawValue),
                  rtnl_route_get_nnexthops(route) > 0, let hop = rtnl_route_nexthop_n(route, 0),
                  let dst = readPrefix(rtnl_route_get_dst(route), family: family),
                  let gw = rtnl_route_nh_get_gateway(hop).flatMap({ readPrefix($0, family: family) })
            else { return nil }
            let onlink = rtnl_route_nh_get_flags(hop) & UInt32(RTNH_F_ONLINK) != 0
            return GatewayRoute(destination: dst.network, gateway: gw.address,
                                outputIndex: onlink ? rtnl_route_nh_get_ifindex(hop) : nil)
        }
    }

    /// Adds or replaces a permanent neighbour entry `ip` -> `mac` on `link`
    /// (with `forwarding`, an FDB entry of a VXLAN device instead: frames
    /// for `mac` go to the underlay address `ip`).
    public func replaceEntry(_ entry: OverlayEntry, on link: LinkInfo, forwarding: Bool) throws(NetlinkError) {
        let neigh = try entryObject(entry, on: link, forwarding: forwarding)
        defer { rtnl_neigh_put(neigh) }
        let what = forwarding ? "forwarding entry \(entry.mac) -> \(entry.address)" : "neighbour \(entry.address) -> \(entry.mac)"
        try check(rtnl_neigh_add(sk, neigh, NLM_F_CREATE | NLM_F_REPLACE), "add \(what) on \(link.name)")
    }

    /// Removes a neighbour or FDB entry; gone already is fine.
    public func deleteEntry(_ entry: OverlayEntry, on link: LinkInfo, forwarding: Bool) throws(NetlinkError) {
        let neigh = try entryObject(entry, on: link, forwarding: forwarding)
        defer { rtnl_neigh_put(neigh) }
        let rc = rtnl_neigh_delete(sk, neigh, 0)
        if rc < 0 {
            let e = NetlinkError("remove entry \(entry.mac) of \(link.name)", code: rc)
            if !e.isNotFound { throw e }
        }
    }

    /// The permanent entries of `link`: neighbours, or with `forwarding` its FDB's remote ends.
    public func entries(on link: LinkInfo, forwarding: Bool) throws(NetlinkError) -> [OverlayEntry] {
        let what = forwarding ? "list the forwarding entries of \(link.name)" : "list the neighbours of \(link.name)"
        return try dump(what, fill: { sk, cache in
            guard forwarding else { return rtnl_neigh_alloc_cache(sk, &cache) }
            // The FDB is dumped only when asked for the bridge family.
            let rc = nl_cache_alloc_name("route/neigh", &cache)
            guard rc >= 0, let cache else { return rc }
            nl_cache_set_arg1(cache, Int32(AF_BRIDGE))
            return nl_cache_refill(sk, cache)
        }) { neigh in
            let family = rtnl_neigh_get_family(neigh)
            guard rtnl_neigh_get_ifindex(neigh) == link.index,
                  forwarding ? family == AF_BRIDGE : family != AF_BRIDGE,
                  rtnl_neigh_get_state(neigh) & Int32(NUD_PERMANENT) != 0,
                  let ll = rtnl_neigh_get_lladdr(neigh), let dstAddr = rtnl_neigh_get_dst(neigh) else { return nil }
            // An FDB entry's destination comes back with the bridge family:
            // read it by its length.
            let length = Int(nl_addr_get_len(dstAddr))
            guard length == 4 || length == 16, let base = nl_addr_get_binary_addr(dstAddr),
                  let dst = IPAddress(bytes: Array(UnsafeRawBufferPointer(start: base, count: length))) else { return nil }
            return OverlayEntry(address: dst, mac: formatMAC(ll))
        }
    }

    private func entryObject(_ entry: OverlayEntry, on link: LinkInfo, forwarding: Bool) throws(NetlinkError) -> OpaquePointer {
        guard let neigh = rtnl_neigh_alloc() else { throw NetlinkError("allocate neighbour", code: NLE_NOMEM) }
        do throws(NetlinkError) {
            rtnl_neigh_set_ifindex(neigh, link.index)
            rtnl_neigh_set_state(neigh, Int32(NUD_PERMANENT))
            try withLinkLayerAddress(entry.mac) { rtnl_neigh_set_lladdr(neigh, $0) }
            let dst = try AddressObject(entry.address, prefixLength: entry.address.bitWidth)
            try check(rtnl_neigh_set_dst(neigh, dst.pointer), "set neighbour address \(entry.address)")
            if forwarding {
                // After the destination: libnl refuses an IPv4 destination on an
                // AF_BRIDGE entry once the family is set, though the kernel takes it.
                rtnl_neigh_set_family(neigh, Int32(AF_BRIDGE))
                rtnl_neigh_set_flags(neigh, UInt32(NTF_SELF))
            }
            return neigh
        } catch {
            rtnl_neigh_put(neigh)
            throw error
        }
    }
}

extension RouteSocket {
    /// The link that holds address `ip`, if any.
    public func link(holding ip: IPAddress) throws(NetlinkError) -> LinkInfo? {
        let holders = try dump("list addresses", fill: { rtnl_addr_alloc_cache($0, &$1) }) { addr in
            readPrefix(rtnl_addr_get_local(addr), family: rtnl_addr_get_family(addr))?.address == ip
                ? rtnl_addr_get_ifindex(addr) : nil
        }
        guard let index = holders.first else { return nil }
        return try link(index: index)
    }
}

