import Synchronization
import VaultLocks

/// The state shared by every connection and the public API, behind one lock. Each call holds the lock for a
/// short, non-blocking section; latency is waited out on the event loop, never under the lock.
final class StandInCore: Sendable {
    private let state = Locked(StandInState())
    /// The endpoints whose answers are held (``PersonioStandIn/holdAnswers(on:)``) and the answers held so far,
    /// each as the work that sends it on its connection's event loop.
    private let held = Locked(Held())
    /// Whether any endpoint's answers may be held: read on every request, so that the usual one takes no lock more.
    private let holding = Atomic<Bool>(false)

    private struct Held {
        var endpoints: Set<PersonioStandIn.Endpoint> = []
        var answers: [@Sendable () -> Void] = []
    }

    func handle(_ request: StandInRequest) -> (StandInReply, Duration) {
        self.state.withLock { $0.handle(request, now: $0.now) }
    }

    func withState<R: Sendable>(_ body: (inout StandInState) -> R) -> R {
        self.state.withLock { body(&$0) }
    }

    // MARK: - Held answers

    func hold(_ endpoints: Set<PersonioStandIn.Endpoint>) {
        self.held.withLock { held in
            held.endpoints = endpoints
            self.holding.store(!endpoints.isEmpty, ordering: .sequentiallyConsistent)
        }
    }

    /// False when no answer is held: ``park(_:_:)`` need not be asked.
    var mayHold: Bool { self.holding.load(ordering: .sequentiallyConsistent) }

    /// Keeps `send` until ``release()`` when answers to `endpoint` are held; false when they are not (send now).
    func park(_ endpoint: PersonioStandIn.Endpoint, _ send: @escaping @Sendable () -> Void) -> Bool {
        self.held.withLock { held in
            guard held.endpoints.contains(endpoint) else { return false }
            held.answers.append(send)
            return true
        }
    }

    var heldCount: Int { self.held.withLock { $0.answers.count } }

    /// Stops holding and sends every answer held, oldest first.
    func release() {
        let answers = self.held.withLock { held in
            held.endpoints = []
            self.holding.store(false, ordering: .sequentiallyConsistent)
            defer { held.answers = [] }
            return held.answers
        }
        for send in answers { send() }
    }

    /// Stops holding and forgets the answers held (their connections are being closed).
    func dropHeld() {
        self.held.withLock { held in
            held = Held()
            self.holding.store(false, ordering: .sequentiallyConsistent)
        }
    }
}
