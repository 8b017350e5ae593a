#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBerthSys

/// An open directory. Every operation is relative to it (`openat`,
/// `linkat`, `renameat`, ...) and never follows a symbolic link, so a link
/// planted inside the directory cannot redirect Berth's writes.
/// Files are created 0600 and directories 0700.
public final class DirectoryHandle {
    public let path: String
    public let descriptor: OwnedDescriptor

    /// Opens `path`, creating it and missing parents (0700) when `create`.
    public init(path: String, create: Bool) throws(SystemError) {
        self.path = path
        // Open first: the directory usually exists, and creating costs a mkdir per path component.
        var fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 && errno == ENOENT && create {
            try DirectoryHandle.makeDirectories(path)
            fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        }
        if fd < 0 { throw SystemError.last("open directory \(path)") }
        descriptor = OwnedDescriptor(adopting: fd)
    }

    private init(path: String, fd: Int32) {
        self.path = path
        descriptor = OwnedDescriptor(adopting: fd)
    }

    /// Creates every missing directory of `path` with mode 0700.
    public static func makeDirectories(_ path: String) throws(SystemError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw SystemError.last("create directory \(current)")
            }
        }
    }

    /// The subdirectory `name`, created (0700) if missing.
    public func subdirectory(_ name: String) throws(SystemError) -> DirectoryHandle {
        var fd = openat(descriptor.rawValue, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 && errno == ENOENT {
            if mkdirat(descriptor.rawValue, name, 0o700) != 0 && errno != EEXIST {
                throw SystemError.last("create directory \(path)/\(name)")
            }
            fd = openat(descriptor.rawValue, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        }
        if fd < 0 { throw SystemError.last("open directory \(path)/\(name)") }
        return DirectoryHandle(path: "\(path)/\(name)", fd: fd)
    }

    /// Opens (creating, 0600) file `name` for reading and writing.
    public func openFile(_ name: String) throws(SystemError) -> OwnedDescriptor {
        let fd = try retryingOnInterrupt("open \(path)/\(name)") {
            openat(descriptor.rawValue, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        }
        return OwnedDescriptor(adopting: fd)
    }

    /// Opens existing file `name` for reading and writing; nil when there is none.
    public func openFileIfPresent(_ name: String) throws(SystemError) -> OwnedDescriptor? {
        let fd = openat(descriptor.rawValue, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError.last("open \(path)/\(name)")
        }
        return OwnedDescriptor(adopting: fd)
    }

    /// The contents of file `name`, or nil when there is no such file.
    public func read(_ name: String) throws(SystemError) -> [UInt8]? {
        let fd = openat(descriptor.rawValue, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError.last("open \(path)/\(name)")
        }
        return try OwnedDescriptor(adopting: fd).readAll()
    }

    /// Whether an entry called `name` exists (without following links).
    public func exists(_ name: String) throws(SystemError) -> Bool {
        var st = stat()
        if fstatat(descriptor.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return true }
        if errno == ENOENT { return false }
        throw SystemError.last("stat \(path)/\(name)")
    }

    /// Writes a new file in `scratch` and returns its name there; the caller
    /// then publishes it with `publish`.
    /// `mode`: 0600 unless others must read it (a file a daemon reads after dropping root).
    public func writeScratch(_ bytes: [UInt8], mode: mode_t = 0o600) throws(SystemError) -> String {
        var rng = SystemRandomNumberGenerator()
        let name = ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max, using: &rng))"
        let fd = try retryingOnInterrupt("create \(path)/\(name)") {
            openat(descriptor.rawValue, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        }
        let handle = OwnedDescriptor(adopting: fd)
        if mode != 0o600 && fchmod(fd, mode) != 0 {
            let e = SystemError.last("chmod \(path)/\(name)")
            unlinkat(descriptor.rawValue, name, 0)
            throw e
        }
        do {
            try handle.writeAll(bytes)
        } catch {
            unlinkat(descriptor.rawValue, name, 0)
            throw error
        }
        return name
    }

    /// Atomically replaces `name` in `target` with scratch file `scratch` of this directory.
    public func publish(_ scratch: String, as name: String, in target: DirectoryHandle) throws(SystemError) {
        if renameat(descriptor.rawValue, scratch, target.descriptor.rawValue, name) != 0 {
            let e = SystemError.last("rename to \(target.path)/\(name)")
            unlinkat(descriptor.rawValue, scratch, 0)
            throw e
        }
    }

    /// Gives file `name` of this directory a second name `link` in `target`
    /// (a hard link: atomic, creates no inode), only if `link` does not exist.
    /// Returns false when it does.
    public func linkExclusive(_ name: String, as link: String, in target: DirectoryHandle) throws(SystemError) -> Bool {
        if linkat(descriptor.rawValue, name, target.descriptor.rawValue, link, 0) == 0 { return true }
        if errno == EEXIST { return false }
        throw SystemError.last("link \(path)/\(name) as \(target.path)/\(link)")
    }

    /// Writes `bytes` at the start of file `name` (created 0600 if missing),
    /// in place: what lies beyond them stays. Not atomic: for hints that a
    /// reader may find torn after a crash.
    public func overwrite(_ name: String, with bytes: [UInt8]) throws(SystemError) {
        let handle = try openFile(name)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { pwrite(handle.rawValue, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.last("write \(path)/\(name)")
            }
            offset += n
        }
    }

    /// Removes file `name`; returns false when it did not exist.
    @discardableResult
    public func remove(_ name: String) throws(SystemError) -> Bool {
        if unlinkat(descriptor.rawValue, name, 0) == 0 { return true }
        if errno == ENOENT { return false }
        throw SystemError.last("remove \(path)/\(name)")
    }

    /// The names of the entries (without "." and ".."). Costs one pass over the directory.
    public func names() throws(SystemError) -> [String] {
        let fd = dup(descriptor.rawValue)
        if fd < 0 { throw SystemError.last("dup") }
        guard let dir = fdopendir(fd) else {
            close(fd)
            throw SystemError.last("read directory \(path)")
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// Takes an exclusive lock on file `name` (created if missing), held until
    /// the returned descriptor is released. The kernel drops it if the process dies.
    public func lock(_ name: String) throws(SystemError) -> OwnedDescriptor {
        let handle = try openFile(name)
        try retryingOnInterrupt("lock \(path)/\(name)") { flock(handle.rawValue, LOCK_EX) }
        return handle
    }
}
