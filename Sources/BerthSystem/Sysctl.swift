#if canImport(Glibc)
import Glibc
#endif

/// Kernel parameters under /proc/sys, read and written through the calling
/// thread's namespaces (network ones are per network namespace).
public enum Sysctl {
    /// The value of `name` ("net.ipv4.ip_forward"), without the trailing newline.
    public static func read(_ name: String) throws(SystemError) -> String {
        let bytes = try OwnedDescriptor(openingForReading: path(name)).readAll()
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    /// Sets `name` to `value`, writing only when it differs (a write is not free).
    public static func ensure(_ name: String, is value: String) throws(SystemError) {
        if try read(name) == value { return }
        let fd = try retryingOnInterrupt("open \(path(name))") { open(path(name), O_WRONLY | O_CLOEXEC) }
        try OwnedDescriptor(adopting: fd).writeAll(Array(value.utf8))
    }

    /// Writes `value` to /proc/sys/`path` ("net/ipv6/conf/eth0/accept_dad":
    /// a path, since interface names may contain dots). A parameter the kernel
    /// does not have is left alone.
    public static func setIfPresent(path: String, to value: String) throws(SystemError) {
        let file = "/proc/sys/" + path
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return }
            throw SystemError.last("open \(file)")
        }
        try OwnedDescriptor(adopting: fd).writeAll(Array(value.utf8))
    }

    static func path(_ name: String) -> String {
        "/proc/sys/" + name.split(separator: ".").joined(separator: "/")
    }
}
