#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import BerthNet
import BerthSystem

/// What the kernel reports about one network interface.
public struct LinkInfo: Equatable, Sendable {
    public var index: Int32
    public var name: String
    /// The link kind ("bridge", "veth"), or "" for a device without one.
    public var kind: String
    /// Hardware address, lower-case "aa:bb:cc:dd:ee:ff" ("" when none).
    public var mac: String
    public var mtu: Int
    /// Index of the bridge (or bond) this link is a port of; 0 when none.
    public var master: Int32
    public var isUp: Bool
    public var isPromiscuous: Bool
}

/// Owns one `rtnl_link` object and releases it.
final class LinkObject {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { rtnl_link_put(pointer) }

    /// A new, empty link object, owned from the moment it exists.
    static func allocate() throws(NetlinkError) -> LinkObject {
        guard let raw = rtnl_link_alloc() else { throw NetlinkError("allocate link", code: NLE_NOMEM) }
        return LinkObject(raw)
    }
}

/// The attributes of the veth ends that Berth sets when it creates a pair.
public struct VethEnd: Sendable {
    public var name: String
    public var mtu: Int?
    /// MAC to give the end; nil lets the kernel choose.
    public var mac: String?
    public var up: Bool

    public init(name: String, mtu: Int? = nil, mac: String? = nil, up: Bool = true) {
        self.name = name
        self.mtu = mtu
        self.mac = mac
        self.up = up
    }
}

extension RouteSocket {
    /// The link called `name`, or nil when there is none. One request.
    public func link(named name: String) throws(NetlinkError) -> LinkInfo? {
        try fetchLink(index: 0, name: name)
    }

    public func link(index: Int32) throws(NetlinkError) -> LinkInfo? {
        try fetchLink(index: index, name: nil)
    }

    private func fetchLink(index: Int32, name: String?) throws(NetlinkError) -> LinkInfo? {
        var result: OpaquePointer?
        let rc = rtnl_link_get_kernel(sk, index, name, &result)
        if rc < 0 {
            let e = NetlinkError("look up link \(name ?? String(index))", code: rc)
            if e.isNotFound { return nil }
            throw e
        }
        guard let result else { return nil }
        let link = LinkObject(result)
        return LinkInfo(link.pointer)
    }

    /// Creates a bridge, up, with the given MTU and a fixed MAC (a bridge
    /// with a MAC of its own keeps it; otherwise it takes its ports' lowest).
    /// Throws `isExists` when a link of that name exists already.
    public func createBridge(name: String, mtu: Int?, mac: String) throws(NetlinkError) {
        let link = try LinkObject.allocate()
        try check(rtnl_link_set_type(link.pointer, "bridge"), "create bridge \(name)")
        rtnl_link_set_name(link.pointer, name)
        if let mtu { rtnl_link_set_mtu(link.pointer, UInt32(mtu)) }
        try setMAC(link.pointer, mac)
        rtnl_link_set_flags(link.pointer, UInt32(IFF_UP.rawValue))
        try check(rtnl_link_add(sk, link.pointer, NLM_F_CREATE | NLM_F_EXCL), "create bridge \(name)")
    }

    /// Creates a veth pair in one request: `host` in this socket's namespace,
    /// a port of `master` when given; `peer` created directly inside
    /// `peerNamespace` under its final name (nothing is moved or renamed later).
    /// Throws `isExists` when either name is taken.
    public func createVethPair(host: VethEnd, master: Int32?, peer: VethEnd,
                               peerNamespace: NetworkNamespace) throws(NetlinkError) {
        guard let raw = rtnl_link_veth_alloc() else { throw NetlinkError("allocate veth", code: NLE_NOMEM) }
        defer { rtnl_link_veth_release(raw) }
        guard let peerRaw = rtnl_link_veth_get_peer(raw) else { throw NetlinkError("allocate veth", code: NLE_NOMEM) }
        defer { rtnl_link_put(peerRaw) }

        try configure(raw, host)
        if let master { rtnl_link_set_master(raw, master) }
        try configure(peerRaw, peer)
        // One TX and one RX queue per end: what a veth uses anyway (the kernel
        // makes one per CPU, then cuts the real count to one). Asked for at
        // creation, the kernel skips that cut, which costs two expedited RCU
        // grace periods under the RTNL lock (synchronize_net, seen in
        // sched_switch traces; it grows with the machine's load).
        for end in [raw, peerRaw] {
            rtnl_link_set_num_tx_queues(end, 1)
            rtnl_link_set_num_rx_queues(end, 1)
        }
        rtnl_link_set_ns_fd(peerRaw, peerNamespace.descriptor.rawValue)
        try check(rtnl_link_add(sk, raw, NLM_F_CREATE | NLM_F_EXCL),
                  "create veth \(host.name) with peer \(peer.name) in \(peerNamespace.path)")
    }

    private func configure(_ link: OpaquePointer, _ end: VethEnd) throws(NetlinkError) {
        rtnl_link_set_name(link, end.name)
        if let mtu = end.mtu { rtnl_link_set_mtu(link, UInt32(mtu)) }
        if let mac = end.mac { try setMAC(link, mac) }
        if end.up { rtnl_link_set_flags(link, UInt32(IFF_UP.rawValue)) }
    }

