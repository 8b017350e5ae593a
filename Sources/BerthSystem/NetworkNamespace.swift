#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBerthSys

/// An open network namespace (a file such as /run/netns/NAME or /proc/PID/ns/net).
///
/// Switching into it is done only by `perform`, synchronously, on the calling
/// thread. `setns(2)` changes the namespace of one thread, not of the
/// process, and Swift concurrency may resume an async function on any thread
/// of its pool after any `await`: code that switched and then suspended could
/// go on in the host namespace, or leave a pool thread in the container's
/// for whatever runs there next. So `perform` enters, runs a synchronous
/// body and returns to the original namespace before the thread can be given
/// to anyone else. Never call it from async code.
public final class NetworkNamespace {
    public enum OpenError: Error, Equatable, CustomStringConvertible {
        /// The path does not exist.
        case missing(String)
        /// The path exists but is not a network namespace.
        case notANetworkNamespace(String, what: String)
        case system(SystemError)

        public var description: String {
            switch self {
            case .missing(let path): return "\(path) does not exist"
            case .notANetworkNamespace(let path, let what): return "\(path) is not a network namespace (it is \(what))"
            case .system(let e): return e.description
            }
        }
    }

    public let path: String
    public let descriptor: OwnedDescriptor

    /// Opens `path` and checks that it is a network namespace.
    public init(path: String) throws(OpenError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { throw .missing(path) }
            throw .system(SystemError.last("open \(path)"))
        }
        descriptor = OwnedDescriptor(adopting: fd)
        let type = berth_namespace_type(fd)
        if type < 0 { throw .system(SystemError.last("inspect \(path)")) }
        if type == 0 {
            var st = stat()
            fstat(fd, &st)
            let what = (st.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "an ordinary file"
            throw .notANetworkNamespace(path, what: what)
        }
        if type != berth_clone_newnet() {
            throw .notANetworkNamespace(path, what: "a namespace of another kind")
        }
    }

    /// The namespace the calling thread is in now.
    public static func current() throws(OpenError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/thread-self/ns/net")
    }

    /// Whether this is the same namespace as the calling thread's: a plugin
    /// must not turn the host's own namespace into a container.
    public func isCurrentThreadNamespace() throws(SystemError) -> Bool {
        let here = try OwnedDescriptor(openingForReading: "/proc/thread-self/ns/net")
        return try here.identity() == descriptor.identity()
    }

    /// The calling thread could not enter the namespace (nothing was done).
    public struct SwitchError: Error, Equatable, CustomStringConvertible {
        public let cause: SystemError

        /// Entering a namespace needs CAP_SYS_ADMIN.
        public var isPermissionDenied: Bool { cause.isPermissionDenied }
        public var description: String { cause.description }
    }

    /// Runs `body` with the calling thread inside this namespace, then moves
    /// the thread back. Sockets opened in `body` stay bound to this namespace.
    /// Throws `SwitchError` when the thread cannot enter it (as without
    /// CAP_SYS_ADMIN), having done nothing.
    ///
    /// A thread that cannot be moved back would do later work in the wrong
    /// namespace, so only that case stops the process.
    public func perform<T>(_ body: () throws -> T) throws -> T {
        let original: OwnedDescriptor
        do {
            original = try OwnedDescriptor(openingForReading: "/proc/thread-self/ns/net")
        } catch {
            throw SwitchError(cause: error)
        }
        guard berth_setns(descriptor.rawValue, berth_clone_newnet()) == 0 else {
            throw SwitchError(cause: SystemError.last("enter network namespace \(path)"))
        }
        defer {
            if berth_setns(original.rawValue, berth_clone_newnet()) != 0 {
                fatalError("cannot return to the original network namespace: \(SystemError.last("setns"))")
            }
        }
        return try body()
    }
}
