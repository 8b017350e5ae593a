#if canImport(Glibc)
import Glibc
#endif

/// Work on a thread of its own, for a short-lived process that has other
/// work to do meanwhile (the plugin's ADD puts a pod into the policy sets
/// while it makes the veth); `wait()` joins it and passes its error on.
/// Namespaces are per thread: the new thread has those of the thread that
/// made it, whatever that thread switches to afterwards.
public final class BackgroundWork: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () throws -> Void
    private var failure: (any Error)?
    private var joined = false

    public init(_ body: @escaping () throws -> Void) throws(SystemError) {
        self.body = body
        let box = Unmanaged.passRetained(self)
        let rc = pthread_create(&thread, nil, { raw in
            let work = Unmanaged<BackgroundWork>.fromOpaque(raw!).takeRetainedValue()
            do { try work.body() } catch { work.failure = error }
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            throw SystemError("pthread_create", errno: rc)
        }
    }

    /// Waits for the work to end; throws what it threw.
    public func wait() throws {
        join()
        if let failure { throw failure }
    }

    private func join() {
        guard !joined else { return }
        pthread_join(thread, nil)
        joined = true
    }

    deinit { join() }
}
