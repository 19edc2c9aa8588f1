import Testing
import VaultAPI
import VaultCore

@testable import TokenBroker

/// The broker's state machine as a value: each test is a table of events at instants the test chooses and the
/// actions they must return, so no rule here depends on how fast the machine runs. The broker tests check the same
/// rules against the Personio stand-in, in virtual time.
@Suite("Token state")
struct TokenStateTests {
    /// One token's state with the connection's call window beside it (the broker keeps the window in the entry,
    /// shared by the connection's tokens, and hands it to every event that may start a call).
    struct State {
        var machine: TokenState<Int>
        var limiter = CallLimiter()

        init(policy: RefreshPolicy) { self.machine = TokenState(policy: policy) }

        var phase: TokenState<Int>.Phase { self.machine.phase }
        var token: CachedToken? { self.machine.token }
        var isCalling: Bool { self.machine.isCalling }

        mutating func tokenRequested(
            now: ContinuousClock.Instant,
            minTTL: Duration
        ) -> TokenState<Int>.RequestAction {
            self.machine.tokenRequested(now: now, minTTL: minTTL, limiter: &self.limiter)
        }
        mutating func refreshDue(now: ContinuousClock.Instant) -> Bool {
            self.machine.refreshDue(now: now, limiter: &self.limiter)
        }
        mutating func verifyRequested(now: ContinuousClock.Instant) -> Duration? {
            self.machine.verifyRequested(now: now, limiter: &self.limiter)
        }
        mutating func extraCallRequested(now: ContinuousClock.Instant) -> Bool {
            self.limiter.reserve(at: now, policy: self.machine.policy)
        }
        mutating func waiterArrived(_ waiter: Int) -> Bool { self.machine.waiterArrived(waiter) }
        mutating func callSucceeded(_ token: CachedToken) -> [Int] { self.machine.callSucceeded(token) }
        mutating func callFailed(
            error: String,
            retryAfter: Duration?,
            now: ContinuousClock.Instant
        ) -> TokenState<Int>.FailureAction {
            self.machine.callFailed(error: error, retryAfter: retryAfter, now: now)
        }
        mutating func callAbandoned() -> [Int] { self.machine.callAbandoned() }
        mutating func tokenObtained(_ token: CachedToken) -> Bool { self.machine.tokenObtained(token) }
        mutating func tokenRejected(accessToken: String, now: ContinuousClock.Instant) -> Bool {
            self.machine.tokenRejected(accessToken: accessToken, now: now)
        }
        mutating func invalidated() -> [Int] { self.machine.invalidated() }
    }

    static let t0 = ContinuousClock.now
    static let policy = RefreshPolicy()

    static func at(_ seconds: Double) -> ContinuousClock.Instant {
        Self.t0 + .milliseconds(Int64((seconds * 1000).rounded()))
    }

    static func token(
        _ value: String = "fake-token",
        obtainedAt: Double = 0,
        lifetime: Double = 60,
        refreshAfter: Double = 40
    ) -> CachedToken {
        CachedToken(
            accessToken: value,
            tokenType: "Bearer",
            scope: nil,
            revision: 1,
            obtainedAt: Self.at(obtainedAt),
            expiresAt: Self.at(obtainedAt + lifetime),
            expiresAtWall: 0,
            refreshAt: Self.at(obtainedAt + refreshAfter)
        )
    }

    /// A state that made one call at `t0` and got `token` from it.
    static func holding(_ token: CachedToken = Self.token(), policy: RefreshPolicy = Self.policy) -> State {
        var state = State(policy: policy)
        #expect(state.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        #expect(state.callSucceeded(token).isEmpty)
        return state
    }

