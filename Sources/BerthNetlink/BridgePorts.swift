#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import BerthNet
import BerthSystem

/// A VLAN on a bridge port.
public struct PortVLAN: Equatable, Sendable {
    public var id: Int
    /// Untagged frames entering the port belong to this VLAN.
    public var isPVID: Bool
    /// Frames of this VLAN leave the port untagged.
    public var isUntagged: Bool

    public init(id: Int, isPVID: Bool = false, isUntagged: Bool = false) {
        self.id = id
        self.isPVID = isPVID
        self.isUntagged = isUntagged
    }
}

/// Builds and sends one raw rtnetlink request. Used only where libnl 3.7 has
/// no call: bridge port isolation, bridge VLAN filtering and port VLANs.
final class RawRequest {
    let msg: OpaquePointer
    private var sent = false

    init(type: Int32, flags: Int32 = 0, family: Int32, index: Int32) throws(NetlinkError) {
        guard let msg = nlmsg_alloc_simple(type, NLM_F_REQUEST | NLM_F_ACK | flags) else {
            throw NetlinkError("allocate netlink message", code: NLE_NOMEM)
        }
        self.msg = msg
        var header = ifinfomsg()
        header.ifi_family = UInt8(truncatingIfNeeded: family)
        header.ifi_index = index
        try check(nlmsg_append(msg, &header, MemoryLayout<ifinfomsg>.size, Int32(NLMSG_ALIGNTO)), "build netlink message")
    }

    deinit { if !sent { nlmsg_free(msg) } }

    func nest(_ type: Int32, _ body: () throws(NetlinkError) -> Void) throws(NetlinkError) {
        guard let start = nla_nest_start(msg, type | Int32(NLA_F_NESTED)) else {
            throw NetlinkError("build netlink message", code: NLE_MSGSIZE)
        }
        try body()
        try check(nla_nest_end(msg, start), "build netlink message")
    }

    func putU8(_ type: Int32, _ value: UInt8) throws(NetlinkError) {
        try check(nla_put_u8(msg, type, value), "build netlink message")
    }

    func putU16(_ type: Int32, _ value: UInt16) throws(NetlinkError) {
        try check(nla_put_u16(msg, type, value), "build netlink message")
    }

    func putString(_ type: Int32, _ value: String) throws(NetlinkError) {
        try check(nla_put_string(msg, type, value), "build netlink message")
    }

    func putVLAN(_ vlan: PortVLAN) throws(NetlinkError) {
        var info = bridge_vlan_info()
        info.vid = UInt16(vlan.id)
        if vlan.isPVID { info.flags |= UInt16(BRIDGE_VLAN_INFO_PVID) }
        if vlan.isUntagged { info.flags |= UInt16(BRIDGE_VLAN_INFO_UNTAGGED) }
        try check(nla_put(msg, Int32(IFLA_BRIDGE_VLAN_INFO), Int32(MemoryLayout<bridge_vlan_info>.size), &info),
                  "build netlink message")
    }

    /// Sends the request on `socket` and waits for the kernel's answer.
    func send(on socket: RouteSocket, _ what: @autoclosure () -> String) throws(NetlinkError) {
        sent = true  // nl_send_sync frees the message whatever happens
        try check(nl_send_sync(socket.sk, msg), what())
    }
}

extension RouteSocket {
    /// Sets a bridge port's hairpin mode and isolation (IFLA_PROTINFO of an AF_BRIDGE request).
    public func setBridgePort(_ link: LinkInfo, hairpin: Bool, isolated: Bool) throws(NetlinkError) {
        let request = try RawRequest(type: Int32(RTM_SETLINK), family: Int32(AF_BRIDGE), index: link.index)
        try request.nest(Int32(IFLA_PROTINFO)) { () throws(NetlinkError) in
            try request.putU8(Int32(IFLA_BRPORT_MODE), hairpin ? 1 : 0)
            try request.putU8(Int32(IFLA_BRPORT_ISOLATED), isolated ? 1 : 0)
        }
        try request.send(on: self, "set bridge port options of \(link.name)")
    }

    /// Turns the promiscuous flag of `link` on or off.
    public func setPromiscuous(_ link: LinkInfo, _ on: Bool) throws(NetlinkError) {
        let orig = try LinkObject.allocate(), changes = try LinkObject.allocate()
        rtnl_link_set_ifindex(orig.pointer, link.index)
        if on {
            rtnl_link_set_flags(changes.pointer, UInt32(IFF_PROMISC.rawValue))
        } else {
            rtnl_link_unset_flags(changes.pointer, UInt32(IFF_PROMISC.rawValue))
        }
        try check(rtnl_link_change(sk, orig.pointer, changes.pointer, 0), "set promiscuous mode of \(link.name)")
    }

