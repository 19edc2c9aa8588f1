import Logging
import PersonioClient
import Synchronization
import VaultAPI
import VaultCore
import VaultCrypto
import VaultLocks
import VaultMetrics

/// Hands out short-lived Personio access tokens for connections, caching them in memory per connection revision and
/// scope (a rule with `scope` gets a token of its own scope, DESIGN §10; ``TokenSlot``).
///
/// - Cached tokens are served synchronously (`cachedResponse`), without touching the database or the network.
/// - A cold connection makes exactly one upstream call per scope however many callers ask at once (single flight).
/// - Tokens are refreshed ahead of expiry by `run()` (about two thirds of their lifetime, with jitter).
/// - After a failure: a cool-down, then capped exponential back-off, while a still-valid token keeps being served;
///   never more upstream calls per connection than Personio's limit.
/// - Every token obtained from Personio is recorded in the vault, sealed, before it is served; a disable, reset, edit,
///   needs_reset or disconnect drops the cached token at once, and the revoker in `run()` revokes every token of the
///   connection's previous state at Personio (v2), retrying with back-off until Personio accepts or the token expires,
///   also across restarts (DESIGN §11).
public final class TokenBroker: Sendable {
    let vault: Vault
    let auth: PersonioAuthClient
    /// Forwards app requests for the proxy route (`TokenBroker+Proxy.swift`).
    let proxyClient: PersonioProxy
    /// How long a proxied request waits for Personio's response head (`connvaultd --proxy-timeout`).
    let proxyTimeout: Duration
    /// Caps each caller's proxied requests in flight (`connvaultd --proxy-max-per-uid`), so that one caller cannot
    /// hold every upstream connection: the proxy route admits a request here before sending anything upstream.
    public let proxyAdmission: ProxyAdmission
    let logger: Logger
    let policy: @Sendable (Provider) -> RefreshPolicy
    let entries: Locked<[String: Entry]>
    /// Retry rules of the revoker.
    let revocationPolicy: RevocationPolicy
    /// Counters for `/metrics` (see ``BrokerMetrics`` for where each is counted).
    let metrics: BrokerMetrics
    /// Set when the revoker has work to look for (a withdrawing change, a token that must not be served); the
    /// revoker also looks at start-up, for rows left by an earlier run.
    let revokerWake = Atomic<Bool>(true)
    /// The call limiters of connections the broker holds no entry for (revocations and verifies still count). A
    /// limiter moves into an entry when it is loaded and back here when a change drops it, so a connection's window
    /// is never restarted by a change. Taken only inside the `entries` lock when both are needed (that order).
    let idleLimiters: Locked<[String: CallLimiter]>
    /// Where the broker's time comes from: `run()`'s refresh loop and revoker, back-off, limits and the cached path.
    let clock: any BrokerClock
    /// Numbers entries, so that a call ends only in the entry that started it.
    let generations = Atomic<UInt64>(0)
    /// Rows whose revocation is under way.
    let revoking: Locked<Set<Int64>>
    /// The sequence number of the last change of `vault.changes` folded into `entries` (changed only under the
    /// `entries` lock).
    let appliedChanges: Atomic<UInt64>
    /// Rules' `rate_per_minute` and the recruiting API's connection-wide limit (``Budgets``).
    let budgets = Budgets()
    /// `token.issued` and `proxy.refused`, written by `run()` (``AccessTrail``).
    let trail = AccessTrail()
    /// Awaited by a token call (or a verify) between its exchange (the token recorded) and its end in the entry: nil
    /// except in tests, which stop a call there to commit a change in that window (``setCallEndingHook(_:)``).
    let callEnding = Locked<(@Sendable () async -> Void)?>(nil)

    /// What the broker knows of one connection. Lives in `entries` and is read and changed only under its lock.
    ///
    /// A class, not a struct: the cached token path reads an entry on every request, and reading a struct out of a
    /// dictionary copies all of it (a dozen reference counts); a reference costs one. Not `Sendable`, so the compiler
    /// refuses any path that would take an entry out of the lock.
    /// A caller waiting for the upstream call under way.
    typealias Waiter = CheckedContinuation<Void, Never>

    final class Entry {
        var snapshot: ConnectionSnapshot
        /// The grants compiled when the entry was loaded (group names resolved to gids, patterns parsed): matching a
        /// caller is then a few comparisons.
        let policy: GrantPolicy
        /// Cached answers per rule, indexed by ``MatchedRule/index`` (series created when the entry was loaded).
        let ruleCounters: [BrokerMetrics.RuleCounter]
        /// The connection's tokens, one per scope it hands out (DESIGN §10: cached per revision and scope): slot 0
        /// the token of the connection's own `scope` setting, then one per distinct scope of its rules.
        let slots: [TokenSlot]
        /// The slot each rule's callers are served from, indexed by ``MatchedRule/index``: an array read, so
        /// choosing the token costs no hashing and no allocation.
        let slotOfRule: [Int]
        /// The connection's Personio call window: every token call of every slot, verifies, revocations. It outlives
        /// an entry dropped by a change (``TokenBroker/idleLimiters``).
        var limiter: CallLimiter
        /// The refresh and limit rules of the connection's provider.
        let refreshPolicy: RefreshPolicy
        /// Unique among the broker's entries: the call an entry starts ends in that entry or nowhere.
        let generation: UInt64

