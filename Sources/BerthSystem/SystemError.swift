#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: what was attempted and the errno it gave.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// The error of the last failed call, read from the C `errno`.
    public static func last(_ operation: String) -> SystemError {
        SystemError(operation, errno: Glibc.errno)
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))"
    }

    /// EPERM or EACCES: the process lacks a privilege or a permission.
    public var isPermissionDenied: Bool { errno == EPERM || errno == EACCES }
}

/// Runs `call` again while it fails with EINTR; throws on any other failure.
@discardableResult
func retryingOnInterrupt(_ operation: @autoclosure () -> String, _ call: () -> Int32) throws(SystemError) -> Int32 {
    while true {
        let r = call()
        if r >= 0 { return r }
        if errno != EINTR { throw SystemError.last(operation()) }
    }
}