    @Test("a cold state makes one call; callers meanwhile wait for it and are released with its result")
    func singleFlight() {
        var state = State(policy: Self.policy)
        #expect(state.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        for waiter in 0..<64 {
            #expect(state.tokenRequested(now: Self.at(0.01), minTTL: .zero) == .wait)
            #expect(state.waiterArrived(waiter) == true)
        }
        #expect(state.limiter.starts.count == 1)
        #expect(state.callSucceeded(Self.token()) == Array(0..<64))
        // Once the call has ended, a late waiter is resumed at once rather than kept.
        #expect(state.waiterArrived(99) == false)
        #expect(state.tokenRequested(now: Self.at(0.02), minTTL: .zero) == .serve(Self.token()))
    }

    @Test("a failed call releases its waiters; an abandoned one too, leaving the back-off where it was")
    func releasesWaiters() {
        var failed = State(policy: Self.policy)
        #expect(failed.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        #expect(failed.waiterArrived(1) == true)
        #expect(failed.waiterArrived(2) == true)
        let failure = failed.callFailed(error: "HTTP 503", retryAfter: nil, now: Self.at(0.5))
        #expect(failure.waiters == [1, 2] && failure.retryAfter == .seconds(1))
        #expect(
            failed.tokenRequested(now: Self.at(1), minTTL: .zero)
                == .fail(retryAfter: .milliseconds(500), lastError: "HTTP 503")
        )

        var abandoned = failed
        #expect(abandoned.tokenRequested(now: Self.at(1.5), minTTL: .zero) == .startCall)
        #expect(abandoned.waiterArrived(3) == true)
        #expect(abandoned.callAbandoned() == [3])
        guard case .backingOff(nil, let kept) = abandoned.phase else {
            Issue.record("an abandoned call dropped the back-off: \(abandoned.phase)")
            return
        }
        #expect(kept.count == 1 && kept.lastError == "HTTP 503")

        var invalidated = State(policy: Self.policy)
        #expect(invalidated.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        #expect(invalidated.waiterArrived(7) == true)
        #expect(invalidated.invalidated() == [7])
        #expect(!invalidated.isCalling && invalidated.token == nil)
    }

    @Test("a valid token is served; an expired one is dropped and fetched again")
    func servesUntilExpiry() {
        var state = Self.holding()
        #expect(state.tokenRequested(now: Self.at(59.9), minTTL: .zero) == .serve(Self.token()))
        #expect(state.tokenRequested(now: Self.at(60), minTTL: .zero) == .startCall)
        #expect(state.token == nil)
    }

    @Test("min_ttl beyond the remaining lifetime asks again, but not within 10 s of the last call")
    func minTTL() {
        var state = Self.holding()
        // 55 s left, 58 s wanted: Personio would hand back the same token this soon, so it is served as it is.
        #expect(state.tokenRequested(now: Self.at(5), minTTL: .seconds(58)) == .serve(Self.token()))
        // 10 s after the last call a new one is made; the old token is served to others meanwhile.
        #expect(state.tokenRequested(now: Self.at(10), minTTL: .seconds(58)) == .startCall)
        #expect(state.tokenRequested(now: Self.at(10.1), minTTL: .seconds(58)) == .serve(Self.token()))
    }

    @Test(
        "failures back off 1, 2, 4 … s, capped at 60 s",
        arguments: [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (8, 60.0), (40, 60.0)]
    )
    func backoff(failures: Int, delay: Double) {
        var state = State(policy: Self.policy)
        var now = Self.at(0)
        var last = Duration.zero
        for _ in 0..<failures {
            #expect(state.tokenRequested(now: now, minTTL: .zero) == .startCall)
            last = state.callFailed(error: "HTTP 500", retryAfter: nil, now: now).retryAfter
            now += last
        }
        #expect(last == .milliseconds(Int64(delay * 1000)))
        let justBefore = state.tokenRequested(now: now - .milliseconds(1), minTTL: .zero)
        #expect(justBefore == .fail(retryAfter: .milliseconds(1), lastError: "HTTP 500"))
        #expect(state.tokenRequested(now: now, minTTL: .zero) == .startCall)
    }

    @Test("Personio's Retry-After lengthens the back-off, never shortens it")
    func retryAfter() {
        var longer = State(policy: Self.policy)
        #expect(longer.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        #expect(
            longer.callFailed(error: "HTTP 429", retryAfter: .seconds(30), now: Self.at(0)).retryAfter == .seconds(30)
        )
        #expect(
            longer.tokenRequested(now: Self.at(29.5), minTTL: .zero)
                == .fail(retryAfter: .milliseconds(500), lastError: "HTTP 429")
        )
        var shorter = State(policy: Self.policy)
        #expect(shorter.tokenRequested(now: Self.at(0), minTTL: .zero) == .startCall)
        let short = shorter.callFailed(error: "HTTP 429", retryAfter: .milliseconds(100), now: Self.at(0))
        #expect(short.retryAfter == .seconds(1))
    }

    @Test(
        "Retry-After seconds are rounded up once, at least 1",
        arguments: [
            (Duration.zero, 1), (.milliseconds(1), 1), (.seconds(1), 1), (.milliseconds(1001), 2), (.seconds(30), 30),
            (.milliseconds(29_999), 30),
        ]
    )
    func retryAfterSeconds(duration: Duration, seconds: Int) {
        #expect(duration.retryAfterSeconds == seconds)
    }

    @Test("a still-valid token is served while backing off, whatever min_ttl asks")
    func servesWhileBackingOff() {
        var state = Self.holding()
        #expect(state.tokenRequested(now: Self.at(41), minTTL: .seconds(30)) == .startCall)
        _ = state.callFailed(error: "HTTP 503", retryAfter: nil, now: Self.at(41))
        #expect(state.tokenRequested(now: Self.at(41.5), minTTL: .seconds(30)) == .serve(Self.token()))
        #expect(state.tokenRequested(now: Self.at(41.5), minTTL: .zero) == .serve(Self.token()))
    }

    @Test(
        "no more than the call limit in any window (150 for v2, 60 for v1), even with no back-off",
        arguments: [Provider.personioV2, .personioV1]
    )
    func callLimit(provider: Provider) {
        var policy = RefreshPolicy.forProvider(provider)
        policy.initialBackoff = .zero
        policy.maximumBackoff = .zero
        let limit = provider == .personioV1 ? 60 : 150
        #expect(policy.callLimit == limit)
        var state = State(policy: policy)
        for call in 0..<limit {
            let now = Self.at(Double(call) * 0.01)
            #expect(state.tokenRequested(now: now, minTTL: .zero) == .startCall)
            _ = state.callFailed(error: "HTTP 503", retryAfter: nil, now: now)
        }
        // The next call in the window is refused until the oldest call leaves it, 60 s after it was made.
        let atLimit = state.tokenRequested(now: Self.at(30), minTTL: .zero)
        #expect(atLimit == .fail(retryAfter: .seconds(30), lastError: "local rate limit for Personio token calls"))
        #expect(state.tokenRequested(now: Self.at(60), minTTL: .zero) == .startCall)
    }

    @Test("verify and revocation calls count toward the same limit as token calls")
    func everyExchangeCounts() {
        var policy = Self.policy
        policy.callLimit = 4
        var state = State(policy: policy)
        #expect(state.verifyRequested(now: Self.at(0)) == nil)
        #expect(state.extraCallRequested(now: Self.at(1)) == true)
        #expect(state.verifyRequested(now: Self.at(2)) == nil)
        #expect(state.tokenRequested(now: Self.at(3), minTTL: .zero) == .startCall)
        _ = state.callFailed(error: "HTTP 503", retryAfter: nil, now: Self.at(3))
        // Four calls in the window: a verify, a revocation and a token call are all refused now.
        #expect(state.verifyRequested(now: Self.at(10)) == .seconds(50))
        #expect(state.extraCallRequested(now: Self.at(10)) == false)
        #expect(
            state.tokenRequested(now: Self.at(10), minTTL: .zero)
                == .fail(retryAfter: .seconds(50), lastError: "local rate limit for Personio token calls")
        )
        // The verify made at 0 leaves the window at 60.
        #expect(state.verifyRequested(now: Self.at(60)) == nil)
    }

    @Test("a refresh starts at the refresh point, once, and not while backing off")
    func refreshAhead() {
        var state = Self.holding()
        #expect(state.refreshDue(now: Self.at(39.9)) == false)
        #expect(state.refreshDue(now: Self.at(40)) == true)
        #expect(state.refreshDue(now: Self.at(40.1)) == false)
        _ = state.callFailed(error: "HTTP 500", retryAfter: nil, now: Self.at(40.2))
        #expect(state.refreshDue(now: Self.at(41)) == false)
        #expect(state.refreshDue(now: Self.at(41.2)) == true)
    }

    @Test("a refresh that brings back the same token schedules the next one at its expiry")
    func sameTokenRefresh() {
        var state = Self.holding()
        #expect(state.refreshDue(now: Self.at(40)) == true)
        #expect(state.callSucceeded(Self.token()).isEmpty)
        #expect(state.token?.refreshAt == Self.at(60))
        #expect(state.refreshDue(now: Self.at(59.9)) == false)
    }

    @Test("a verify's token is kept unless a call is under way; a refused token is dropped once old enough")
    func tokensFromElsewhere() {
        var state = State(policy: Self.policy)
        #expect(state.tokenObtained(Self.token("verify-token")) == true)
        #expect(state.tokenRequested(now: Self.at(1), minTTL: .zero) == .serve(Self.token("verify-token")))
        #expect(state.tokenRejected(accessToken: "verify-token", now: Self.at(9.9)) == false)
        #expect(state.tokenRejected(accessToken: "other-token", now: Self.at(20)) == false)
        #expect(state.tokenRejected(accessToken: "verify-token", now: Self.at(10)) == true)
        #expect(state.token == nil)
        #expect(state.tokenRequested(now: Self.at(11), minTTL: .zero) == .startCall)
        #expect(state.tokenObtained(Self.token("verify-token")) == false)
    }

    @Test("invalidating drops the token and any back-off, but not the call window")
    func invalidate() {
        var state = Self.holding()
        #expect(state.tokenRequested(now: Self.at(50), minTTL: .seconds(30)) == .startCall)
        _ = state.callFailed(error: "HTTP 500", retryAfter: .seconds(300), now: Self.at(50))
        #expect(state.invalidated().isEmpty)
        #expect(state.token == nil)
        guard case .idle(nil) = state.phase else {
            Issue.record("still backing off after invalidation: \(state.phase)")
            return
        }
        #expect(state.limiter.starts.count == 2)
        #expect(state.tokenRequested(now: Self.at(51), minTTL: .zero) == .startCall)
    }
}