        init(
            snapshot: ConnectionSnapshot,
            policy: GrantPolicy,
            ruleCounters: [BrokerMetrics.RuleCounter],
            refreshPolicy: RefreshPolicy,
            limiter: CallLimiter,
            generation: UInt64
        ) {
            self.snapshot = snapshot
            self.policy = policy
            self.ruleCounters = ruleCounters
            let layout = TokenBroker.slotLayout(policy, snapshot: snapshot)
            self.slots = layout.scopes.map { TokenSlot(scope: $0, state: TokenState(policy: refreshPolicy)) }
            self.slotOfRule = layout.slotOfRule
            self.refreshPolicy = refreshPolicy
            self.limiter = limiter
            self.generation = generation
        }

        /// ``TokenBroker/authorization(_:policy:caller:use:)`` for this entry. The usual grant is checked field by
        /// field: passing `snapshot` on would copy it out of the entry (a dozen reference counts), on every request.
        /// A refusal is worded by the one function that words them.
        func authorization(caller: Caller, use: TokenBroker.Use) -> TokenBroker.Authorization {
            if self.snapshot.state == .active, let rule = self.policy.firstMatch(caller),
                use == .proxy || (self.snapshot.provider.isTokenExportable && rule.tokenAllowed)
            {
                return .granted(rule)
            }
            return TokenBroker.authorization(self.snapshot, policy: self.policy, caller: caller, use: use)
        }

        /// The slot `rule` (matched in this entry's ``policy``) is served from.
        @inline(__always)
        func slot(for rule: MatchedRule) -> TokenSlot {
            self.slots[self.slotOfRule[rule.index]]
        }

        /// ``TokenBroker/cachedResponse(_:for:minTTL:at:)`` for this entry, with the rule that matched and, the
        /// first time the caller's identity receives this token, the token (to record it).
        func fastAnswer(
            caller: Caller,
            minTTL: Int,
            at now: ContinuousClock.Instant
        ) -> (answer: FastAnswer?, rule: MatchedRule?, firstIssue: CachedToken?) {
            let rule: MatchedRule
            switch self.authorization(caller: caller, use: .token) {
            case .granted(let granted): rule = granted
            case .refused(let error, let rule): return (.refused(error), rule, nil)
            }
            let slot = self.slot(for: rule)
            guard let prepared = slot.prepared, prepared.expiresAt - now >= .seconds(minTTL) else {
                return (nil, rule, nil)
            }
            self.ruleCounters[rule.index].cachedAnswer()
            return (.token(prepared), rule, slot.noteIssued(to: caller) ? slot.token : nil)
        }
    }

    /// One token of a connection: the one requested with one scope, its call under way and back-off, and what is
    /// built once per token (the prepared answer, the proxy's destination). Lives in an ``Entry``, under the
    /// `entries` lock.
    final class TokenSlot {
        /// The scope its token is requested with (nil: every scope the client has); a rule's scope normalized
        /// (words sorted, each once, single spaces), the connection's own as its setting spells it.
        let scope: String?
        /// Token, call under way (with its waiters), back-off: changed only by its own events.
        var state: TokenState<Waiter>
        var prepared: PreparedTokenResponse? {
            didSet { if self.prepared !== oldValue { self.issuedTo.removeAll(keepingCapacity: true) } }
        }
        /// The caller identities the current `prepared` token was handed to (and recorded for, `token.issued`).
        var issuedTo: [CallerIdentity] = []
        /// The proxy's destination for the token it was built for (see `cachedForwardGrant`): built once per token, and
        /// found again by the token's text and revision (the destination's header holds the text), without copying
        /// the whole token on every request.
        var proxyDestination: (accessToken: String, revision: Int64, destination: ProxyDestination)?

        init(scope: String?, state: TokenState<Waiter>) {
            self.scope = scope
            self.state = state
        }

        /// The token held, read where the state lives: `state.token` copies the whole state out of the slot first
        /// (the call's waiters and failure too, through the generic type's value witnesses), about 1,300
        /// instructions on every proxied request.
        var token: CachedToken? {
            TokenState.token(in: &self.state)
        }

        /// Remembers that `caller`'s identity receives the current token; true the first time (record it). A few
        /// comparisons per identity already served, uid first: no hashing, no allocation once the list has grown.
        func noteIssued(to caller: Caller) -> Bool {
            for identity in self.issuedTo where identity.uid == caller.uid {
                if identity.unit == caller.unit, identity.exe == caller.exe { return false }
            }
            self.issuedTo.append(CallerIdentity(caller))
            return true
        }
    }