    private func setMAC(_ link: OpaquePointer, _ mac: String) throws(NetlinkError) {
        try withLinkLayerAddress(mac) { rtnl_link_set_addr(link, $0) }
    }

    /// Brings `link` up.
    public func setUp(_ link: LinkInfo) throws(NetlinkError) {
        try changeLink(index: link.index, "bring up \(link.name)") { rtnl_link_set_flags($0, UInt32(IFF_UP.rawValue)) }
    }

    /// Sets `link`'s MTU and brings it up.
    public func setMTUAndUp(_ link: LinkInfo, mtu: Int) throws(NetlinkError) {
        try changeLink(index: link.index, "set the MTU of \(link.name) to \(mtu) and bring it up") {
            rtnl_link_set_mtu($0, UInt32(mtu))
            rtnl_link_set_flags($0, UInt32(IFF_UP.rawValue))
        }
    }

    /// Takes `link` down.
    public func setDown(_ link: LinkInfo) throws(NetlinkError) {
        try changeLink(index: link.index, "take down \(link.name)") { rtnl_link_unset_flags($0, UInt32(IFF_UP.rawValue)) }
    }

    /// Makes link `index` a port of `master`.
    public func setMaster(index: Int32, master: Int32) throws(NetlinkError) {
        try changeLink(index: index, "attach link \(index) to \(master)") { rtnl_link_set_master($0, master) }
    }

    private func changeLink(index: Int32, _ what: String, _ apply: (OpaquePointer) -> Void) throws(NetlinkError) {
        let orig = try LinkObject.allocate(), changes = try LinkObject.allocate()
        rtnl_link_set_ifindex(orig.pointer, index)
        apply(changes.pointer)
        try check(rtnl_link_change(sk, orig.pointer, changes.pointer, 0), what)
    }

    /// Deletes `link` (by its index). Returns false when there was none.
    @discardableResult
    public func deleteLink(_ link: LinkInfo) throws(NetlinkError) -> Bool {
        try deleteLink("delete \(link.name)") { rtnl_link_set_ifindex($0, link.index) }
    }

    /// Every link of the socket's namespace.
    public func links() throws(NetlinkError) -> [LinkInfo] {
        try dump("list links", fill: { rtnl_link_alloc_cache($0, AF_UNSPEC, &$1) }) { LinkInfo($0) }
    }

    /// How many links are ports of `master` (a bridge). Reads every link.
    public func portCount(master: Int32) throws(NetlinkError) -> Int {
        try dump("list links", fill: { rtnl_link_alloc_cache($0, AF_UNSPEC, &$1) }) { link in
            rtnl_link_get_master(link) == master ? () : nil
        }.count
    }

    /// Deletes the link called `name`. Returns false when there was none.
    @discardableResult
    public func deleteLink(named name: String) throws(NetlinkError) -> Bool {
        try deleteLink("delete link \(name)") { rtnl_link_set_name($0, name) }
    }

    /// Deletes the link that `identify` names in a new link object.
    private func deleteLink(_ what: String, _ identify: (OpaquePointer) -> Void) throws(NetlinkError) -> Bool {
        let link = try LinkObject.allocate()
        identify(link.pointer)
        let rc = rtnl_link_delete(sk, link.pointer)
        if rc < 0 {
            let e = NetlinkError(what, code: rc)
            if e.isNotFound { return false }
            throw e
        }
        return true
    }
}

extension LinkInfo {
    init(_ link: OpaquePointer) {
        let flags = rtnl_link_get_flags(link)
        self.init(
            index: rtnl_link_get_ifindex(link),
            name: rtnl_link_get_name(link).map { String(cString: $0) } ?? "",
            kind: rtnl_link_get_type(link).map { String(cString: $0) } ?? "",
            mac: rtnl_link_get_addr(link).map(formatMAC) ?? "",
            mtu: Int(rtnl_link_get_mtu(link)),
            master: rtnl_link_get_master(link),
            isUp: flags & UInt32(IFF_UP.rawValue) != 0,
            isPromiscuous: flags & UInt32(IFF_PROMISC.rawValue) != 0)
    }
}

/// Gives `body` MAC `mac` as a libnl address, released after (the setters take their own reference).
func withLinkLayerAddress(_ mac: String, _ body: (OpaquePointer) -> Void) throws(NetlinkError) {
    guard let bytes = parseMAC(mac) else { throw NetlinkError("parse MAC \(mac)", code: NLE_INVAL) }
    guard let addr = bytes.withUnsafeBytes({ nl_addr_build(AF_LLC, UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) })
    else { throw NetlinkError("build MAC \(mac)", code: NLE_NOMEM) }
    defer { nl_addr_put(addr) }
    body(addr)
}

func formatMAC(_ addr: OpaquePointer) -> String {
    let length = Int(nl_addr_get_len(addr))
    guard length > 0, let base = nl_addr_get_binary_addr(addr) else { return "" }
    return hexString(UnsafeRawBufferPointer(start: base, count: length), separator: ":")
}
