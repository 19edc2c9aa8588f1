import Foundation

/// Runs blocking work (a child process, a raw socket exchange) on a thread of its own, off Swift's cooperative pool
/// and off dispatch's global queues, so that an `async` test waiting for it holds neither. On Linux the global
/// queues are about as narrow as the cooperative pool: a few tests blocked in them for seconds each once left a
/// token test with one request in two seconds where it expects fifty.
public enum Blocking {
    /// Runs `body` on a new thread and returns its result.
    ///
    /// - Parameter body: The blocking work.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            ChildProcess.thread("blocking work") {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
