import Foundation
import Testing

/// A task executor that never lets a job wait for a thread: an idle worker takes it, or a new worker is started.
/// Workers idle for 30 s end.
///
/// For tests that block the thread they run on (a synchronous test waiting for a child process, a raw socket
/// exchange): on Swift's cooperative pool, two threads on a two-core machine, two such tests stall every async test
/// of the run, and the notifier of an in-process daemon once waited over 10 s for its first turn behind them.
public final class ElasticExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: every stored property is read and written only with `condition` locked.

    /// The one instance tests share.
    public static let shared = ElasticExecutor()

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var idle = 0
    /// Signals sent to idle workers that no worker has woken for yet.
    private var wakeups = 0

    private init() {}

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.condition.lock()
        self.jobs.append(job)
        let wake = self.idle > self.wakeups
        if wake {
            self.wakeups += 1
            self.condition.signal()
        }
        self.condition.unlock()
        if !wake {
            let thread = Thread { [self] in self.work() }
            thread.name = "test worker"
            thread.start()
        }
    }

    private func work() {
        self.condition.lock()
        while true {
            if !self.jobs.isEmpty {
                let job = self.jobs.removeFirst()
                self.condition.unlock()
                job.runSynchronously(on: self.asUnownedTaskExecutor())
                self.condition.lock()
                continue
            }
            self.idle += 1
            let signalled = self.condition.wait(until: Date(timeIntervalSinceNow: 30))
            self.idle -= 1
            if self.wakeups > 0 { self.wakeups -= 1 }
            if !signalled && self.jobs.isEmpty { break }
        }
        self.condition.unlock()
    }
}

/// Runs each test of a suite (or one test) with ``ElasticExecutor/shared`` as its task executor, so that a test
/// that blocks its thread never holds one of the cooperative pool's few threads. Child tasks the test starts
/// inherit the preference; actors keep their own executors.
public struct OffCooperativePoolTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(ElasticExecutor.shared) {
            try await function()
        }
    }
}

extension Trait where Self == OffCooperativePoolTrait {
    /// This suite's (or test's) tests block threads: run them off the cooperative pool.
    public static var offCooperativePool: Self { Self() }
}
