import Dispatch

/// Runs blocking work (a child process, a raw socket exchange) on a dispatch queue, off Swift's cooperative pool,
/// so that an `async` test waiting for it does not hold one of the pool's few threads.
public enum Blocking {
    /// Runs `body` on a global dispatch queue and returns its result.
    ///
    /// - Parameter body: The blocking work.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
