import Foundation
import Testing

/// Threads of their own for tests that block: end-to-end tests wait for
/// processes, pings and servers, synchronously. Swift Testing runs tests on
/// the cooperative thread pool, which has one thread per core (two here), so
/// two such tests waiting filled the machine's test run while its CPUs stood
/// idle. Under this trait a test's body runs on this executor's threads
/// instead, at most `OwnThreads.width` such tests at once (8, or
/// `SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH`, which also bounds Swift
/// Testing itself), so that a bare `swift test` does not start them all together.
package struct OwnThreads: SuiteTrait, TestTrait, TestScoping {
    package var isRecursive: Bool { true }

    package func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Suites pass through; each test (and each case of a parameterized one) gets the executor.
        // Suites pass through, and so does a test already in a slot: nested suites
        // carry the trait too, and a test must not wait for a second slot of its own.
        guard testCase != nil, !OwnThreads.inSlot else { return try await function() }
        await OwnThreads.slots.acquire()
        do {
            try await OwnThreads.$inSlot.withValue(true) {
                try await withTaskExecutorPreference(BlockingExecutor.shared) { try await function() }
            }
        } catch {
            await OwnThreads.slots.release()
            throw error
        }
        await OwnThreads.slots.release()
    }

    @TaskLocal static var inSlot = false

    /// How many tests under this trait run at once.
    package static let width: Int = {
        let value = ProcessInfo.processInfo.environment["SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH"].flatMap { Int($0) }
        return max(1, value ?? 8)
    }()
    static let slots = Slots(width)
}

/// A counting semaphore for tasks: `acquire` suspends (holding no thread) while all are taken.
actor Slots {
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { free = count }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()  // the slot passes straight to the next waiter
        }
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
