#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
