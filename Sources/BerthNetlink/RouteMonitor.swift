#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import Synchronization

/// Tells when someone else changes the routes, neighbours or FDB entries an
/// owner programs: an rtnetlink socket subscribed to the route and
/// neighbour groups of the namespace it is opened in, read on a thread of
/// its own. A notification counts when it is about a route of `protocol`
/// or an entry on the device `ifindex`, and was not caused by the owner's
/// own socket (`ignoringPort`: the kernel stamps a notification with the
/// port of the socket whose request caused it). A lost notification (the
/// socket's buffer overran) counts as a change too.
public final class RouteMonitor: @unchecked Sendable {
    private let sk: OpaquePointer
    private let context: Unmanaged<Context>
    private var thread: pthread_t?
    /// Set by the first `stop()`: the context is released then, never touched again.
    private let ended = Mutex(false)

    final class Context {
        let routeProtocol: UInt8
        let ifindex: Int32?
        let ignoringPort: UInt32
        let onChange: @Sendable (String) -> Void
        let stopped = Mutex(false)

        init(routeProtocol: UInt8, ifindex: Int32?, ignoringPort: UInt32, onChange: @escaping @Sendable (String) -> Void) {
            self.routeProtocol = routeProtocol
            self.ifindex = ifindex
            self.ignoringPort = ignoringPort
            self.onChange = onChange
        }

        var isStopped: Bool { stopped.withLock { $0 } }
    }

    /// Starts watching; `onChange` is called on the monitor's thread with
    /// what changed ("route deleted", "neighbour added", ...).
    public init(routeProtocol: UInt8, ifindex: Int32?, ignoringPort: UInt32,
                onChange: @escaping @Sendable (String) -> Void) throws(NetlinkError) {
        guard let sk = nl_socket_alloc() else { throw NetlinkError("nl_socket_alloc", code: NLE_NOMEM) }
        nl_socket_disable_seq_check(sk)
        var rc = nl_connect(sk, NETLINK_ROUTE)
        for group in [RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE, RTNLGRP_NEIGH] where rc >= 0 {
            rc = nl_socket_add_membership(sk, Int32(group.rawValue))
        }
        if rc < 0 {
            nl_socket_free(sk)
            throw NetlinkError("subscribe to route and neighbour changes", code: rc)
        }
        // A receive timeout, so that the thread sees `stop()` within half a second.
        var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(nl_socket_get_fd(sk), SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.sk = sk
        context = Unmanaged.passRetained(Context(routeProtocol: routeProtocol, ifindex: ifindex, ignoringPort: ignoringPort, onChange: onChange))
        nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, { message, argument in
            guard let message, let argument else { return Int32(NL_OK.rawValue) }
            let context = Unmanaged<Context>.fromOpaque(argument).takeUnretainedValue()
            if let what = RouteMonitor.describe(nlmsg_hdr(message), context) { context.onChange(what) }
            return Int32(NL_OK.rawValue)
        }, context.toOpaque())
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { argument in
            let monitor = Unmanaged<RouteMonitor>.fromOpaque(argument!).takeRetainedValue()
            monitor.loop()
            return nil
        }, box.toOpaque())
        guard started == 0 else {
            box.release()
            context.release()
            nl_socket_free(sk)
            throw NetlinkError("start the route monitor's thread", code: NLE_FAILURE)
        }
        self.thread = thread
    }

    private func loop() {
        let context = self.context.takeUnretainedValue()
        while !context.isStopped {
            let rc = nl_recvmsgs_default(sk)
            if rc == -NLE_NOMEM || rc == -NLE_DUMP_INTR {
                // ENOBUFS: notifications were lost; whatever they said, look again.
                if !context.isStopped { context.onChange("notifications lost") }
            }
        }
    }

    /// What a notification says, when it is about the owner's routes or device and not its own doing.
    static func describe(_ header: UnsafeMutablePointer<nlmsghdr>, _ context: Context) -> String? {
        let h = header.pointee
        if h.nlmsg_pid != 0 && h.nlmsg_pid == context.ignoringPort { return nil }
        // NLMSG_HDRLEN: the header's size, aligned to 4 (it is 16).
        let headerLength = (MemoryLayout<nlmsghdr>.size + 3) & ~3
        let payload = UnsafeRawPointer(header) + headerLength
        let length = Int(h.nlmsg_len) - headerLength
        switch Int32(h.nlmsg_type) {
        case Int32(RTM_NEWROUTE), Int32(RTM_DELROUTE):
            // struct rtmsg: family, dst_len, src_len, tos, table, protocol, ...
            guard length >= 6, payload.load(fromByteOffset: 5, as: UInt8.self) == context.routeProtocol else { return nil }
            return h.nlmsg_type == UInt16(RTM_NEWROUTE) ? "route added" : "route deleted"
        case Int32(RTM_NEWNEIGH), Int32(RTM_DELNEIGH):
            // struct ndmsg: family, pad, pad (2), ifindex (4), ...
            guard let ifindex = context.ifindex, length >= 8,
                  payload.loadUnaligned(fromByteOffset: 4, as: Int32.self) == ifindex else { return nil }
            let family = payload.load(as: UInt8.self)
            let what = family == UInt8(AF_BRIDGE) ? "FDB entry" : "neighbour"
            return "\(what) \(h.nlmsg_type == UInt16(RTM_NEWNEIGH) ? "added or changed" : "deleted")"
        default:
            return nil
        }
    }

    /// Stops the thread (within half a second) and closes the socket.
    public func stop() {
        let first = ended.withLock { ended -> Bool in
            defer { ended = true }
            return !ended
        }
        guard first, let thread else { return }
        let context = self.context.takeUnretainedValue()
        context.stopped.withLock { $0 = true }
        pthread_join(thread, nil)
        nl_socket_free(sk)
        self.context.release()
    }

    deinit { stop() }
}

extension RouteSocket {
    /// The port the kernel knows this socket by (it stamps the
    /// notifications this socket's requests cause with it).
    public var localPort: UInt32 { nl_socket_get_local_port(sk) }
}
