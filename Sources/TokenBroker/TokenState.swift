import VaultAPI
import VaultCore

/// A token as the broker caches it: in memory only, for one revision of one connection.
public struct CachedToken: Sendable, Equatable {
    public var accessToken: String
    public var tokenType: String
    public var scope: String?
    /// The connection revision whose credentials obtained it; a new revision never sees it.
    public var revision: Int64
    public var obtainedAt: ContinuousClock.Instant
    public var expiresAt: ContinuousClock.Instant
    /// Wall-clock expiry, seconds since 1970, for `expires_at`.
    public var expiresAtWall: Double
    /// When the broker refreshes it ahead of expiry (about two thirds of the lifetime, with jitter).
    public var refreshAt: ContinuousClock.Instant

    package init(
        accessToken: String,
        tokenType: String,
        scope: String?,
        revision: Int64,
        obtainedAt: ContinuousClock.Instant,
        expiresAt: ContinuousClock.Instant,
        expiresAtWall: Double,
        refreshAt: ContinuousClock.Instant
    ) {
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.scope = scope
        self.revision = revision
        self.obtainedAt = obtainedAt
        self.expiresAt = expiresAt
        self.expiresAtWall = expiresAtWall
        self.refreshAt = refreshAt
    }

    public func remaining(at now: ContinuousClock.Instant) -> Duration { self.expiresAt - now }
}

/// The refresh and back-off rules, as numbers.
public struct RefreshPolicy: Sendable {
    /// Fraction of the lifetime after which a token is refreshed ahead of expiry.
    public var refreshFraction: Double = 2.0 / 3.0
    /// Jitter applied to the refresh point, as a fraction of the lifetime (±).
    public var jitterFraction: Double = 0.05
    /// First cool-down after a failure; doubles with each further failure up to `maximumBackoff`.
    public var initialBackoff: Duration = .seconds(1)
    public var maximumBackoff: Duration = .seconds(60)
    /// Upstream token calls allowed per connection in `window` (Personio: 150 per minute for v2, 60 for v1).
    public var callLimit: Int = 150
    public var window: Duration = .seconds(60)
    /// A `min_ttl` never makes the broker ask again sooner than this after its last call: Personio hands out the
    /// same token for a credential pair while it is valid, so asking again early would only burn the rate limit.
    public var minimumRefetchInterval: Duration = .seconds(10)

    public init() {}

    /// The policy for one provider's limits.
    public static func forProvider(_ provider: Provider) -> RefreshPolicy {
        var policy = RefreshPolicy()
        if provider == .personioV1 { policy.callLimit = 60 }
        return policy
    }
}

/// Per-connection broker state as a plain value: what to do with a token request, and how to fold in the result of
/// an upstream call. Kept free of I/O so that every rule is tested as a table of values.
public struct TokenState: Sendable {
    public var token: CachedToken?
    public var inFlight = false
    public var failures = 0
    public var retryAt: ContinuousClock.Instant?
    public var lastError: String?
    /// Start times of recent upstream calls, oldest first, at most `policy.callLimit`.
    public var recentCalls: [ContinuousClock.Instant] = []
    public var lastCallAt: ContinuousClock.Instant?

    public init() {}

    public enum Decision: Sendable, Equatable {
        /// Answer with this token now.
        case serve(CachedToken)
        /// This caller makes the upstream call; others wait for it.
        case fetch
        /// Another caller's upstream call is under way: wait for it.
        case wait
        /// No usable token and no call allowed yet: answer 503 with `Retry-After`.
        case unavailable(retryAfter: Duration, lastError: String?)
    }

    /// What to do with a request needing at least `minTTL` of remaining lifetime at `now`.
    public mutating func decide(now: ContinuousClock.Instant, minTTL: Duration, policy: RefreshPolicy) -> Decision {
        if let token = self.token, token.expiresAt <= now { self.token = nil }
        if let token = self.token {
            let remaining = token.remaining(at: now)
            let fresh = remaining >= minTTL
            let recentlyAsked = self.lastCallAt.map { now - $0 < policy.minimumRefetchInterval } ?? false
            // Serve a valid token while someone refreshes it, while backing off, or when asking again is pointless.
            if fresh || self.inFlight || recentlyAsked || !self.mayCall(now: now, policy: policy) {
                return .serve(token)
            }
            self.startCall(now: now)
            return .fetch
        }
        if self.inFlight { return .wait }
        if let retryAt = self.retryAt, now < retryAt {
            return .unavailable(retryAfter: retryAt - now, lastError: self.lastError)
        }
        if !self.underLimit(now: now, policy: policy) {
            return .unavailable(
                retryAfter: self.limitResetsIn(now: now, policy: policy),
                lastError: "local rate limit for Personio token calls"
            )
        }
        self.startCall(now: now)
        return .fetch
    }

    /// Whether a background refresh should start now (past the refresh point, nothing in flight, allowed).
    public mutating func shouldRefresh(now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        guard let token = self.token, now >= token.refreshAt, !self.inFlight, self.mayCall(now: now, policy: policy)
        else {
            return false
        }
        self.startCall(now: now)
        return true
    }

    /// Folds in a successful upstream call.
    public mutating func succeeded(_ token: CachedToken) {
        self.inFlight = false
        self.failures = 0
        self.retryAt = nil
        self.lastError = nil
        self.token = token
    }

    /// Folds in a failed upstream call: cool-down, then exponential back-off, capped. `retryAfter` from Personio
    /// lengthens the wait, never shortens it.
    public mutating func failed(
        now: ContinuousClock.Instant,
        error: String,
        retryAfter: Duration?,
        policy: RefreshPolicy
    ) {
        self.inFlight = false
        self.failures += 1
        self.lastError = error
        var delay = policy.initialBackoff
        for _ in 1..<min(self.failures, 30) where delay < policy.maximumBackoff { delay *= 2 }
        delay = min(delay, policy.maximumBackoff)
        if let retryAfter, retryAfter > delay { delay = min(retryAfter, .seconds(3600)) }
        self.retryAt = now + delay
    }

    /// Drops the token and any back-off (after a disable, reset, edit or disconnect).
    public mutating func invalidate() -> CachedToken? {
        let token = self.token
        self.token = nil
        self.failures = 0
        self.retryAt = nil
        self.lastError = nil
        return token
    }

    // MARK: - Call accounting

    /// Counts an upstream call that is not a token call (a revocation) against the limit, if the limit allows it.
    public mutating func reserveCall(now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        guard self.underLimit(now: now, policy: policy) else { return false }
        self.recentCalls.append(now)
        if self.recentCalls.count > 256 { self.recentCalls.removeFirst(self.recentCalls.count - 256) }
        return true
    }

    private func mayCall(now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        if let retryAt = self.retryAt, now < retryAt { return false }
        return self.underLimit(now: now, policy: policy)
    }

    private func underLimit(now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        self.recentCalls.filter { now - $0 < policy.window }.count < policy.callLimit
    }

    private func limitResetsIn(now: ContinuousClock.Instant, policy: RefreshPolicy) -> Duration {
        let inWindow = self.recentCalls.filter { now - $0 < policy.window }
        guard let oldest = inWindow.first else { return .zero }
        return policy.window - (now - oldest)
    }

    private mutating func startCall(now: ContinuousClock.Instant) {
        self.inFlight = true
        self.lastCallAt = now
        self.recentCalls.append(now)
        if self.recentCalls.count > 256 { self.recentCalls.removeFirst(self.recentCalls.count - 256) }
    }
}
