import Foundation
import Testing
import BerthSystem

@Suite("lock files")
struct LockFileTests {
    @Test("a wait that times out names the process holding the lock, as /proc/locks tells")
    func timeoutNamesHolder() throws {
        let dir = NSTemporaryDirectory() + "berthtest-locks-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let held = try LockFile(name: "one", directory: dir)
        defer { held.release() }
        do {
            _ = try LockFile(name: "one", directory: dir, timeout: 0.2)
            Issue.record("a second exclusive holder got the lock")
        } catch let e as LockFile.TimedOut {
            let comm = try String(contentsOfFile: "/proc/self/comm", encoding: .utf8).trimmingCharacters(in: .newlines)
            #expect(e.holders == ["pid \(getpid()) (\(comm))"], "\(e)")
            #expect(e.description.contains("held by pid \(getpid())"), "\(e)")
        }
        held.release()
        #expect(throws: Never.self) { try LockFile(name: "one", directory: dir, timeout: 0.2).release() }
    }

    @Test("/proc/locks lines are matched by device and inode; waiting requests and other files are not holders")
    func parseLocks() {
        let locks = """
        1: FLOCK  ADVISORY  WRITE 812 00:1a:4711 0 EOF
        1: -> FLOCK  ADVISORY  WRITE 813 00:1a:4711 0 EOF
        2: FLOCK  ADVISORY  READ 900 00:1a:4712 0 EOF
        3: POSIX  ADVISORY  WRITE 901 00:1a:4711 0 EOF
        4: FLOCK  ADVISORY  READ 902 103:02:4711 0 EOF
        """
        // st_dev 0x1a is device 00:1a; (259 << 8 | 2) is 103:02 in the old encoding.
        #expect(LockFile.holders(of: FileIdentity(device: 0x1a, inode: 4711), locks: locks).map { $0.prefix(7) } == ["pid 812"])
        #expect(LockFile.holders(of: FileIdentity(device: 0x10302, inode: 4711), locks: locks).map { $0.prefix(7) } == ["pid 902"])
        #expect(LockFile.holders(of: FileIdentity(device: 0x1a, inode: 9), locks: locks).isEmpty)
    }
}
