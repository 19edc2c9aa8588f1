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
    /// Upstream calls allowed per connection in `window` (Personio: 150 per minute for v2, 60 for v1): token
    /// exchanges, refreshes, verifies and revocations alike (``CallLimiter``).
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

// MARK: - The call limiter

/// The start times of one connection's recent upstream calls, a sliding window: every exchange with Personio (token,
/// verify, revocation) is admitted by it, so a connection never makes more calls than Personio's limit (DESIGN §6).
public struct CallLimiter: Sendable, Equatable {
    /// Oldest first; never more than `capacity`, which is above any limit.
    public private(set) var starts: [ContinuousClock.Instant] = []
    static let capacity = 256

    public init() {}

    /// Calls started within the window before `now`.
    public func callsInWindow(at now: ContinuousClock.Instant, policy: RefreshPolicy) -> Int {
        // Oldest first: the calls still in the window are a suffix.
        var count = 0
        for start in self.starts.reversed() {
            guard now - start < policy.window else { break }
            count += 1
        }
        return count
    }

    /// Whether a call may start at `now`.
    public func admits(at now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        self.callsInWindow(at: now, policy: policy) < policy.callLimit
    }

    /// How long until the oldest call in the window leaves it (zero when the window is empty).
    public func resetsIn(at now: ContinuousClock.Instant, policy: RefreshPolicy) -> Duration {
        guard let oldest = self.starts.first(where: { now - $0 < policy.window }) else { return .zero }
        return policy.window - (now - oldest)
    }

    /// Whether no call is in the window any longer (the limiter can be forgotten).
    public func isEmpty(at now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        self.callsInWindow(at: now, policy: policy) == 0
    }

    /// Counts a call started at `now` if the limit admits it.
    public mutating func reserve(at now: ContinuousClock.Instant, policy: RefreshPolicy) -> Bool {
        guard self.admits(at: now, policy: policy) else { return false }
        self.record(at: now)
        return true
    }

    mutating func record(at now: ContinuousClock.Instant) {
        self.starts.append(now)
        if self.starts.count > Self.capacity { self.starts.removeFirst(self.starts.count - Self.capacity) }
    }
}

extension Duration {
    /// Whole seconds for a `Retry-After` (rounded up, at least 1): every Retry-After the broker sends comes from here.
    var retryAfterSeconds: Int {
        let components = self.components
        return max(1, Int(components.seconds) + (components.attoseconds > 0 ? 1 : 0))
    }

