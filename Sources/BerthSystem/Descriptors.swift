#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBerthSys

/// An open file descriptor that is closed when the handle goes away.
/// Every descriptor Berth opens is close-on-exec.
public final class OwnedDescriptor {
    public let rawValue: Int32

    public init(adopting fd: Int32) { rawValue = fd }

    /// Opens `path` read-only, close-on-exec.
    public convenience init(openingForReading path: String) throws(SystemError) {
        let fd = try retryingOnInterrupt("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        self.init(adopting: fd)
    }

    deinit { close(rawValue) }

    /// Device and inode of the open file.
    public func identity() throws(SystemError) -> FileIdentity {
        var st = stat()
        try retryingOnInterrupt("fstat") { fstat(rawValue, &st) }
        return FileIdentity(st)
    }

    /// Writes all of `bytes`.
    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { raw in write(rawValue, raw.baseAddress, raw.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("write")
            }
            offset += n
        }
    }

    /// Reads until end of file.
    public func readAll() throws(SystemError) -> [UInt8] {
        try readAllBytes(from: rawValue)
    }
}

/// A file's identity: two paths with the same identity are the same file.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// The identity `stat(2)` gave.
    public init(_ st: stat) { self.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }
}

/// Reads `fd` until end of file (stdin, a pipe).
public func readAllBytes(from fd: Int32) throws(SystemError) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress, raw.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError.last("read")
        }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}
