import Foundation
import Testing
@testable import BerthSystem
import CBerthSys

/// `Spawn`, the one way Berth starts a process that is not a container's:
/// what reaches the child, and how failures come back. No root needed.
@Suite("starting processes")
struct SpawnTests {
    /// A memory file to collect a child's output in.
    func memoryFile() throws -> OwnedDescriptor {
        let fd = berth_memfd("berthtest-spawn")
        try #require(fd >= 0)
        return OwnedDescriptor(adopting: fd)
    }

    func contents(_ file: OwnedDescriptor) -> String {
        lseek(file.rawValue, 0, SEEK_SET)
        return String(decoding: (try? file.readAll()) ?? [], as: UTF8.self)
    }

    func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    @Test("only stdio and the passed descriptor reach the child; stdin can be /dev/null; a session of its own")
    func descriptors() throws {
        let out = try memoryFile()
        let passed = try memoryFile()
        let stray = open("/dev/null", O_RDONLY)  // not close-on-exec: it must still not reach the child
        defer { close(stray) }
        var spawn = Spawn(path: "/bin/sh", arguments: ["/bin/sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; cat | wc -c; echo passed >&4; ps -o sid= -p $$"],
                          environment: ["PATH=/usr/bin:/bin"])
        spawn.stdin = .null
        spawn.stdout = .fd(out.rawValue)
        spawn.passing = (passed.rawValue, 4)
        spawn.newSession = true
        spawn.reportsExecFailure = true
        let pid = try spawn.start()
        #expect(wait(pid) == 0)
        let lines = contents(out).split(separator: "\n", omittingEmptySubsequences: false)
        // 0-2, 4, and the descriptor ls opens to list them.
        let fds = lines[0].split(separator: " ").compactMap { Int($0) }
        #expect(fds.filter { $0 != 3 && $0 != 5 } == [0, 1, 2, 4], "\(lines[0])")
        #expect(!fds.contains(Int(stray)) || Int(stray) <= 5, "a stray descriptor reached the child: \(fds)")
        #expect(lines[1].trimmingCharacters(in: .whitespaces) == "0", "stdin is /dev/null: \(lines[1])")
        #expect(Int(lines[2].trimmingCharacters(in: .whitespaces)) == Int(pid), "the child leads its own session: \(lines[2])")
        #expect(contents(passed) == "passed\n")
    }

    @Test("an executable that cannot run is start's error with its errno, or the child's 127 and one line")
    func execFailures() throws {
        var reported = Spawn(path: "/nonexistent/plugin", arguments: ["/nonexistent/plugin"], environment: [])
        reported.reportsExecFailure = true
        #expect(throws: SystemError.self) { try reported.start() }
        do { _ = try reported.start() } catch { #expect(error.errno == ENOENT) }

        let err = try memoryFile()
        var shell = Spawn(path: nil, arguments: ["no-such-command-berthtest"], environment: ["PATH=/usr/bin:/bin"])
        shell.stderr = .fd(err.rawValue)
        #expect(wait(try shell.start()) == 127)
        #expect(contents(err) == "Error: cannot execute no-such-command-berthtest: No such file or directory\n")
    }

    @Test("a network namespace that cannot be opened is start's error")
    func missingNamespace() {
        var spawn = Spawn(path: "/bin/true", arguments: ["/bin/true"], environment: [])
        spawn.networkNamespace = "/nonexistent/netns"
        #expect(throws: SystemError.self) { try spawn.start() }
    }
}