    /// Seconds as a floating-point number (for wall-clock schedules kept as seconds since 1970).
    var secondsValue: Double {
        let components = self.components
        return Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

// MARK: - The state machine

/// The broker's state of one token of a connection (one per scope it hands out, DESIGN §10) as a state machine:
/// events come in as mutating calls, each returning what the broker must do (serve, start a call, wait, fail, resume
/// waiters). Free of I/O and of locks, so every rule is tested as a table of values; the broker holds it under its
/// `entries` lock and acts on the answers outside the lock.
///
/// The call window is the connection's, shared by all its tokens (Personio counts calls per client, whatever the
/// scope): every event that may start a call is given it (`limiter`), and counts the call there.
///
/// Nothing outside this type changes its fields. `Waiter` is what a caller waiting for the call under way leaves
/// behind (the broker's continuations; a plain value in tests).
public struct TokenState<Waiter: Sendable>: Sendable {
    /// The last call failed: when the next may start, and how many failed in a row (for the back-off).
    public struct Failure: Sendable, Equatable {
        public var count: Int
        public var retryAt: ContinuousClock.Instant
        public var lastError: String
    }

    /// Where the connection is. A token (still valid or not yet dropped) can be held in every phase.
    public enum Phase: Sendable {
        /// No call under way, the last one (if any) succeeded.
        case idle(token: CachedToken?)
        /// One upstream token call is under way; `waiters` wait for it. `after` is the failure before it, kept so
        /// that a call ending without a verdict leaves the back-off where it was.
        case calling(token: CachedToken?, waiters: [Waiter], after: Failure?)
        /// The last call failed; no call before `failure.retryAt`.
        case backingOff(token: CachedToken?, failure: Failure)
    }

    /// What to do with a token request.
    public enum RequestAction: Sendable, Equatable {
        /// Answer with this token now.
        case serve(CachedToken)
        /// This caller makes the upstream call (already counted); others wait for it.
        case startCall
        /// Another caller's upstream call is under way: wait for it (``waiterArrived(_:)``).
        case wait
        /// No usable token and no call allowed yet: answer 503 with `Retry-After`.
        case fail(retryAfter: Duration, lastError: String?)
    }

    /// What a call that ended with a failure leaves to do.
    public struct FailureAction: Sendable {
        public var waiters: [Waiter]
        /// The wait before the next call.
        public var retryAfter: Duration
    }

    public private(set) var phase: Phase
    /// When the last token or verify call started (`minimumRefetchInterval`).
    public private(set) var lastCallAt: ContinuousClock.Instant?
    public let policy: RefreshPolicy

    static var rateLimited: String { "local rate limit for Personio token calls" }

    public init(policy: RefreshPolicy) {
        self.phase = .idle(token: nil)
        self.policy = policy
    }

    /// The token held, if any.
    public var token: CachedToken? {
        switch self.phase {
        case .idle(let token), .calling(let token, _, _), .backingOff(let token, _): token
        }
    }

    /// The token `state` holds, read in place (``token`` on a copy): for a state stored in a class, whose property
    /// read copies the whole state first.
    static func token(in state: inout TokenState) -> CachedToken? {
        state.token
    }

    /// Whether a token call is under way.
    public var isCalling: Bool {
        if case .calling = self.phase { true } else { false }
    }

    // MARK: Events

    /// A request needing at least `minTTL` of remaining lifetime at `now`; `limiter` is the connection's call window.
    public mutating func tokenRequested(
        now: ContinuousClock.Instant,
        minTTL: Duration,
        limiter: inout CallLimiter
    ) -> RequestAction {
        self.dropToken(expiredAt: now)
        switch self.phase {
        case .idle(let token):
            if let token, self.keepsServing(token, now: now, minTTL: minTTL) { return .serve(token) }
            guard limiter.admits(at: now, policy: self.policy) else {
                return token.map { .serve($0) } ?? self.rateLimitedAction(now: now, limiter: limiter)
            }
            self.startCall(now: now, token: token, after: nil, limiter: &limiter)
            return .startCall
        case .calling(let token, _, _):
            // Someone refreshes it: serve the valid token meanwhile, or wait for the new one.
            return token.map { .serve($0) } ?? .wait
        case .backingOff(let token, let failure):
            if now < failure.retryAt {
                return token.map { .serve($0) }
                    ?? .fail(retryAfter: failure.retryAt - now, lastError: failure.lastError)
            }
            if let token, self.keepsServing(token, now: now, minTTL: minTTL) { return .serve(token) }
            guard limiter.admits(at: now, policy: self.policy) else {
                return token.map { .serve($0) } ?? self.rateLimitedAction(now: now, limiter: limiter)
            }
            self.startCall(now: now, token: token, after: failure, limiter: &limiter)
            return .startCall
        }
    }

    /// A caller told to ``RequestAction/wait`` arrives with its waiter. Returns false when the call has ended
    /// meanwhile: resume the waiter at once.
    public mutating func waiterArrived(_ waiter: Waiter) -> Bool {
        guard case .calling(let token, var waiters, let after) = self.phase else { return false }
        // Not left in the phase while appending, so the array is not copied.
        self.phase = .idle(token: nil)
        waiters.append(waiter)
        self.phase = .calling(token: token, waiters: waiters, after: after)
        return true
    }

    /// The refresh loop's tick: whether to refresh the token now (past its refresh point, no call under way, not
    /// backing off, allowed by the limit). True means the call has started (and is counted).
    public mutating func refreshDue(now: ContinuousClock.Instant, limiter: inout CallLimiter) -> Bool {
        let after: Failure?
        switch self.phase {
        case .calling: return false
        case .idle: after = nil
        case .backingOff(_, let failure):
            guard now >= failure.retryAt else { return false }
            after = failure
        }
        guard let token = self.token, now >= token.refreshAt, limiter.admits(at: now, policy: self.policy)
        else { return false }
        self.startCall(now: now, token: token, after: after, limiter: &limiter)
        return true
    }

    /// The call under way returned `token`. Returns the waiters to resume.
    public mutating func callSucceeded(_ token: CachedToken) -> [Waiter] {
        guard case .calling(let current, let waiters, _) = self.phase else { return [] }
        var token = token
        if current?.accessToken == token.accessToken {
            // Personio hands out the same token for a credential pair until it expires: asking again before then
            // cannot renew it, so the next refresh is due when it expires.
            token.refreshAt = token.expiresAt
        }
        self.phase = .idle(token: token)
        return waiters
    }

    /// The call under way failed: cool-down, then exponential back-off, capped. `retryAfter` from Personio
    /// lengthens the wait, never shortens it. A still-valid token keeps being served.
    public mutating func callFailed(error: String, retryAfter: Duration?, now: ContinuousClock.Instant) -> FailureAction
    {
        guard case .calling(let token, let waiters, let after) = self.phase else {
            return FailureAction(waiters: [], retryAfter: self.retryAfter(now: now))
        }
        let count = (after?.count ?? 0) + 1
        var delay = self.policy.initialBackoff
        for _ in 1..<min(count, 30) where delay < self.policy.maximumBackoff { delay *= 2 }
        delay = min(delay, self.policy.maximumBackoff)
        if let retryAfter, retryAfter > delay { delay = min(retryAfter, .seconds(3600)) }
        self.phase = .backingOff(token: token, failure: Failure(count: count, retryAt: now + delay, lastError: error))
        return FailureAction(waiters: waiters, retryAfter: delay)
    }

    /// The call under way ended without a verdict on Personio (the connection changed meanwhile, an internal error):
    /// the back-off stays as it was. Returns the waiters to resume.
    public mutating func callAbandoned() -> [Waiter] {
        guard case .calling(let token, let waiters, let after) = self.phase else { return [] }
        self.phase = after.map { .backingOff(token: token, failure: $0) } ?? .idle(token: token)
        return waiters
    }

    /// A verify is about to exchange the credentials: it counts toward the limit like any call. Returns nil when
    /// the call may start (it is counted), else how long until the limit admits one.
    public mutating func verifyRequested(now: ContinuousClock.Instant, limiter: inout CallLimiter) -> Duration? {
        guard limiter.reserve(at: now, policy: self.policy) else {
            return limiter.resetsIn(at: now, policy: self.policy)
        }
        self.lastCallAt = now
        return nil
    }

    /// A token obtained outside a call of this state (a verify): kept unless a call is under way, whose own result
    /// comes soon.
    public mutating func tokenObtained(_ token: CachedToken) -> Bool {
        if case .calling = self.phase { return false }
        self.phase = .idle(token: token)
        return true
    }

    /// Personio refused `accessToken`: dropped if it is the token held and old enough that asking again may bring a
    /// new one. Returns whether it was dropped.
    public mutating func tokenRejected(accessToken: String, now: ContinuousClock.Instant) -> Bool {
        guard let token = self.token, token.accessToken == accessToken,
            now - token.obtainedAt >= self.policy.minimumRefetchInterval
        else { return false }
        self.replaceToken(nil)
        return true
    }

    /// Drops the token and any back-off (after a disable, reset, edit or disconnect). Returns the waiters to resume
    /// (they ask again and find the change); the connection's call window is not this state's to drop.
    public mutating func invalidated() -> [Waiter] {
        let waiters: [Waiter]
        if case .calling(_, let calling, _) = self.phase { waiters = calling } else { waiters = [] }
        self.phase = .idle(token: nil)
        return waiters
    }

    // MARK: Rules

    /// Serve a held token when it is fresh enough, or asking again would be pointless (Personio hands back the same
    /// token for a while).
    private func keepsServing(_ token: CachedToken, now: ContinuousClock.Instant, minTTL: Duration) -> Bool {
        if token.remaining(at: now) >= minTTL { return true }
        return self.lastCallAt.map { now - $0 < self.policy.minimumRefetchInterval } ?? false
    }

    private func rateLimitedAction(now: ContinuousClock.Instant, limiter: CallLimiter) -> RequestAction {
        .fail(retryAfter: limiter.resetsIn(at: now, policy: self.policy), lastError: Self.rateLimited)
    }

    private func retryAfter(now: ContinuousClock.Instant) -> Duration {
        if case .backingOff(_, let failure) = self.phase, failure.retryAt > now { return failure.retryAt - now }
        return .zero
    }

    private mutating func startCall(
        now: ContinuousClock.Instant,
        token: CachedToken?,
        after: Failure?,
        limiter: inout CallLimiter
    ) {
        limiter.record(at: now)
        self.lastCallAt = now
        self.phase = .calling(token: token, waiters: [], after: after)
    }

    private mutating func dropToken(expiredAt now: ContinuousClock.Instant) {
        if let token = self.token, token.expiresAt <= now { self.replaceToken(nil) }
    }

    private mutating func replaceToken(_ token: CachedToken?) {
        switch self.phase {
        case .idle: self.phase = .idle(token: token)
        case .calling(_, let waiters, let after):
            self.phase = .idle(token: nil)
            self.phase = .calling(token: token, waiters: waiters, after: after)
        case .backingOff(_, let failure): self.phase = .backingOff(token: token, failure: failure)
        }
    }
}
