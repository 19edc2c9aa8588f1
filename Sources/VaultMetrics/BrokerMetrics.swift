import CoreMetrics

/// The token broker's counters: upstream exchanges by outcome, the token cache, proxied requests, revocations.
///
/// Every series is created once, in `init`, from the factory the daemon hands in, and held: incrementing one is an
/// atomic add on the object held here, with no look-up by label on the request path. Labels are fixed words (never a
/// connection id, a path or anything a caller sent), so the number of series is bounded and nothing here can hold a
/// secret. (The number of revocations pending is read from the vault's status at each scrape, not counted here.)
///
/// Where the broker counts:
/// - ``exchanged(_:_:)``: once per call to Personio, when it returns — each token exchange (`.token`, or `.verify`
///   when `verify` asked for it; a repeated exchange after a revoke-first counts again) and each revocation call
///   (`.revoke`); `.ok` when it returned, else the outcome of its `PersonioAuthError` code.
/// - ``cacheHit()``: a token request answered from the cache: the fast path (`cachedResponse` returning a token) and
///   a slow-path or proxy request served without waiting for an exchange.
/// - ``cacheMiss()``: a token request (or a proxied request's token) that waited for an exchange, once per request.
/// - ``proxied(status:)``: each forwarded request, with Personio's status, or `nil` when no answer came.
/// - ``revocation(_:)``: `.revoked` when Personio accepted a revocation; `.failed` when a pending row's token expired
///   before one was accepted (`token.revoke_failed`).
///
/// A class, and immutable: the counters are read through the broker on the request path, and a struct of a dozen
/// references (and an existential) was copied out of it for each count (about 300 instructions per proxied request).
public final class BrokerMetrics: Sendable {
    /// An exchange with Personio.
    public enum Exchange: Int, Sendable, CaseIterable {
        /// A token request (`POST /v1/auth/token` or `/oauth/token`).
        case token
        /// A credential check (`POST …/verify`).
        case verify
        /// A token revocation.
        case revoke

        var label: String {
            switch self {
            case .token: "token"
            case .verify: "verify"
            case .revoke: "revoke"
            }
        }
    }

    /// How an exchange ended.
    public enum Outcome: Int, Sendable, CaseIterable {
        /// Personio accepted.
        case ok
        /// Personio answered and refused (rejected credentials, a refused request).
        case rejected
        /// Personio could not be reached, timed out, or answered 429/5xx.
        case unavailable
        /// Anything else: an answer that could not be read, an internal failure.
        case error

        var label: String {
            switch self {
            case .ok: "ok"
            case .rejected: "rejected"
            case .unavailable: "unavailable"
            case .error: "error"
            }
        }
    }

    /// How a revocation ended for good.
    public enum Revocation: Sendable {
        /// Personio accepted it (`token.revoked`).
        case revoked
        /// The token expired before Personio accepted one (`token.revoke_failed`).
        case failed
    }

    /// Indexed by `exchange.rawValue * Outcome.allCases.count + outcome.rawValue`.
    private let exchanges: [Counter]
    private let cacheHits: Counter
    private let cacheMisses: Counter
    /// Indexed by status class 1…5, and 0 for requests Personio did not answer.
    private let proxied: [Counter]
    private let revoked: Counter
    private let revokeFailed: Counter
    /// Where per-connection series (``ruleCounter(connection:rule:)``) are created.
    private let factory: any MetricsFactory

    /// Creates every series at once, so that each is exported (at 0) from the start.
    /// - Parameter factory: Where the series live: the daemon's Prometheus registry, or ``disabled``'s no-op factory.
    public init(factory: any MetricsFactory) {
        self.factory = factory
        self.exchanges = Exchange.allCases.flatMap { exchange in
            Outcome.allCases.map { outcome in
                Counter(
                    label: MetricNames.upstreamExchanges,
                    dimensions: [("exchange", exchange.label), ("outcome", outcome.label)],
                    factory: factory
                )
            }
        }
        self.cacheHits = Counter(label: MetricNames.tokenCacheHits, factory: factory)
        self.cacheMisses = Counter(label: MetricNames.tokenCacheMisses, factory: factory)
        self.proxied = ["unanswered", "1xx", "2xx", "3xx", "4xx", "5xx"].map { status in
            Counter(label: MetricNames.proxiedRequests, dimensions: [("status", status)], factory: factory)
        }
        self.revoked = Counter(
            label: MetricNames.revocations,
            dimensions: [("outcome", "revoked")],
            factory: factory
        )
        self.revokeFailed = Counter(
            label: MetricNames.revocations,
            dimensions: [("outcome", "failed")],
            factory: factory
        )
    }

    /// Counters that count nothing: for brokers built without a registry (tests, tools).
    public static var disabled: BrokerMetrics { BrokerMetrics(factory: NOOPMetricsHandler.instance) }

    /// One exchange with Personio ended with `outcome`.
    public func exchanged(_ exchange: Exchange, _ outcome: Outcome) {
        self.exchanges[exchange.rawValue * Outcome.allCases.count + outcome.rawValue].increment()
    }

    /// A token request was answered from the cache, without waiting for Personio.
    public func cacheHit() {
        self.cacheHits.increment()
    }

    /// A token request had to wait for a token exchange (its own, or one in progress for the same connection).
    public func cacheMiss() {
        self.cacheMisses.increment()
    }

    /// A proxied request got Personio's answer with `status`, or none (`nil`: unreachable, timed out).
    public func proxied(status: Int?) {
        guard let status, (100..<600).contains(status) else {
            self.proxied[0].increment()
            return
        }
        self.proxied[status / 100].increment()
    }

    /// A pending revocation ended for good.
    public func revocation(_ outcome: Revocation) {
        switch outcome {
        case .revoked: self.revoked.increment()
        case .failed: self.revokeFailed.increment()
        }
    }
}

extension BrokerMetrics {
    /// Cached token answers of one connection and rule (`connvault_token_cache_hits_by_rule_total`), held by the
    /// broker's entry for the connection: counting is an atomic add, no look-up by label.
    public struct RuleCounter: Sendable {
        let counter: Counter

        /// A token request of this rule's callers was answered from the cache.
        public func cachedAnswer() {
            self.counter.increment()
        }
    }

    /// The series for cached answers of `connection`'s rule `rule` (a fixed label: `uids`, `groups`, `units`,
    /// `rules[N]`). Created when the broker loads the connection; the same series again when it is reloaded. Unlike
    /// the other series, labelled with the connection id: ids are chosen by admins, bounded by the connections that
    /// exist, and no secret.
    public func ruleCounter(connection: String, rule: String) -> RuleCounter {
        RuleCounter(
            counter: Counter(
                label: MetricNames.tokenCacheHitsByRule,
                dimensions: [("connection", connection), ("rule", rule)],
                factory: self.factory
            )
        )
    }
}
