import Foundation
import Testing

/// Threads of their own for tests that block: end-to-end tests wait for
/// processes, pings and servers, synchronously. Swift Testing runs tests on
/// the cooperative thread pool, which has one thread per core (two here), so
/// two such tests waiting filled the machine's test run while its CPUs stood
/// idle. Under this trait a test's body runs on this executor's threads
/// instead; how many tests run at once is then Swift Testing's width
/// (`SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH`, set by scripts/test.sh).
package struct OwnThreads: SuiteTrait, TestTrait, TestScoping {
    package var isRecursive: Bool { true }

    package func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Suites pass through; each test (and each case of a parameterized one) gets the executor.
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(BlockingExecutor.shared) { try await function() }
    }
}

extension Trait where Self == OwnThreads {
    /// Run this suite's tests on threads of their own (see `OwnThreads`).
    package static var ownThreads: OwnThreads { OwnThreads() }
}

/// A task executor that runs each job on a thread of its own. The jobs block
/// (that is why they are here), so no fixed number of threads would do; Swift
/// Testing's width bounds how many tests, and so threads, there are at once.
/// A test is a few jobs (its start, the resumptions after its awaits).
final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = BlockingExecutor()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        let thread = Thread { job.runSynchronously(on: executor) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
