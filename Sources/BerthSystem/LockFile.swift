#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A lock over a name, through `flock` on the file `DIRECTORY/NAME`, taken
/// exclusively (one holder: an attachment's ADD, CHECK and DEL) or shared
/// (many holders: the ADDs using one bridge). The file exists only while
/// someone holds the lock: the last holder removes it, so lock files never
/// pile up.
///
/// Removing a lock file while others wait on it is safe because a waiter
/// that gets the lock checks that the file it locked is still the one under
/// that name, and tries again if not.
///
/// The lock belongs to the open file, not to the process: a child given the
/// descriptor (`descriptor`, inherited) keeps the lock held after this
/// process dies, until the child ends too.
public final class LockFile {
    public static let defaultDirectory = "/run/berth/locks"

    private let directory: DirectoryHandle
    public let name: String
    public let descriptor: OwnedDescriptor
    public let isShared: Bool
    private var held = true

    /// Others held the lock for all of the time this waited.
    public struct TimedOut: Error, Equatable, CustomStringConvertible {
        public let path: String
        public let seconds: Int
        /// Who held it when the wait ended, like "pid 812 (berth)", as /proc/locks tells.
        public var holders: [String] = []
        public var description: String {
            "\(path): another operation has held this lock for \(seconds) s"
                + (holders.isEmpty ? "" : " (held by \(holders.joined(separator: ", ")))")
        }
    }

    /// Waits (polling, at most `timeout` seconds) until the lock on `name` is
    /// ours. Throws `TimedOut`, or `SystemError`.
    public init(name: String, shared: Bool = false, directory path: String = LockFile.defaultDirectory,
                timeout: Double = 60) throws {
        self.name = name
        isShared = shared
        let deadline = monotonicSeconds() + timeout
        directory = try DirectoryHandle(path: path, create: true)
        var pause: UInt32 = 200  // µs, doubled up to 5 ms while someone holds the lock
        while true {
            let file = try directory.openFile(name)
            if flock(file.rawValue, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 {
                // Ours, unless its last holder removed the file in the meantime.
                if LockFile.isNamed(name, in: directory, file) {
                    descriptor = file
                    return
                }
                continue
            }
            if errno != EWOULDBLOCK && errno != EINTR {
                throw SystemError.last("lock \(path)/\(name)")
            }
            if monotonicSeconds() >= deadline {
                let holders = (try? file.identity()).map { LockFile.holders(of: $0) } ?? []
                throw TimedOut(path: "\(path)/\(name)", seconds: Int(timeout), holders: holders)
            }
            usleep(pause)
            // A short cap: a waiter that sleeps long loses the lock to newcomers
            // that poll more often, again and again.
            pause = min(pause * 2, 5_000)
        }
    }

    /// The processes holding a lock on `file`, as "pid N (COMMAND)", from
    /// /proc/locks (a lock handed to a child names the process that took it).
    public static func holders(of file: FileIdentity, locks: String? = nil) -> [String] {
        let text = locks ?? ((try? OwnedDescriptor(openingForReading: "/proc/locks").readAll()).map { String(decoding: $0, as: UTF8.self) } ?? "")
        let major = (file.device >> 8) & 0xfff | (file.device >> 32) & ~0xfff
        let minor = file.device & 0xff | (file.device >> 12) & ~0xff
        let wanted = String(major, radix: 16) + ":" + String(minor, radix: 16) + ":" + String(file.inode)
        var found: [String] = []
        // "1: FLOCK  ADVISORY  WRITE 812 00:1a:4711 0 EOF"; waiters are "1: -> FLOCK ...".
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int32(fields[4]) else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, let ma = UInt64(id[0], radix: 16), let mi = UInt64(id[1], radix: 16) else { continue }
            guard String(ma, radix: 16) + ":" + String(mi, radix: 16) + ":" + id[2] == wanted else { continue }
            let comm = (try? OwnedDescriptor(openingForReading: "/proc/\(pid)/comm").readAll())
                .map { String(decoding: $0, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "" } ?? ""
            found.append(comm.isEmpty ? "pid \(pid)" : "pid \(pid) (\(comm))")
        }
        return found
    }

    /// Whether `file` is still the file called `name` in `directory`.
    private static func isNamed(_ name: String, in directory: DirectoryHandle, _ file: OwnedDescriptor) -> Bool {
        var st = stat()
        guard fstatat(directory.descriptor.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0,
              let mine = try? file.identity() else { return false }
        return mine == FileIdentity(st)
    }

    /// For a shared lock: whether this is now its only holder (the lock is
    /// then exclusive until released). When it is not, the shared lock may
    /// have been dropped (flock converts by unlocking first): release next.
    public func isAlone() -> Bool {
        guard held else { return false }
        if !isShared { return true }
        return flock(descriptor.rawValue, LOCK_EX | LOCK_NB) == 0
    }

    /// Unlocks; the last holder removes the file. Nothing happens the second time.
    public func release() {
        guard held else { return }
        held = false
        if isShared {
            // Whoever finds itself alone after unlocking removes the file.
            flock(descriptor.rawValue, LOCK_UN)
            guard flock(descriptor.rawValue, LOCK_EX | LOCK_NB) == 0 else { return }
            if LockFile.isNamed(name, in: directory, descriptor) { unlinkat(directory.descriptor.rawValue, name, 0) }
        } else {
            unlinkat(directory.descriptor.rawValue, name, 0)
        }
        flock(descriptor.rawValue, LOCK_UN)
    }

    deinit { release() }

    /// Removes the lock files in `path` that nobody holds (left by processes
    /// killed while holding them). Returns how many it removed.
    @discardableResult
    public static func removeUnheld(in path: String = LockFile.defaultDirectory) -> Int {
        guard let dir = try? DirectoryHandle(path: path, create: false), let names = try? dir.names() else { return 0 }
        var removed = 0
        for name in names {
            guard let file = try? dir.openFileIfPresent(name) else { continue }
            if flock(file.rawValue, LOCK_EX | LOCK_NB) == 0 {
                if isNamed(name, in: dir, file) && unlinkat(dir.descriptor.rawValue, name, 0) == 0 { removed += 1 }
                flock(file.rawValue, LOCK_UN)
            }
        }
        return removed
    }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
