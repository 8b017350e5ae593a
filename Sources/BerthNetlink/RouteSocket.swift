#if canImport(Glibc)
import Glibc
#endif
import CLibNL
import BerthSystem

/// A libnl failure. libnl's codes are its own (`NLE_*`), not errno values.
public struct NetlinkError: Error, Equatable, CustomStringConvertible {
    /// The libnl error code, positive (`NLE_EXIST`, `NLE_OBJ_NOTFOUND`, ...).
    public let code: Int32
    public let operation: String

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code < 0 ? -code : code
    }

    /// "No such object", for a look-up that found nothing where something must be.
    public static func notFound(_ operation: String) -> NetlinkError {
        NetlinkError(operation, code: NLE_OBJ_NOTFOUND)
    }

    /// The object already exists (EEXIST from the kernel).
    public var isExists: Bool { code == NLE_EXIST }
    /// No such link, address or route (ENODEV, ENOENT, ESRCH from the kernel).
    public var isNotFound: Bool { code == NLE_OBJ_NOTFOUND || code == NLE_NODEV }
    public var isNotSupported: Bool { code == NLE_OPNOTSUPP }
    /// EPERM or EACCES from the kernel: the process lacks CAP_NET_ADMIN.
    public var isPermissionDenied: Bool { code == NLE_PERM || code == NLE_NOACCESS }

    public var description: String {
        code == 0 ? operation : "\(operation): \(String(cString: nl_geterror(code)))"
    }
}

/// Turns a libnl return code into a thrown `NetlinkError`.
@discardableResult
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(NetlinkError) -> Int32 {
    if rc < 0 { throw NetlinkError(operation(), code: rc) }
    return rc
}

/// A connected rtnetlink socket, bound to the network namespace it was
/// opened in for its whole life.
public final class RouteSocket {
    let sk: OpaquePointer

    /// A socket in the calling thread's current network namespace.
    public init() throws(NetlinkError) {
        guard let sk = nl_socket_alloc() else { throw NetlinkError("nl_socket_alloc", code: NLE_NOMEM) }
        let rc = nl_connect(sk, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(sk)
            throw NetlinkError("connect to rtnetlink", code: rc)
        }
        self.sk = sk
    }

    /// A socket bound to `namespace`: the calling thread enters it only for
    /// the moment the socket is created. Throws `NetworkNamespace.SwitchError`
    /// when the thread cannot enter it, else `NetlinkError`.
    public static func opened(in namespace: NetworkNamespace) throws -> RouteSocket {
        try namespace.perform { try RouteSocket() }
    }

    deinit { nl_socket_free(sk) }
}

extension RouteSocket {
    /// The one walk over a libnl dump: `fill` allocates and fills a cache
    /// (`rtnl_link_alloc_cache` and the like) and returns libnl's code; each
    /// object is handed to `pick`, whose non-nil answers are returned in the
    /// kernel's order. The cache is freed whatever happens.
    func dump<T>(_ what: @autoclosure () -> String,
                 fill: (OpaquePointer, inout OpaquePointer?) -> Int32,
                 _ pick: (OpaquePointer) -> T?) throws(NetlinkError) -> [T] {
        var cache: OpaquePointer?
        let rc = fill(sk, &cache)
        defer { if let cache { nl_cache_free(cache) } }
        try check(rc, what())
        guard let cache else { return [] }
        var out: [T] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            object = nl_cache_get_next(current)
            if let value = pick(current) { out.append(value) }
        }
        return out
    }
}