    /// Who receives a token, for the access trail: uid, unit and executable (DESIGN §10's identity).
    struct CallerIdentity: Equatable {
        var uid: UInt32
        var unit: String?
        var exe: String?

        init(_ caller: Caller) {
            self.uid = caller.uid
            self.unit = caller.unit
            self.exe = caller.exe
        }
    }

    /// - Parameters:
    ///   - vault: where credentials come from; the broker registers for its change notifications.
    ///   - auth: the Personio client.
    ///   - proxy: forwards proxied requests; by default one sharing `auth`'s HTTP client.
    ///   - proxyTimeout: how long a proxied request may wait for Personio's response head.
    ///   - proxyLimitPerUID: proxied requests one uid may have in flight at once (see ``proxyAdmission``).
    ///   - policy: refresh and back-off rules per provider (tests shorten them).
    ///   - revocationPolicy: the revoker's retry rules (tests shorten them).
    ///   - metrics: the broker's counters; none by default.
    ///   - clock: where time comes from (tests pass a manual clock and run in virtual time).
    public init(
        vault: Vault,
        auth: PersonioAuthClient,
        proxy: PersonioProxy? = nil,
        proxyTimeout: Duration = PersonioProxy.defaultTimeout,
        proxyLimitPerUID: Int = ProxyAdmission.defaultLimitPerUID,
        logger: Logger,
        policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
        revocationPolicy: RevocationPolicy = RevocationPolicy(),
        metrics: BrokerMetrics = .disabled,
        clock: any BrokerClock = SystemBrokerClock()
    ) {
        self.vault = vault
        self.auth = auth
        self.proxyClient = proxy ?? PersonioProxy(sharing: auth, logger: logger)
        self.proxyTimeout = proxyTimeout
        self.proxyAdmission = ProxyAdmission(limitPerUID: proxyLimitPerUID)
        self.logger = logger
        self.policy = policy
        self.entries = Locked([:])
        self.revocationPolicy = revocationPolicy
        self.metrics = metrics
        self.idleLimiters = Locked([:])
        self.clock = clock
        self.revoking = Locked([])
        self.appliedChanges = Atomic(vault.changes.latest)
    }

    // MARK: - Token requests

    /// The answer to a token request when it can be given without waiting: a cached token or a refusal.
    public enum FastAnswer: Sendable {
        case token(PreparedTokenResponse)
        case refused(VaultError)
    }

    /// Answers from memory when possible; nil means "call `token(_:for:minTTL:)`".
    /// - Parameter now: The time the token must still be valid `minTTL` seconds after (the caller's clock reading,
    ///   reused for the response's `expires_in`).
    public func cachedResponse(
        _ id: String,
        for caller: Caller,
        minTTL: Int,
        at now: ContinuousClock.Instant = .now
    ) -> FastAnswer? {
        // `withEntries`' work, written out: this runs for every cached token, and the generic helper's closures and
        // `Result` cost it a third of its instructions (the answer tuple copied in and out of each).
        var answer: FastAnswer?
        var rule: MatchedRule?
        var firstIssue: CachedToken?
        let released = self.entries.withLock { entries -> [Waiter] in
            let released = self.catchUp(&entries)
            if let entry = entries[id] {
                (answer, rule, firstIssue) = entry.fastAnswer(caller: caller, minTTL: minTTL, at: now)
            }
            return released
        }
        for waiter in released { waiter.resume() }
        switch answer {
        case .token:
            self.metrics.cacheHit()
            if let firstIssue { self.trail.issued(connection: id, caller: caller, rule: rule, token: firstIssue) }
        case .refused(let error):
            self.refusedByPolicy(id, caller: caller, error: error, request: "token", rule: rule)
        case nil: break
        }
        return answer
    }

    /// Records a refusal by policy (`not_allowed`, `rate_limited` of a budget, `token_not_exportable`) in the
    /// access trail, coalesced (``AccessTrail``); other refusals are not policy and are not recorded.
    func refusedByPolicy(_ id: String, caller: Caller, error: VaultError, request: String, rule: MatchedRule?) {
        switch error.code {
        case .notAllowed, .rateLimited, .tokenNotExportable:
            self.trail.refused(
                connection: id,
                caller: caller,
                error: error,
                request: request,
                rule: rule,
                at: self.clock.now
            )
        default: break
        }
    }

    /// The broker's clock reading, for the `at:` of ``cachedResponse(_:for:minTTL:at:)``.
    public var now: ContinuousClock.Instant { self.clock.now }

    /// A token for `caller`, fetching one from Personio when none is cached (or it expires within `minTTL`).
    /// - Throws: `VaultError`: `forbidden` (unknown or not granted alike), `connection_disabled`,
    ///   `connection_needs_reset`, `token_not_exportable`, `upstream_rejected`, `upstream_unavailable`.
    public func token(_ id: String, for caller: Caller, minTTL: Int) async throws -> PreparedTokenResponse {
        do {
            return try await self.servedToken(id, for: caller, minTTL: minTTL, use: .token).prepared
        } catch let error as VaultError {
            self.refusedByPolicy(id, caller: caller, error: error, request: "token", rule: nil)
            throw error
        }
    }

