#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
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
public struct FileIdentity: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64
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

/// Reads standard input to its end. With `skipIfTerminal`, a terminal reads
/// as empty (a person typing `CNI_COMMAND=VERSION berth` pipes nothing in).
public func readStandardInput(skipIfTerminal: Bool) throws(SystemError) -> [UInt8] {
    if skipIfTerminal && isatty(0) == 1 { return [] }
    return try readAllBytes(from: 0)
}

/// Writes `text` to standard output in full.
public func writeStandardOutput(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(1, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }
}

/// Writes one line to standard error (logs never go to stdout in CNI).
public func writeStandardError(_ line: String) {
    let text = line.hasSuffix("\n") ? line : line + "\n"
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { raw in _ = write(2, raw.baseAddress, raw.count) }
}

/// The process environment as a dictionary.
public func processEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            env[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        p += 1
    }
    return env
}

/// The life of a plugin process: reads the environment and (lazily) stdin,
/// lets `body` answer, prints the answer on stdout and exits with its status.
/// A person typing `CNI_COMMAND=VERSION plugin` at a terminal pipes nothing in.
public func runPluginProcess(_ body: ([String: String], () throws -> [UInt8]) -> (status: Int32, stdout: String)) -> Never {
    let environment = processEnvironment()
    let (status, stdout) = body(environment) {
        try readStandardInput(skipIfTerminal: environment["CNI_COMMAND"] == "VERSION")
    }
    writeStandardOutput(stdout)
    exit(status)
}
