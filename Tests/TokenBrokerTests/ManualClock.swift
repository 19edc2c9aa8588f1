import Foundation
import Testing
import TokenBroker
import VaultLocks

/// A clock that moves only when a test says so: `advance(by:)` moves it and wakes every sleeper whose deadline has
/// come. Instants are `ContinuousClock` instants starting at the real reading when the clock was made, so tokens and
/// prepared responses keep their types; time never passes on its own.
final class ManualClock: BrokerClock {
    private struct Sleeper {
        var id: UInt64
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: ContinuousClock.Instant
        var sleepers: [Sleeper] = []
        var cancelled: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state: Locked<State>
    /// Wall-clock seconds at the start (for `RevocationPolicy.now`).
    private let wallStart: Double
    private let start: ContinuousClock.Instant

    /// - Parameter wallStart: Wall-clock seconds at the start; by default the real reading, so that expiries Personio
    ///   gives in wall time stay ahead.
    init(wallStart: Double = Date().timeIntervalSince1970) {
        let start = ContinuousClock.now
        self.start = start
        self.wallStart = wallStart
        self.state = Locked(State(now: start))
    }

    var now: ContinuousClock.Instant { self.state.withLock { $0.now } }

    /// Wall-clock seconds since 1970 moving with this clock.
    var wallSeconds: Double {
        let elapsed = self.now - self.start
        return self.wallStart + Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// How many tasks sleep on this clock now.
    var sleepers: Int { self.state.withLock { $0.sleepers.count } }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        let id = self.state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case sleep, wake, cancel }
                let now = self.state.withLock { state -> Now in
                    if state.cancelled.remove(id) != nil { return .cancel }
                    if deadline <= state.now { return .wake }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return .sleep
                }
                switch now {
                case .sleep: break
                case .wake: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = self.state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock on and wakes the sleepers whose deadline has come.
    func advance(by duration: Duration) {
        let woken = self.state.withLock { state -> [Sleeper] in
            state.now += duration
            let now = state.now
            let woken = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return woken
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }
}

/// Waits (in real time, bounded) until `condition` holds; records an issue if it does not within `timeout`.
func waitUntil(
    timeout: Duration = .seconds(5),
    _ what: String = "condition",
    _ condition: () -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("\(what) not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}