    /// The token `token(_:for:minTTL:)` answers with, and the token itself (for the proxy route, `use: .proxy`: the
    /// rule's `token: false` does not apply, the proxied request was charged to the budget already, and the token
    /// is not handed to the caller).
    func servedToken(
        _ id: String,
        for caller: Caller,
        minTTL: Int,
        use: Use
    ) async throws -> (token: CachedToken, prepared: PreparedTokenResponse) {
        let minTTL = Duration.seconds(max(0, minTTL))
        try await self.loadEntry(id)
        // Whether this request waited for an exchange with Personio: a cache miss, counted once when it is served.
        var waited = false
        var charged = use == .proxy
        while true {
            let now = self.clock.now
            let mayCharge = !charged
            let (action, call, rule, spent) = try self.withEntries {
                entries,
                _ throws(VaultError) -> (TokenState<Waiter>.RequestAction, SlotCall, MatchedRule, Bool) in
                guard let entry = entries[id] else { throw Self.forbidden }
                let rule = try entry.authorization(caller: caller, use: use).get()
                // The rule's scope chooses the token (slot 0: the connection's own scope).
                let index = entry.slotOfRule[rule.index]
                let slot = entry.slots[index]
                // A token miss costs Personio an exchange (or a wait for one): it spends from the rule's budget,
                // checked before the state machine is asked (which may count this request as the one making the call).
                var spent = false
                if mayCharge, rule.ratePerMinute != nil, slot.prepared.map({ $0.expiresAt - now < minTTL }) ?? true {
                    spent = true
                    if let refusal = self.budgets.spend(
                        connection: id,
                        uid: caller.uid,
                        rate: rule.ratePerMinute,
                        recruiting: false,
                        at: now
                    ) {
                        throw refusal
                    }
                }
                let action = slot.state.tokenRequested(now: now, minTTL: minTTL, limiter: &entry.limiter)
                return (action, SlotCall(generation: entry.generation, slot: index, scope: slot.scope), rule, spent)
            }
            if spent { charged = true }
            switch action {
            case .serve(let token):
                let cached = !waited
                let served = self.withEntries { entries, _ -> (PreparedTokenResponse, Bool)? in
                    // Another entry (after a change) has slots of its own: ask it again.
                    guard let entry = entries[id], entry.generation == call.generation else { return nil }
                    let slot = entry.slots[call.slot]
                    let prepared =
                        slot.prepared
                        ?? PreparedTokenResponse(connection: id, token: token, settings: entry.snapshot.settings)
                    guard use == .token else { return (prepared, false) }
                    if cached { entry.ruleCounters[rule.index].cachedAnswer() }
                    // A response not kept by the slot has no list of identities: record it rather than miss one.
                    return (prepared, slot.prepared === prepared ? slot.noteIssued(to: caller) : true)
                }
                if let (prepared, firstIssue) = served {
                    if waited { self.metrics.cacheMiss() } else { self.metrics.cacheHit() }
                    if firstIssue { self.trail.issued(connection: id, caller: caller, rule: rule, token: token) }
                    return (token, prepared)
                }
            case .wait:
                waited = true
                await self.waitForCall(id, call)
            case .fail(let retryAfter, let lastError):
                throw VaultError(
                    .upstreamUnavailable,
                    "Personio is not answering token requests for '\(id)'" + (lastError.map { ": \($0)" } ?? ""),
                    retryAfter: retryAfter.retryAfterSeconds
                )
            case .startCall:
                waited = true
                try await self.fetch(id, call)
            }
        }
    }

    /// The connections `caller` may use, as metadata.
    public func connections(for caller: Caller) async throws -> [AppConnectionView] {
        try await self.vault.snapshots().compactMap { snapshot in
            // Only the rule this caller matched is shown: what it may do, nothing of the rules of others.
            guard let rule = Self.policy(snapshot.grants).firstMatch(caller) else { return nil }
            return AppConnectionView(
                id: snapshot.id,
                provider: snapshot.provider,
                state: snapshot.state,
                apiBaseURL: snapshot.settings.effectiveAPIBaseURL,
                scope: snapshot.settings.scope,
                tokenExportable: snapshot.provider.isTokenExportable && rule.tokenAllowed,
                rule: AppRuleView(
                    scope: rule.scope,
                    proxy: rule.proxyPatterns,
                    token: rule.tokenAllowed,
                    ratePerMinute: rule.ratePerMinute
                )
            )
        }
    }

    // MARK: - Authorization

    static let forbidden = VaultError(.forbidden, "no such connection, or it is not granted to you")

    /// What a request wants of a connection: a token handed out, or a proxied request.
    enum Use: Sendable {
        case token
        case proxy
    }

    /// Whether `caller` may have a token of the connection `snapshot` describes now (or, for `.proxy`, use it
    /// through the proxy), and the rule that lets it; `policy` is its compiled grants.
    enum Authorization: Sendable {
        case granted(MatchedRule)
        /// With the rule that matched, if one did (a `forbidden` has none).
        case refused(VaultError, MatchedRule?)

