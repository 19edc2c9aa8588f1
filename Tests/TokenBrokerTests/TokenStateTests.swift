import Testing
import TokenBroker

@testable import VaultCore

/// The broker's rules as values: every decision is taken at an instant the test chooses, so no rule here depends on
/// how fast the machine runs. The broker tests check the same rules end to end against the Personio stand-in.
@Suite("Token state")
struct TokenStateTests {
    static let t0 = ContinuousClock.now
    static let policy = RefreshPolicy()

    static func at(_ seconds: Double) -> ContinuousClock.Instant {
        Self.t0 + .milliseconds(Int64((seconds * 1000).rounded()))
    }

    static func token(obtainedAt: Double = 0, lifetime: Double = 60, refreshAfter: Double = 40) -> CachedToken {
        CachedToken(
            accessToken: "fake-token",
            tokenType: "Bearer",
            scope: nil,
            revision: 1,
            obtainedAt: Self.at(obtainedAt),
            expiresAt: Self.at(obtainedAt + lifetime),
            expiresAtWall: 0,
            refreshAt: Self.at(obtainedAt + refreshAfter)
        )
    }

    /// A state that made one call at `t0` and got `token()` from it.
    static func holding(_ token: CachedToken = Self.token()) -> TokenState {
        var state = TokenState()
        let first = state.decide(now: Self.at(0), minTTL: .zero, policy: Self.policy)
        #expect(first == .fetch)
        state.succeeded(token)
        return state
    }

    @Test("a cold state makes one call; callers meanwhile wait for it")
    func singleFlight() {
        var state = TokenState()
        let first = state.decide(now: Self.at(0), minTTL: .zero, policy: Self.policy)
        #expect(first == .fetch)
        for _ in 0..<64 {
            let meanwhile = state.decide(now: Self.at(0.01), minTTL: .zero, policy: Self.policy)
            #expect(meanwhile == .wait)
        }
        #expect(state.recentCalls.count == 1)
    }

    @Test("a valid token is served; an expired one is dropped and fetched again")
    func servesUntilExpiry() {
        var state = Self.holding()
        let beforeExpiry = state.decide(now: Self.at(59.9), minTTL: .zero, policy: Self.policy)
        #expect(beforeExpiry == .serve(Self.token()))
        let atExpiry = state.decide(now: Self.at(60), minTTL: .zero, policy: Self.policy)
        #expect(atExpiry == .fetch)
        #expect(state.token == nil)
    }

    @Test("min_ttl beyond the remaining lifetime asks again, but not within 10 s of the last call")
    func minTTL() {
        var state = Self.holding()
        // 55 s left, 58 s wanted: Personio would hand back the same token this soon, so it is served as it is.
        let tooSoon = state.decide(now: Self.at(5), minTTL: .seconds(58), policy: Self.policy)
        #expect(tooSoon == .serve(Self.token()))
        // 10 s after the last call a new one is made; the old token is served to others meanwhile.
        let tenSecondsOn = state.decide(now: Self.at(10), minTTL: .seconds(58), policy: Self.policy)
        #expect(tenSecondsOn == .fetch)
        let duringCall = state.decide(now: Self.at(10.1), minTTL: .seconds(58), policy: Self.policy)
        #expect(duringCall == .serve(Self.token()))
    }

    @Test(
        "failures back off 1, 2, 4 … s, capped at 60 s",
        arguments: [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (8, 60.0), (40, 60.0)]
    )
    func backoff(failures: Int, delay: Double) {
        var state = TokenState()
        for _ in 0..<failures {
            state.failed(now: Self.at(0), error: "HTTP 500", retryAfter: nil, policy: Self.policy)
        }
        let justBefore = state.decide(now: Self.at(delay - 0.001), minTTL: .zero, policy: Self.policy)
        #expect(justBefore == .unavailable(retryAfter: .milliseconds(1), lastError: "HTTP 500"))
        let atRetry = state.decide(now: Self.at(delay), minTTL: .zero, policy: Self.policy)
        #expect(atRetry == .fetch)
    }

    @Test("Personio's Retry-After lengthens the back-off, never shortens it")
    func retryAfter() {
        var longer = TokenState()
        longer.failed(now: Self.at(0), error: "HTTP 429", retryAfter: .seconds(30), policy: Self.policy)
        #expect(longer.retryAt == Self.at(30))
        var shorter = TokenState()
        shorter.failed(now: Self.at(0), error: "HTTP 429", retryAfter: .milliseconds(100), policy: Self.policy)
        #expect(shorter.retryAt == Self.at(1))
    }

    @Test("a still-valid token is served while backing off, whatever min_ttl asks")
    func servesWhileBackingOff() {
        var state = Self.holding()
        let wanting30 = state.decide(now: Self.at(41), minTTL: .seconds(30), policy: Self.policy)
        #expect(wanting30 == .fetch)
        state.failed(now: Self.at(41), error: "HTTP 503", retryAfter: nil, policy: Self.policy)
        let backingOff = state.decide(now: Self.at(41.5), minTTL: .seconds(30), policy: Self.policy)
        #expect(backingOff == .serve(Self.token()))
        let anyTTL = state.decide(now: Self.at(41.5), minTTL: .zero, policy: Self.policy)
        #expect(anyTTL == .serve(Self.token()))
    }

    @Test("no more than the call limit in any window, even with no back-off")
    func callLimit() {
        var policy = Self.policy
        policy.initialBackoff = .zero
        policy.maximumBackoff = .zero
        var state = TokenState()
        for call in 0..<150 {
            let now = Self.at(Double(call) * 0.01)
            let call = state.decide(now: now, minTTL: .zero, policy: policy)
            #expect(call == .fetch)
            state.failed(now: now, error: "HTTP 503", retryAfter: nil, policy: policy)
        }
        // The oldest call leaves the window 60 s after it was made.
        let atLimit = state.decide(now: Self.at(30), minTTL: .zero, policy: policy)
        #expect(
            atLimit == .unavailable(retryAfter: .seconds(30), lastError: "local rate limit for Personio token calls")
        )
        let afterWindow = state.decide(now: Self.at(60), minTTL: .zero, policy: policy)
        #expect(afterWindow == .fetch)
    }

    @Test("a refresh starts at the refresh point, once, and not while backing off")
    func refreshAhead() {
        var state = Self.holding()
        let early = state.shouldRefresh(now: Self.at(39.9), policy: Self.policy)
        #expect(!early)
        let atRefreshPoint = state.shouldRefresh(now: Self.at(40), policy: Self.policy)
        #expect(atRefreshPoint)
        let again = state.shouldRefresh(now: Self.at(40.1), policy: Self.policy)
        #expect(!again)
        state.failed(now: Self.at(40.2), error: "HTTP 500", retryAfter: nil, policy: Self.policy)
        let beforeRetry = state.shouldRefresh(now: Self.at(41), policy: Self.policy)
        #expect(!beforeRetry)
        let atRetry = state.shouldRefresh(now: Self.at(41.2), policy: Self.policy)
        #expect(atRetry)
    }

    @Test("invalidating drops the token and any back-off")
    func invalidate() {
        var state = Self.holding()
        state.failed(now: Self.at(1), error: "HTTP 500", retryAfter: .seconds(300), policy: Self.policy)
        let dropped = state.invalidate()
        #expect(dropped == Self.token())
        #expect(state.token == nil && state.retryAt == nil && state.failures == 0 && state.lastError == nil)
        let afterwards = state.decide(now: Self.at(2), minTTL: .zero, policy: Self.policy)
        #expect(afterwards == .fetch)
    }
}
