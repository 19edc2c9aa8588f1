import Dispatch

/// Runs blocking socket calls for the `async` APIs.
///
/// The calls block a thread for up to the client's time-out, so they must not run on Swift's cooperative pool (a
/// few blocked threads there would stall every task in the process). They run on a global dispatch queue instead,
/// whose threads are separate from that pool. Cancelling the awaiting task ends the call within ~100 ms with
/// `CancellationError`.
enum BlockingCall {
    static func run<T: Sendable>(_ body: @escaping @Sendable (CancellationFlag) throws -> T) async throws -> T {
        let flag = CancellationFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                DispatchQueue.global(qos: .userInitiated).async {
                    continuation.resume(with: Result { try body(flag) })
                }
            }
        } onCancel: {
            flag.cancel()
        }
    }
}