        func get() throws(VaultError) -> MatchedRule {
            switch self {
            case .granted(let rule): return rule
            case .refused(let error, _): throw error
            }
        }
    }

    /// Decides ``Authorization``: the first matching rule (DESIGN §10), then the connection's state, then, for
    /// tokens, whether the provider and the rule let the token out.
    static func authorization(
        _ snapshot: ConnectionSnapshot,
        policy: GrantPolicy,
        caller: Caller,
        use: Use
    ) -> Authorization {
        guard let rule = policy.firstMatch(caller) else { return .refused(Self.forbidden, nil) }
        switch snapshot.state {
        case .disabled:
            return .refused(VaultError(.connectionDisabled, "connection '\(snapshot.id)' is disabled"), rule)
        case .needsReset:
            return .refused(
                VaultError(
                    .connectionNeedsReset,
                    "Personio rejected the credentials of '\(snapshot.id)'; an admin must reset them"
                ),
                rule
            )
        case .active: break
        }
        guard use == .token else { return .granted(rule) }
        guard snapshot.provider.isTokenExportable else {
            return .refused(
                VaultError(
                    .tokenNotExportable,
                    "'\(snapshot.id)' is a recruiting connection: its key is never handed out; use /v1/connections/\(snapshot.id)/proxy/…"
                ),
                rule
            )
        }
        guard rule.tokenAllowed else {
            return .refused(
                VaultError(
                    .tokenNotExportable,
                    "the rule that grants you '\(snapshot.id)' is proxy-only: its token is never handed out; use /v1/connections/\(snapshot.id)/proxy/…"
                ),
                rule
            )
        }
        return .granted(rule)
    }

    /// The grants of a connection compiled for matching, group names resolved now.
    static func policy(_ grants: Grants) -> GrantPolicy {
        GrantPolicy(grants, rules: Self.rules(of: grants), gid: GroupDirectory.gid(named:))
    }

    /// The rules of `grants` beyond `uids`, `groups` and `units`.
    static func rules(of grants: Grants) -> [GrantRule] {
        grants.rules
    }

    // MARK: - Upstream calls

    /// Runs `body` under the `entries` lock after folding in the vault's changes, then resumes (outside the lock)
    /// every waiter the changes or `body` released: `body` appends them to its second argument.
    @inline(__always)
    func withEntries<Result: Sendable, Failure: Error>(
        _ body: @Sendable (inout [String: Entry], inout [Waiter]) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let (result, released) = self.entries.withLock { entries -> (Swift.Result<Result, Failure>, [Waiter]) in
            var released = self.catchUp(&entries)
            let result = Swift.Result { () throws(Failure) -> Result in try body(&entries, &released) }
            return (result, released)
        }
        for waiter in released { waiter.resume() }
        return try result.get()
    }

    /// Loads the connection's metadata into the cache unless it is there.
    func loadEntry(_ id: String) async throws {
        while true {
            let loadedAfter = self.withEntries { entries, _ -> UInt64? in
                entries[id] == nil ? self.appliedChanges.load(ordering: .relaxed) : nil
            }
            guard let loadedAfter else { return }
            guard let snapshot = try await self.vault.snapshot(id) else { throw Self.forbidden }
            let grantPolicy = Self.policy(snapshot.grants)
            let counters = grantPolicy.allRules.map { self.metrics.ruleCounter(connection: id, rule: $0.label) }
            let policy = self.policy(snapshot.provider)
            let stored = self.withEntries { entries, _ -> Bool in
                // A change of this connection committed while the snapshot was read may already have been folded in
                // (by another request): the snapshot may predate it, so read it again.
                guard !self.changed(id, after: loadedAfter) else { return false }
                // A concurrent load may have won; keep its state (and any token) rather than replace it.
                if entries[id] == nil {
                    let limiter = self.idleLimiters.withLock { $0.removeValue(forKey: id) } ?? CallLimiter()
                    entries[id] = Entry(
                        snapshot: snapshot,
                        policy: grantPolicy,
                        ruleCounters: counters,
                        refreshPolicy: policy,
                        limiter: limiter,
                        generation: self.generations.add(1, ordering: .relaxed).newValue
                    )
                }
                return true
            }
            if stored { return }
        }
    }

    /// One slot's token call: the entry that starts it, the slot, and the scope its token is requested with.
    struct SlotCall: Sendable {
        var generation: UInt64
        var slot: Int
        var scope: String?
    }

    /// Waits for the call under way in `call`'s slot (returns at once when it has ended, or its entry is gone).
    func waitForCall(_ id: String, _ call: SlotCall) async {
        await withCheckedContinuation { (continuation: Waiter) in
            let waiting = self.withEntries { entries, _ -> Bool in
                guard let entry = entries[id], entry.generation == call.generation else { return false }
                return entry.slots[call.slot].state.waiterArrived(continuation)
            }
            if !waiting { continuation.resume() }
        }
    }

