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
/// The child gets descriptors 0, 1 and 2 and no others, and is killed if the
/// calling thread dies before it ends.
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

    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    // Only stdio reaches the child, as with libcni: not Berth's own descriptors
    // (all close-on-exec anyway) and not any its caller let it inherit. And
    // it dies with this thread, so nothing it does outlives a killed caller.
    let pid = berth_spawn_plugin(path, argv, envp, stdinFD, writeEnd!.rawValue, discardStandardError ? 1 : 0)
    if pid < 0 { throw SystemError.last("run \(path)") }
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