    /// Creates a bridge with VLAN filtering on, up, with MTU and MAC (one request).
    /// On a kernel without bridge VLAN filtering this fails (`isNotSupported`) and creates nothing.
    public func createVLANFilteringBridge(name: String, mtu: Int?, mac: String) throws(NetlinkError) {
        let request = try RawRequest(type: Int32(RTM_NEWLINK), flags: NLM_F_CREATE | NLM_F_EXCL,
                                     family: Int32(AF_UNSPEC), index: 0)
        try request.putString(Int32(IFLA_IFNAME), name)
        if let mtu { try check(nla_put_u32(request.msg, Int32(IFLA_MTU), UInt32(mtu)), "build netlink message") }
        if let bytes = parseMAC(mac) {
            var copy = bytes
            try check(nla_put(request.msg, Int32(IFLA_ADDRESS), 6, &copy), "build netlink message")
        }
        try request.nest(Int32(IFLA_LINKINFO)) { () throws(NetlinkError) in
            try request.putString(Int32(IFLA_INFO_KIND), "bridge")
            try request.nest(Int32(IFLA_INFO_DATA)) { () throws(NetlinkError) in
                try request.putU8(Int32(IFLA_BR_VLAN_FILTERING), 1)
            }
        }
        try request.send(on: self, "create bridge \(name) with VLAN filtering")
        guard let created = try link(named: name) else { throw NetlinkError.notFound("look up bridge \(name) just made") }
        try setUp(created)
    }

    /// Turns VLAN filtering on for an existing bridge.
    public func enableVLANFiltering(bridgeIndex: Int32) throws(NetlinkError) {
        let request = try RawRequest(type: Int32(RTM_NEWLINK), family: Int32(AF_UNSPEC), index: bridgeIndex)
        try request.nest(Int32(IFLA_LINKINFO)) { () throws(NetlinkError) in
            try request.putString(Int32(IFLA_INFO_KIND), "bridge")
            try request.nest(Int32(IFLA_INFO_DATA)) { () throws(NetlinkError) in
                try request.putU8(Int32(IFLA_BR_VLAN_FILTERING), 1)
            }
        }
        try request.send(on: self, "turn on VLAN filtering of bridge \(bridgeIndex)")
    }

    /// Adds (or, with `remove`, deletes) VLANs on bridge port `link`; with
    /// `bridgeSelf`, on the bridge device itself (`bridge vlan add ... self`).
    public func changePortVLANs(of link: LinkInfo, _ vlans: [PortVLAN], remove: Bool = false,
                                bridgeSelf: Bool = false) throws(NetlinkError) {
        let request = try RawRequest(type: Int32(remove ? RTM_DELLINK : RTM_SETLINK), family: Int32(AF_BRIDGE), index: link.index)
        try request.nest(Int32(IFLA_AF_SPEC)) { () throws(NetlinkError) in
            if bridgeSelf { try request.putU16(Int32(IFLA_BRIDGE_FLAGS), UInt16(BRIDGE_FLAGS_SELF)) }
            for vlan in vlans { try request.putVLAN(vlan) }
        }
        try request.send(on: self, "\(remove ? "remove" : "add") VLANs \(vlans.map(\.id)) on \(link.name)")
    }

    /// Creates VLAN device `name` on `parent` for VLAN `id`, up.
    public func createVLANDevice(name: String, parent: Int32, id: Int) throws(NetlinkError) {
        guard let raw = rtnl_link_vlan_alloc() else { throw NetlinkError("allocate vlan", code: NLE_NOMEM) }
        let link = LinkObject(raw)
        rtnl_link_set_name(link.pointer, name)
        rtnl_link_set_link(link.pointer, parent)
        try check(rtnl_link_vlan_set_id(link.pointer, UInt16(id)), "set vlan id")
        rtnl_link_set_flags(link.pointer, UInt32(IFF_UP.rawValue))
        try check(rtnl_link_add(sk, link.pointer, NLM_F_CREATE | NLM_F_EXCL), "create VLAN device \(name)")
    }
}

/// A bridge port's options as the kernel reports them in sysfs.
public struct BridgePortState: Equatable, Sendable {
    public var hairpin: Bool
    public var isolated: Bool

    /// Reads /sys/class/net/NAME/brport/; nil when NAME is not a bridge port.
    public static func read(port name: String) -> BridgePortState? {
        func flag(_ file: String) -> Bool? {
            guard let fd = try? OwnedDescriptor(openingForReading: "/sys/class/net/\(name)/brport/\(file)"),
                  let bytes = try? fd.readAll() else { return nil }
            return bytes.first == UInt8(ascii: "1")
        }
        guard let hairpin = flag("hairpin_mode") else { return nil }
        return BridgePortState(hairpin: hairpin, isolated: flag("isolated") ?? false)
    }
}
