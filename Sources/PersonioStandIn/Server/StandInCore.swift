import VaultLocks

/// The state shared by every connection and the public API, behind one lock. Each call holds the lock for a
/// short, non-blocking section; latency is waited out on the event loop, never under the lock.
final class StandInCore: Sendable {
    private let state = Locked(StandInState())

    func handle(_ request: StandInRequest) -> (StandInReply, Duration) {
        self.state.withLock { $0.handle(request, now: $0.now) }
    }

    func withState<R: Sendable>(_ body: (inout StandInState) -> R) -> R {
        self.state.withLock { body(&$0) }
    }
}
