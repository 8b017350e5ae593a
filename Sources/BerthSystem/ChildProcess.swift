#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CBerthSys

/// What a finished child process gave back.
public struct ChildOutput: Sendable {
    /// The exit status, or 128+N when killed by signal N.
    public var status: Int32
    public var stdout: [UInt8]
}

/// Runs an executable with a given environment and standard input, and
/// collects its standard output. Standard error is inherited (plugin logs)
/// unless `discardStandardError`.
///
/// The child's stdin is an in-memory file holding `input`, so a large input
/// can never deadlock against a child that writes before reading everything.
public func runExecutable(_ path: String, arguments: [String] = [], environment: [String: String],
                          input: [UInt8], discardStandardError: Bool = false) throws(SystemError) -> ChildOutput {
    let stdinFD = berth_memfd("berth-stdin")
    if stdinFD < 0 { throw SystemError.last("memfd_create") }
    let stdinHandle = OwnedDescriptor(adopting: stdinFD)
    try stdinHandle.writeAll(input)
    if lseek(stdinFD, 0, SEEK_SET) < 0 { throw SystemError.last("lseek") }

    var pipeFDs: [Int32] = [0, 0]
    if berth_pipe_cloexec(&pipeFDs) != 0 { throw SystemError.last("pipe2") }
    let readEnd = OwnedDescriptor(adopting: pipeFDs[0])
    var writeEnd: OwnedDescriptor? = OwnedDescriptor(adopting: pipeFDs[1])

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, stdinFD, 0)
    posix_spawn_file_actions_adddup2(&actions, writeEnd!.rawValue, 1)
    if discardStandardError {
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }

    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
    if rc != 0 { throw SystemError("run \(path)", errno: rc) }
    writeEnd = nil  // our copy must close so that reading sees end of file

    let output: [UInt8]
    do {
        output = try readEnd.readAll()
    } catch {
        _ = waitForExit(pid)
        throw error
    }
    return ChildOutput(status: waitForExit(pid), stdout: output)
}

private func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return 127 }
    }
    // WIFEXITED / WEXITSTATUS / WTERMSIG spelled out: Swift does not import the macros.
    let signal = status & 0x7F
    if signal == 0 { return (status >> 8) & 0xFF }
    return 128 + signal
}

/// Finds an executable named `name` in `directories`, in order.
/// Names with '/' are never looked up (a config must not point outside CNI_PATH).
public func findExecutable(_ name: String, in directories: [String]) -> String? {
    guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { return nil }
    for dir in directories {
        let candidate = dir.hasSuffix("/") ? dir + name : dir + "/" + name
        var st = stat()
        if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
            return candidate
        }
    }
    return nil
}