    /// How a token call ended, for the entry that started it.
    enum CallOutcome: Sendable {
        case token(CachedToken, PreparedTokenResponse)
        /// Personio failed the exchange.
        case personioFailed(PersonioAuthError)
        /// No token to serve; `backOff` says whether the failure counts for the back-off.
        case refused(VaultError, backOff: Bool)
    }

    /// Makes the one upstream call `call` (a slot of entry `call.generation` of `id`) started, and ends it there:
    /// the state machine releases every waiter either way.
    func fetch(_ id: String, _ call: SlotCall) async throws {
        let outcome: CallOutcome
        var snapshot: ConnectionSnapshot?
        // Read before the token is recorded: a withdrawal published after it may have moved the token's row to
        // pending after the record (see the dropped entry below).
        let changesBefore = self.vault.changes.latest
        do {
            let credentials = try await self.vault.credentials(id)
            snapshot = credentials.snapshot
            outcome = await self.exchange(credentials, scope: call.scope)
        } catch let error as VaultError {
            outcome = .refused(error, backOff: true)
        } catch {
            outcome = .refused(VaultError(.internalError, "token request failed", cause: error), backOff: false)
        }
        await self.awaitCallEndingHook()
        let now = self.clock.now
        let (stored, retryAfter) = self.withEntries { entries, released -> (Bool, Duration) in
            guard let entry = entries[id], entry.generation == call.generation else {
                // The entry that made the call was dropped by a change: a token of the same revision may still be
                // kept by its successor's slot of the same scope (unless that one has a call of its own under way),
                // but not after a withdrawal: one that committed after the token was recorded moved its row to
                // pending (a disable and an enable since, and the successor would hand out a token about to be
                // revoked, from its cache, until the token's refresh point hours later).
                if case .token(let token, let prepared) = outcome, let entry = entries[id],
                    entry.snapshot.revision == token.revision, !self.withdrew(id, after: changesBefore),
                    let slot = entry.slots.first(where: { $0.scope == call.scope }), slot.state.tokenObtained(token)
                {
                    slot.prepared = prepared
                    return (true, .zero)
                }
                return (false, .zero)
            }
            let slot = entry.slots[call.slot]
            switch outcome {
            case .token(let token, let prepared):
                released += slot.state.callSucceeded(token)
                slot.prepared = prepared
                return (true, .zero)
            case .personioFailed(let error):
                let failed = slot.state.callFailed(error: error.message, retryAfter: error.retryAfter, now: now)
                released += failed.waiters
                return (false, failed.retryAfter)
            case .refused(let error, true):
                let failed = slot.state.callFailed(error: error.message, retryAfter: nil, now: now)
                released += failed.waiters
                return (false, failed.retryAfter)
            case .refused(_, false):
                released += slot.state.callAbandoned()
                return (false, .zero)
            }
        }
        switch outcome {
        case .token(let token, _):
            self.logger.debug(
                "token obtained",
                metadata: [
                    "connection.id": "\(id)", "token.expires_in": "\(token.remaining(at: now).components.seconds)",
                    "token.cached": "\(stored)", "token.scope": "\(token.scope ?? "-")",
                ]
            )
            guard stored else {
                throw VaultError(
                    .upstreamUnavailable,
                    "the connection changed during the token request; retry",
                    retryAfter: 1
                )
            }
        case .personioFailed(let error):
            guard let snapshot else { return }
            throw await self.failed(snapshot, error: error, retryAfter: retryAfter)
        case .refused(let error, _):
            throw error
        }
    }

    /// Exchanges credentials with Personio for a token of `scope` (nil: every scope the client has) and records the
    /// token in the vault (not yet in the cache).
    func exchange(_ credentials: ConnectionCredentials, scope: String?) async -> CallOutcome {
        let snapshot = credentials.snapshot
        let policy = self.policy(snapshot.provider)
        do {
            let obtained = try await self.obtain(credentials, policy: policy, scope: scope)
            if let refusal = obtained.outcome.refusal { return .refused(refusal, backOff: obtained.outcome.backsOff) }
            let token = Self.cachedToken(
                obtained.issued,
                revision: snapshot.revision,
                policy: policy,
                obtainedAt: obtained.startedAt,
                requestedScope: scope
            )
            let prepared = PreparedTokenResponse(connection: snapshot.id, token: token, settings: snapshot.settings)
            return .token(token, prepared)
        } catch let error as PersonioAuthError {
            return .personioFailed(error)
        } catch {
            return .refused(VaultError(.internalError, "token request failed", cause: error), backOff: false)
        }
    }

