import VaultCore
import VaultLocks

/// Request budgets checked before anything is sent to Personio (DESIGN §10, issue 12 item 4):
///
/// - a rule's `rate_per_minute`, per connection and caller uid: a token bucket holding at most `rate` requests,
///   refilled at `rate` per minute. Proxied requests and token misses spend from it; a cached token answer does not
///   (it costs Personio nothing).
/// - Personio's documented limit for the recruiting API, 20 requests per 60 s per company, per recruiting
///   connection: a sliding window of the last 20 send times, so that no 60 s ever holds more than 20.
///
/// Both are kept outside the broker's entries, so that a change of the connection (which drops its entry) does not
/// hand a looping caller a fresh budget.
final class Budgets: Sendable {
    /// Personio's recruiting API limit (PERSONIO.md).
    static let recruitingLimit = 20
    static let recruitingWindow = Duration.seconds(60)

    struct Key: Hashable {
        var connection: String
        var uid: UInt32
    }

    /// A token bucket: `tokens` as of `updated`.
    struct Bucket {
        var rate: Int
        var tokens: Double
        var updated: ContinuousClock.Instant

        /// Refills to `now`; true when the bucket is full (it can be forgotten).
        mutating func refill(at now: ContinuousClock.Instant) -> Bool {
            let elapsed = (now - self.updated).secondsValue
            if elapsed > 0 {
                self.tokens = min(Double(self.rate), self.tokens + elapsed * Double(self.rate) / 60)
                self.updated = now
            }
            return self.tokens >= Double(self.rate)
        }

        /// How long until one request is in the bucket (zero when one is).
        func wait() -> Duration {
            guard self.tokens < 1 else { return .zero }
            return .milliseconds(Int64(((1 - self.tokens) * 60_000 / Double(self.rate)).rounded(.up)))
        }
    }

    private let buckets = Locked<[Key: Bucket]>([:])
    private let windows = Locked<[String: [ContinuousClock.Instant]]>([:])

    init() {}

    /// Spends one request of `uid`'s budget for `connection` (`rate` per minute), or returns the refusal (429
    /// `rate_limited`, `Retry-After` when one is available). With `recruiting`, the connection-wide window must admit
    /// the request too; a refusal there spends nothing from the caller's budget.
    func spend(
        connection: String,
        uid: UInt32,
        rate: Int?,
        recruiting: Bool,
        at now: ContinuousClock.Instant
    ) -> VaultError? {
        let key = Key(connection: connection, uid: uid)
        if let rate {
            let wait = self.buckets.withLock { buckets -> Duration in
                var bucket = buckets[key] ?? Bucket(rate: rate, tokens: Double(rate), updated: now)
                if bucket.rate != rate { bucket = Bucket(rate: rate, tokens: Double(rate), updated: now) }
                _ = bucket.refill(at: now)
                buckets[key] = bucket
                return bucket.wait()
            }
            if wait > .zero { return Self.refusal(connection, wait: wait, recruitingLimit: false) }
        }
        if recruiting, let wait = self.reserveRecruiting(connection, at: now) {
            return Self.refusal(connection, wait: wait, recruitingLimit: true)
        }
        if rate != nil {
            self.buckets.withLock { buckets in buckets[key]?.tokens -= 1 }
        }
        return nil
    }

    private func reserveRecruiting(_ connection: String, at now: ContinuousClock.Instant) -> Duration? {
        self.windows.withLock { windows -> Duration? in
            var starts = windows[connection] ?? []
            starts.removeAll { now - $0 >= Self.recruitingWindow }
            defer { windows[connection] = starts.isEmpty ? nil : starts }
            guard starts.count < Self.recruitingLimit else {
                return Self.recruitingWindow - (now - starts[0])
            }
            starts.append(now)
            return nil
        }
    }

    /// Forgets full buckets and empty windows (from the broker's refresh loop).
    func prune(at now: ContinuousClock.Instant) {
        self.buckets.withLock { buckets in
            for (key, var bucket) in buckets where bucket.refill(at: now) { buckets.removeValue(forKey: key) }
        }
        self.windows.withLock { windows in
            for (key, starts) in windows where starts.allSatisfy({ now - $0 >= Self.recruitingWindow }) {
                windows.removeValue(forKey: key)
            }
        }
    }

    /// The refusal for a request `wait` away from its budget: 429 `rate_limited` with `Retry-After`.
    static func refusal(_ connection: String, wait: Duration, recruitingLimit: Bool) -> VaultError {
        VaultError(
            .rateLimited,
            recruitingLimit
                ? "connection '\(connection)' has used Personio's recruiting limit (\(Self.recruitingLimit) requests "
                    + "per 60 s); retry later"
                : "your request budget for '\(connection)' is spent (its rule's rate_per_minute); retry later",
            retryAfter: wait.retryAfterSeconds
        )
    }
}
