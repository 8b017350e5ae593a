#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import BerthNet

/// A route as read back from the kernel.
public struct RouteInfo: Equatable, Sendable {
    public var dst: IPPrefix
    public var gateway: IPAddress?
    public var outputIndex: Int32
    public var table: UInt32
    public var priority: UInt32
}

/// A route to add through a link: a destination, an optional gateway and
/// the attributes a route may carry (table, scope, priority, MTU, advertised MSS).
public struct RouteSpec: Equatable, Sendable {
    public var destination: IPPrefix
    public var gateway: IPAddress?
    public var table: Int?
    public var scope: Int?
    public var priority: Int?
    public var mtu: Int?
    public var advmss: Int?

    public init(destination: IPPrefix, gateway: IPAddress? = nil, table: Int? = nil, scope: Int? = nil,
                priority: Int? = nil, mtu: Int? = nil, advmss: Int? = nil) {
        self.destination = destination
        self.gateway = gateway
        self.table = table
        self.scope = scope
        self.priority = priority
        self.mtu = mtu
        self.advmss = advmss
    }
}

/// An address on a link, with its duplicate address detection state.
public struct AddressState: Equatable, Sendable {
    public var prefix: IPPrefix
    public var index: Int32
    /// IPv6 DAD still running: the address cannot be used yet.
    public var isTentative: Bool
    /// IPv6 DAD found the address in use by another host.
    public var dadFailed: Bool
}

/// Owns one `rtnl_addr`: an address of a link, as a request to add or remove it.
final class AddressRequest {
    let pointer: OpaquePointer
    deinit { rtnl_addr_put(pointer) }

    init(_ address: IPPrefix, on link: LinkInfo) throws(NetlinkError) {
        guard let raw = rtnl_addr_alloc() else { throw NetlinkError("allocate address", code: NLE_NOMEM) }
        pointer = raw
        let local = try AddressObject(address.address, prefixLength: address.prefixLength)
        rtnl_addr_set_ifindex(raw, link.index)
        try check(rtnl_addr_set_local(raw, local.pointer), "set address \(address)")
    }
}

/// Owns one `nl_addr` and releases it.
final class AddressObject {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { nl_addr_put(pointer) }

    convenience init(_ ip: IPAddress, prefixLength: Int) throws(NetlinkError) {
        let family = ip.family == .v4 ? AF_INET : AF_INET6
        guard let raw = ip.bytes.withUnsafeBytes({
            nl_addr_build(family, UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count)
        }) else { throw NetlinkError("build address", code: NLE_NOMEM) }
        self.init(raw)
        nl_addr_set_prefixlen(pointer, Int32(prefixLength))
    }
}

/// Reads an `nl_addr` as an IP prefix; an empty address (a default route's
/// destination) reads as the zero address of `family`.
func readPrefix(_ addr: OpaquePointer?, family: Int32) -> IPPrefix? {
    let width = family == AF_INET ? 4 : 16
    guard let addr else {
        return IPPrefix(address: IPAddress(bytes: [UInt8](repeating: 0, count: width))!, prefixLength: 0)
    }
    let length = Int(nl_addr_get_len(addr))
    var bytes = [UInt8](repeating: 0, count: width)
    if length == width, let base = nl_addr_get_binary_addr(addr) {
        bytes = Array(UnsafeRawBufferPointer(start: base, count: length))
    } else if length != 0 {
        return nil
    }
    return IPPrefix(address: IPAddress(bytes: bytes)!, prefixLength: Int(nl_addr_get_prefixlen(addr)))
}

extension RouteSocket {
    /// Adds `address` to `link`. IPv4 gets its broadcast address; with
    /// `skipDAD`, IPv6 is usable at once instead of tentative for 1-2 s.
    /// Throws `isExists` when the link has that address already.
    public func addAddress(_ address: IPPrefix, to link: LinkInfo, skipDAD: Bool = true) throws(NetlinkError) {
        let request = try AddressRequest(address, on: link)
        let raw = request.pointer
        if address.family == .v4, address.prefixLength < 31 {
            let broadcast = try AddressObject(address.lastAddress, prefixLength: 32)
            try check(rtnl_addr_set_broadcast(raw, broadcast.pointer), "set broadcast of \(address)")
        }
        if address.family == .v6, skipDAD {
            rtnl_addr_set_flags(raw, UInt32(IFA_F_NODAD))
        }
        try check(rtnl_addr_add(sk, raw, NLM_F_EXCL), "add address \(address) to \(link.name)")
    }

    /// The addresses of `link`.
    public func addresses(of link: LinkInfo) throws(NetlinkError) -> [IPPrefix] {
        try addressStates(of: link).map(\.prefix)
    }