    /// Records a failed exchange in the vault and words it for the caller; `retryAfter` is the back-off it caused.
    func failed(
        _ snapshot: ConnectionSnapshot,
        error: PersonioAuthError,
        retryAfter: Duration
    ) async -> VaultError {
        let id = snapshot.id
        let text = error.message
        self.logger.warning("Personio token request failed", metadata: ["connection.id": "\(id)", "error": "\(text)"])
        switch error.code {
        case .credentialsRejected:
            do {
                try await self.vault.markNeedsReset(id, revision: snapshot.revision, error: text)
            } catch {
                self.logger.error(
                    "could not record needs_reset",
                    metadata: ["connection.id": "\(id)", "error": "\(error)"]
                )
            }
            return VaultError(.upstreamRejected, "Personio rejected the credentials of '\(id)': \(text)")
        case .invalidRequest where error.personioError == "invalid_scope":
            // Not the credentials: the client at Personio lacks a scope the connection or the caller's rule asks
            // for. The connection stays active; its other scopes keep working.
            try? await self.vault.recordLastError(id, revision: snapshot.revision, error: text)
            return VaultError(
                .upstreamRejected,
                "Personio refused the scope asked for '\(id)' (invalid_scope): \(text); give the API credentials "
                    + "that scope at Personio, or narrow the connection's or the rule's scope"
            )
        case .unavailable:
            try? await self.vault.recordLastError(id, revision: snapshot.revision, error: text)
            return VaultError(
                .upstreamUnavailable,
                "Personio is unavailable: \(text)",
                retryAfter: retryAfter.retryAfterSeconds
            )
        default:
            try? await self.vault.recordLastError(id, revision: snapshot.revision, error: text)
            return VaultError(.upstreamRejected, "Personio refused the token request for '\(id)': \(text)")
        }
    }

    /// The credentials of an exchange for a token of `scope` (nil: every scope the client has; v1 has no scopes).
    static func personioCredentials(
        _ credentials: ConnectionCredentials,
        scope: String?
    ) throws -> PersonioCredentials {
        let snapshot = credentials.snapshot
        guard let clientID = credentials.secrets[.clientID], let clientSecret = credentials.secrets[.clientSecret]
        else {
            throw VaultError(.tokenNotExportable, "connection '\(snapshot.id)' has no client credentials")
        }
        return PersonioCredentials(
            api: snapshot.provider == .personioV1 ? .v1 : .v2,
            clientID: clientID,
            clientSecret: clientSecret,
            baseURL: snapshot.settings.effectiveAPIBaseURL,
            appID: snapshot.settings.appID,
            partnerID: snapshot.settings.partnerID,
            scope: scope
        )
    }

    /// The token as cached: its lifetime counted on the broker's clock from `obtainedAt`, the reading taken just
    /// before the request was sent (so it errs early by the round trip). Its scope is what Personio says it granted,
    /// else `requestedScope` (what it was asked for).
    static func cachedToken(
        _ issued: IssuedToken,
        revision: Int64,
        policy: RefreshPolicy,
        obtainedAt: ContinuousClock.Instant,
        requestedScope: String?
    ) -> CachedToken {
        let lifetime = Duration.seconds(max(1, issued.expiresIn))
        let jitterRange = policy.jitterFraction * Double(max(1, issued.expiresIn))
        let jitter = jitterRange > 0 ? Double.random(in: -jitterRange...jitterRange) : 0
        let refreshAfter = max(0.5, policy.refreshFraction * Double(issued.expiresIn) + jitter)
        return CachedToken(
            accessToken: issued.accessToken,
            tokenType: issued.tokenType,
            scope: issued.scope ?? requestedScope,
            revision: revision,
            obtainedAt: obtainedAt,
            expiresAt: obtainedAt + lifetime,
            expiresAtWall: issued.expiresAtEpochSeconds,
            refreshAt: obtainedAt + .milliseconds(Int64(refreshAfter * 1000))
        )
    }

    // MARK: - Call accounting

    /// Counts one upstream call other than a token call of the state machine (a revocation, a verify, a repeated
    /// exchange) against the connection's Personio call limit. Returns nil when it may start (it is counted), else
    /// how long until the limit admits one.
    func reserveCall(_ id: String, provider: Provider, verify: Bool = false) -> Duration? {
        let now = self.clock.now
        return self.withEntries { entries, _ -> Duration? in
            if let entry = entries[id] {
                // A verify obtains the token of the connection's own scope (slot 0).
                if verify { return entry.slots[0].state.verifyRequested(now: now, limiter: &entry.limiter) }
                return entry.limiter.reserve(at: now, policy: entry.refreshPolicy)
                    ? nil : entry.limiter.resetsIn(at: now, policy: entry.refreshPolicy)
            }
            // No entry: the connection's limiter waits here, and moves into an entry when one is loaded.
            let policy = self.policy(provider)
            return self.idleLimiters.withLock { limiters -> Duration? in
                var limiter = limiters.removeValue(forKey: id) ?? CallLimiter()
                defer { if !limiter.isEmpty(at: now, policy: policy) { limiters[id] = limiter } }
                return limiter.reserve(at: now, policy: policy) ? nil : limiter.resetsIn(at: now, policy: policy)
            }
        }
    }

