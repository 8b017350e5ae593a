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
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
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
public func writeStandardOutput(_ text: String) throws(SystemError) {
    var bytes = Array(text.utf8)
    let failure: SystemError? = bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(1, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return SystemError.last("write to stdout")
            }
            offset += n
        }
        return nil
    }
    if let failure { throw failure }
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

/// The life of a plugin process: checks its standard descriptors, reads
/// the environment and (lazily) stdin, lets `body` run the command with a
/// way to deliver text on stdout, and exits with the status `body` returns.
///
/// - A closed stdout means no result can reach the runtime: the process says
///   so on stderr and exits 1 before doing anything.
/// - A closed stdin reads as an error, except for VERSION, which needs no input
///   (nor does a person typing `CNI_COMMAND=VERSION plugin` at a terminal).
/// - Closed descriptors are filled with /dev/null, so that no file the plugin
///   opens becomes its stdin, stdout or stderr by accident.
/// - SIGPIPE is ignored: a result that cannot be written is a failed write,
///   which the plugin reports (and undoes) instead of dying silently.
public func runPluginProcess(_ body: (_ environment: [String: String], _ readInput: () throws -> [UInt8],
                                      _ deliver: @escaping (String) -> Bool) -> Int32) -> Never {
    var closed: [Int32] = []
    for fd in Int32(0)...2 where berth_descriptor_is_open(fd) == 0 {
        closed.append(fd)
        let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
        if null >= 0 && null != fd {
            dup2(null, fd)
            close(null)
        }
    }
    if closed.contains(1) {
        writeStandardError("stdout is closed: no result could reach the runtime; nothing was done")
        exit(1)
    }
    berth_ignore_sigpipe()
    let environment = processEnvironment()
    let isVersion = environment["CNI_COMMAND"] == "VERSION"
    let status = body(environment, {
        if closed.contains(0) {
            if isVersion { return [] }
            throw SystemError("read stdin (it is closed)", errno: EBADF)
        }
        return try readStandardInput(skipIfTerminal: isVersion)
    }, { text in
        do {
            try writeStandardOutput(text)
            return true
        } catch {
            writeStandardError("\(error): the runtime did not get the reply")
            return false
        }
    })
    exit(status)
}