    /// The addresses of `link` with their duplicate-address-detection state.
    public func addressStates(of link: LinkInfo) throws(NetlinkError) -> [AddressState] {
        let index = link.index
        return try dump("list the addresses of \(link.name)", fill: { rtnl_addr_alloc_cache($0, &$1) }) { addr in
            guard index == 0 || rtnl_addr_get_ifindex(addr) == index,
                  let p = readPrefix(rtnl_addr_get_local(addr), family: rtnl_addr_get_family(addr)),
                  let prefix = IPPrefix(address: p.address, prefixLength: Int(rtnl_addr_get_prefixlen(addr)))
            else { return nil }
            let flags = rtnl_addr_get_flags(addr)
            return AddressState(
                prefix: prefix,
                index: rtnl_addr_get_ifindex(addr),
                isTentative: flags & UInt32(IFA_F_TENTATIVE) != 0,
                dadFailed: flags & UInt32(IFA_F_DADFAILED) != 0)
        }
    }

    /// Removes `address` from `link`.
    public func deleteAddress(_ address: IPPrefix, from link: LinkInfo) throws(NetlinkError) {
        let request = try AddressRequest(address, on: link)
        try check(rtnl_addr_delete(sk, request.pointer, 0), "remove address \(address) from \(link.name)")
    }

    /// Adds `spec` leaving through `link`. Throws `isExists` when the same route exists.
    public func addRoute(_ spec: RouteSpec, through link: LinkInfo) throws(NetlinkError) {
        let outputIndex = link.index
        guard let route = rtnl_route_alloc() else { throw NetlinkError("allocate route", code: NLE_NOMEM) }
        defer { rtnl_route_put(route) }
        let family = spec.destination.family == .v4 ? AF_INET : AF_INET6
        rtnl_route_set_family(route, UInt8(family))
        let dst = try AddressObject(spec.destination.network.address, prefixLength: spec.destination.prefixLength)
        try check(rtnl_route_set_dst(route, dst.pointer), "set route destination \(spec.destination)")
        rtnl_route_set_table(route, UInt32(spec.table ?? Int(RT_TABLE_MAIN.rawValue)))
        rtnl_route_set_protocol(route, UInt8(RTPROT_BOOT))
        if let scope = spec.scope { rtnl_route_set_scope(route, UInt8(truncatingIfNeeded: scope)) }
        if let priority = spec.priority { rtnl_route_set_priority(route, UInt32(priority)) }
        if let mtu = spec.mtu { try check(rtnl_route_set_metric(route, Int32(RTAX_MTU), UInt32(mtu)), "set route mtu") }
        if let advmss = spec.advmss {
            try check(rtnl_route_set_metric(route, Int32(RTAX_ADVMSS), UInt32(advmss)), "set route advmss")
        }
        guard let hop = rtnl_route_nh_alloc() else { throw NetlinkError("allocate next hop", code: NLE_NOMEM) }
        rtnl_route_add_nexthop(route, hop)  // the route owns the hop from here, whatever fails next
        rtnl_route_nh_set_ifindex(hop, outputIndex)
        if let gw = spec.gateway {
            let gateway = try AddressObject(gw, prefixLength: gw.bitWidth)
            rtnl_route_nh_set_gateway(hop, gateway.pointer)
        }
        let via = spec.gateway.map { " via \($0)" } ?? ""
        try check(rtnl_route_add(sk, route, NLM_F_EXCL), "add route \(spec.destination)\(via) through \(link.name)")
    }

    /// The routes whose first next hop leaves through `link`, in every table.
    public func routes(through link: LinkInfo) throws(NetlinkError) -> [RouteInfo] {
        let index = link.index
        return try dump("list the routes through \(link.name)", fill: { rtnl_route_alloc_cache($0, AF_UNSPEC, 0, &$1) }) { route in
            let family = Int32(rtnl_route_get_family(route))
            guard rtnl_route_get_nnexthops(route) > 0, let hop = rtnl_route_nexthop_n(route, 0),
                  rtnl_route_nh_get_ifindex(hop) == index,
                  let dst = readPrefix(rtnl_route_get_dst(route), family: family)
            else { return nil }
            let gw = rtnl_route_nh_get_gateway(hop).flatMap { readPrefix($0, family: family)?.address }
            return RouteInfo(dst: dst.network, gateway: gw, outputIndex: index,
                             table: rtnl_route_get_table(route), priority: rtnl_route_get_priority(route))
        }
    }

    /// The names of the links the main table's default routes (IPv4 and
    /// IPv6) leave through: the host's way out.
    public func defaultRouteLinks() throws(NetlinkError) -> [String] {
        let indexes = try dump("list the default routes", fill: { rtnl_route_alloc_cache($0, AF_UNSPEC, 0, &$1) }) { route -> Int32? in
            let family = Int32(rtnl_route_get_family(route))
            guard rtnl_route_get_table(route) == UInt32(RT_TABLE_MAIN.rawValue),
                  let dst = readPrefix(rtnl_route_get_dst(route), family: family), dst.prefixLength == 0,
                  rtnl_route_get_nnexthops(route) > 0, let hop = rtnl_route_nexthop_n(route, 0) else { return nil }
            return rtnl_route_nh_get_ifindex(hop)
        }
        var names: [String] = []
        for index in Set(indexes).sorted() {
            if let name = try link(index: index)?.name, !names.contains(name) { names.append(name) }
        }
        return names
    }
}