    /// Counts one revocation call against the connection's Personio call limit, or says the budget is spent.
    func reserveRevocationCall(_ id: String, provider: Provider) -> Bool {
        self.reserveCall(id, provider: provider) == nil
    }

    // MARK: - Changes

    /// Folds the vault's changes published since the last call into `entries` (call with the `entries` lock held):
    /// drops what the broker knows of each changed connection and wakes the revoker when a change withdrew tokens.
    /// One atomic load when nothing changed, so the cached token path calls it on every request: a change the vault
    /// acknowledged is never answered from a stale entry.
    /// - Returns: The waiters of the calls the dropped entries had under way, to resume once the lock is released.
    func catchUp(_ entries: inout [String: Entry]) -> [Waiter] {
        let applied = self.appliedChanges.load(ordering: .relaxed)
        guard self.vault.changes.latest != applied else { return [] }
        var released: [Waiter] = []
        switch self.vault.changes.changes(after: applied) {
        case .changes(let published):
            for item in published { self.fold(item.change, into: &entries, released: &released) }
            if let last = published.last { self.appliedChanges.store(last.sequence, ordering: .relaxed) }
        case .gap(let latest):
            // Fell behind what the feed keeps: forget everything, and let the revoker look for withdrawn tokens.
            for id in Array(entries.keys) {
                self.fold(ConnectionChange(id: id, kind: .edited, revision: nil), into: &entries, released: &released)
            }
            self.revokerWake.store(true, ordering: .releasing)
            self.appliedChanges.store(latest, ordering: .relaxed)
        }
        return released
    }

    /// Whether a change that withdrew `id`'s tokens was published after sequence number `sequence` (or the feed no
    /// longer knows).
    func withdrew(_ id: String, after sequence: UInt64) -> Bool {
        switch self.vault.changes.changes(after: sequence) {
        case .changes(let published): published.contains { $0.change.id == id && $0.change.kind.withdrawsTokens }
        case .gap: true
        }
    }

    /// Sets the hook a token call awaits between its exchange and its end in the entry (``callEnding``); for tests.
    func setCallEndingHook(_ hook: (@Sendable () async -> Void)?) {
        self.callEnding.withLock { $0 = hook }
    }

    /// Awaits the hook set by ``setCallEndingHook(_:)``, if any.
    func awaitCallEndingHook() async {
        if let hook = self.callEnding.withLock({ $0 }) { await hook() }
    }

    /// Whether a change of `id` was published after sequence number `sequence` (or the feed no longer knows).
    func changed(_ id: String, after sequence: UInt64) -> Bool {
        switch self.vault.changes.changes(after: sequence) {
        case .changes(let published): published.contains { $0.change.id == id }
        case .gap: true
        }
    }

    private func fold(_ change: ConnectionChange, into entries: inout [String: Entry], released: inout [Waiter]) {
        if let entry = entries.removeValue(forKey: change.id) {
            for slot in entry.slots { released += slot.state.invalidated() }
            // The calls already made still count toward the limit, whatever the change.
            let limiter = entry.limiter
            if !limiter.isEmpty(at: self.clock.now, policy: entry.refreshPolicy) {
                self.idleLimiters.withLock { $0[change.id] = limiter }
            }
        }
        if change.kind.withdrawsTokens { self.revokerWake.store(true, ordering: .releasing) }
    }

    /// Reads the vault's change stream until cancelled, so that withdrawn tokens are revoked and stale entries
    /// dropped as soon as a change commits, not only at the next request.
    func followChanges() async {
        for await _ in self.vault.changes.updates() {
            self.withEntries { _, _ in }
        }
    }

    // MARK: - Background work

    /// How often the refresh loop looks for tokens past their refresh point.
    static let refreshTick = Duration.milliseconds(500)

    /// Revokes withdrawn tokens and refreshes tokens ahead of expiry until cancelled (run it in the service group).
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.followChanges() }
            group.addTask { await self.runRevoker() }
            group.addTask { await self.trail.run(vault: self.vault, logger: self.logger) }
            group.addTask {
                while !Task.isCancelled {
                    try? await self.clock.sleep(until: self.clock.now + Self.refreshTick)
                    await self.refreshDue()
                    let now = self.clock.now
                    self.trail.flush(at: now)
                    self.budgets.prune(at: now)
                }
            }
        }
    }

    /// Refreshes every token past its refresh point, one upstream call per connection and scope (within the
    /// connection's call limit).
    func refreshDue() async {
        let now = self.clock.now
        let due = self.withEntries { entries, _ -> [(id: String, call: SlotCall)] in
            var due: [(id: String, call: SlotCall)] = []
            for (id, entry) in entries {
                for (index, slot) in entry.slots.enumerated()
                where slot.state.refreshDue(now: now, limiter: &entry.limiter) {
                    due.append((id, SlotCall(generation: entry.generation, slot: index, scope: slot.scope)))
                }
            }
            return due
        }
        await withDiscardingTaskGroup { group in
            for (id, call) in due {
                group.addTask { try? await self.fetch(id, call) }
            }
        }
    }
}
