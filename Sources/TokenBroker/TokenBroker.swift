import Logging
import PersonioClient
import Synchronization
import VaultAPI
import VaultCore
import VaultCrypto

/// Hands out short-lived Personio access tokens for connections, caching them in memory per connection revision.
///
/// - Cached tokens are served synchronously (`cachedResponse`), without touching the database or the network.
/// - A cold connection makes exactly one upstream call however many callers ask at once (single flight).
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
    let logger: Logger
    let policy: @Sendable (Provider) -> RefreshPolicy
    let entries: Mutex<[String: Entry]>
    /// Retry rules of the revoker.
    let revocationPolicy: RevocationPolicy
    /// Set when the revoker has work to look for (a withdrawing change, a token that must not be served); the
    /// revoker also looks at start-up, for rows left by an earlier run.
    let revokerWake = Atomic<Bool>(true)
    /// Revocation calls per connection while the broker holds no entry for it (with an entry they are counted in its
    /// `TokenState`, against the same per-connection limit as token calls).
    let revocationCalls: Mutex<[String: [ContinuousClock.Instant]]>
    /// Rows whose revocation is under way.
    let revoking: Mutex<Set<Int64>>
    /// The sequence number of the last change of `vault.changes` folded into `entries` (changed only under the
    /// `entries` lock).
    let appliedChanges: Atomic<UInt64>

    /// What the broker knows of one connection. Lives in `entries` and is read and changed only under its lock.
    ///
    /// A class, not a struct: the cached token path reads an entry on every request, and reading a struct out of a
    /// dictionary copies all of it (a dozen reference counts); a reference costs one. Not `Sendable`, so the compiler
    /// refuses any path that would take an entry out of the lock.
    final class Entry {
        var snapshot: ConnectionSnapshot
        /// gids of the groups the grants name, resolved when the entry was loaded.
        var grantedGIDs: Set<UInt32>
        var state = TokenState()
        var prepared: PreparedTokenResponse?
        /// Callers waiting for the upstream call under way.
        var waiters: [CheckedContinuation<Void, Never>] = []

        init(snapshot: ConnectionSnapshot, grantedGIDs: Set<UInt32>) {
            self.snapshot = snapshot
            self.grantedGIDs = grantedGIDs
        }

        /// ``TokenBroker/cachedResponse(_:for:minTTL:at:)`` for this entry.
        func fastAnswer(caller: Caller, minTTL: Int, at now: ContinuousClock.Instant) -> FastAnswer? {
            // The usual case is checked field by field, without copying the snapshot; a refusal is built by the one
            // function that words them.
            guard self.snapshot.state == .active, self.snapshot.provider.isTokenExportable,
                TokenBroker.isGranted(self.snapshot.grants, gids: self.grantedGIDs, caller: caller)
            else {
                return TokenBroker.refusal(self.snapshot, grantedGIDs: self.grantedGIDs, caller: caller).map {
                    .refused($0)
                }
            }
            guard let prepared = self.prepared, prepared.expiresAt - now >= .seconds(minTTL) else { return nil }
            return .token(prepared)
        }
    }

    /// - Parameters:
    ///   - vault: where credentials come from; the broker registers for its change notifications.
    ///   - auth: the Personio client.
    ///   - proxy: forwards proxied requests; by default one sharing `auth`'s HTTP client.
    ///   - proxyTimeout: how long a proxied request may wait for Personio's response head.
    ///   - policy: refresh and back-off rules per provider (tests shorten them).
    ///   - revocationPolicy: the revoker's retry rules (tests shorten them).
    public init(
        vault: Vault,
        auth: PersonioAuthClient,
        proxy: PersonioProxy? = nil,
        proxyTimeout: Duration = PersonioProxy.defaultTimeout,
        logger: Logger,
        policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
        revocationPolicy: RevocationPolicy = RevocationPolicy()
    ) {
        self.vault = vault
        self.auth = auth
        self.proxyClient = proxy ?? PersonioProxy(sharing: auth, logger: logger)
        self.proxyTimeout = proxyTimeout
        self.logger = logger
        self.policy = policy
        self.entries = Mutex([:])
        self.revocationPolicy = revocationPolicy
        self.revocationCalls = Mutex([:])
        self.revoking = Mutex([])
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
        self.entries.withLock { entries -> FastAnswer? in
            self.catchUp(&entries)
            return entries[id]?.fastAnswer(caller: caller, minTTL: minTTL, at: now)
        }
    }

    /// A token for `caller`, fetching one from Personio when none is cached (or it expires within `minTTL`).
    /// - Throws: `VaultError`: `forbidden` (unknown or not granted alike), `connection_disabled`,
    ///   `connection_needs_reset`, `token_not_exportable`, `upstream_rejected`, `upstream_unavailable`.
    public func token(_ id: String, for caller: Caller, minTTL: Int) async throws -> PreparedTokenResponse {
        try await self.servedToken(id, for: caller, minTTL: minTTL).prepared
    }

    /// The token `token(_:for:minTTL:)` answers with, and the token itself (for the proxy route).
    func servedToken(
        _ id: String,
        for caller: Caller,
        minTTL: Int
    ) async throws -> (token: CachedToken, prepared: PreparedTokenResponse) {
        let minTTL = Duration.seconds(max(0, minTTL))
        try await self.loadEntry(id)
        while true {
            let decision = try self.entries.withLock { entries throws(VaultError) -> TokenState.Decision in
                self.catchUp(&entries)
                guard let entry = entries[id] else { throw Self.forbidden }
                if let refusal = Self.refusal(entry.snapshot, grantedGIDs: entry.grantedGIDs, caller: caller) {
                    throw refusal
                }
                return entry.state.decide(now: .now, minTTL: minTTL, policy: self.policy(entry.snapshot.provider))
            }
            switch decision {
            case .serve(let token):
                let prepared = self.entries.withLock { entries -> PreparedTokenResponse? in
                    guard let entry = entries[id] else { return nil }
                    return entry.prepared
                        ?? PreparedTokenResponse(connection: id, token: token, settings: entry.snapshot.settings)
                }
                if let prepared { return (token, prepared) }
            case .wait:
                await self.waitForCall(id)
            case .unavailable(let retryAfter, let lastError):
                throw VaultError(
                    .upstreamUnavailable,
                    "Personio is not answering token requests for '\(id)'" + (lastError.map { ": \($0)" } ?? ""),
                    retryAfter: max(
                        1,
                        Int(retryAfter.components.seconds) + (retryAfter.components.attoseconds > 0 ? 1 : 0)
                    )
                )
            case .fetch:
                try await self.fetch(id)
            }
        }
    }

    /// The connections `caller` may use, as metadata.
    public func connections(for caller: Caller) async throws -> [AppConnectionView] {
        try await self.vault.snapshots().compactMap { snapshot in
            let gids = Set(snapshot.grants.groups.compactMap(GroupDirectory.gid(named:)))
            guard Self.isGranted(snapshot.grants, gids: gids, caller: caller) else { return nil }
            return AppConnectionView(
                id: snapshot.id,
                provider: snapshot.provider,
                state: snapshot.state,
                apiBaseURL: snapshot.settings.effectiveAPIBaseURL,
                scope: snapshot.settings.scope,
                tokenExportable: snapshot.provider.isTokenExportable
            )
        }
    }

    // MARK: - Authorization

    static let forbidden = VaultError(.forbidden, "no such connection, or it is not granted to you")

    /// Why `caller` may not have a token of the connection `snapshot` describes now (or, with `allowRecruiting`, use
    /// it through the proxy), or nil. `grantedGIDs` are the gids of the groups its grants name.
    static func refusal(
        _ snapshot: ConnectionSnapshot,
        grantedGIDs: Set<UInt32>,
        caller: Caller,
        allowRecruiting: Bool = false
    ) -> VaultError? {
        guard Self.isGranted(snapshot.grants, gids: grantedGIDs, caller: caller) else {
            return Self.forbidden
        }
        switch snapshot.state {
        case .disabled: return VaultError(.connectionDisabled, "connection '\(snapshot.id)' is disabled")
        case .needsReset:
            return VaultError(
                .connectionNeedsReset,
                "Personio rejected the credentials of '\(snapshot.id)'; an admin must reset them"
            )
        case .active: break
        }
        guard allowRecruiting || snapshot.provider.isTokenExportable else {
            return VaultError(
                .tokenNotExportable,
                "'\(snapshot.id)' is a recruiting connection: its key is never handed out; use /v1/connections/\(snapshot.id)/proxy/…"
            )
        }
        return nil
    }

    /// A grant names the caller's uid, one of its groups (primary or supplementary), or its systemd unit.
    static func isGranted(_ grants: Grants, gids: Set<UInt32>, caller: Caller) -> Bool {
        if grants.uids.contains(caller.uid) { return true }
        if gids.contains(caller.gid) || caller.groups.contains(where: gids.contains) { return true }
        if let unit = caller.unit, grants.units.contains(unit) { return true }
        return false
    }

    // MARK: - Upstream calls

    /// Loads the connection's metadata into the cache unless it is there.
    func loadEntry(_ id: String) async throws {
        while true {
            let loadedAfter = self.entries.withLock { entries -> UInt64? in
                self.catchUp(&entries)
                return entries[id] == nil ? self.appliedChanges.load(ordering: .relaxed) : nil
            }
            guard let loadedAfter else { return }
            guard let snapshot = try await self.vault.snapshot(id) else { throw Self.forbidden }
            let gids = Set(snapshot.grants.groups.compactMap(GroupDirectory.gid(named:)))
            let stored = self.entries.withLock { entries -> Bool in
                // A change of this connection committed while the snapshot was read may already have been folded in
                // (by another request): the snapshot may predate it, so read it again.
                guard !self.changed(id, after: loadedAfter) else { return false }
                self.catchUp(&entries)
                // A concurrent load may have won; keep its state (and any token) rather than replace it.
                if entries[id] == nil || entries[id]!.snapshot.revision < snapshot.revision {
                    entries[id] = Entry(snapshot: snapshot, grantedGIDs: gids)
                }
                return true
            }
            if stored { return }
        }
    }

    func waitForCall(_ id: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiting = self.entries.withLock { entries -> Bool in
                guard entries[id]?.state.inFlight == true else { return false }
                entries[id]!.waiters.append(continuation)
                return true
            }
            if !waiting { continuation.resume() }
        }
    }

    /// Makes the one upstream call for `id` and folds in its result; wakes every waiter either way.
    func fetch(_ id: String) async throws {
        var outcome: Result<Void, VaultError> = .success(())
        do {
            let credentials = try await self.vault.credentials(id)
            outcome = await self.exchange(credentials)
        } catch let error as VaultError {
            outcome = .failure(error)
            self.entries.withLock { entries in
                entries[id]?.state.failed(now: .now, error: error.message, retryAfter: nil, policy: RefreshPolicy())
            }
        } catch {
            outcome = .failure(VaultError(.internalError, "token request failed", cause: error))
        }
        let waiters = self.entries.withLock { entries -> [CheckedContinuation<Void, Never>] in
            let waiters = entries[id]?.waiters ?? []
            entries[id]?.waiters = []
            if entries[id]?.state.inFlight == true { entries[id]?.state.inFlight = false }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
        try outcome.get()
    }

    /// Exchanges credentials and records the result in the cache (and the vault, on rejection).
    func exchange(_ credentials: ConnectionCredentials) async -> Result<Void, VaultError> {
        let snapshot = credentials.snapshot
        let id = snapshot.id
        let policy = self.policy(snapshot.provider)
        do {
            let (issued, refusal) = try await self.obtain(credentials, policy: policy)
            if let refusal { return .failure(refusal) }
            var token = Self.cachedToken(issued, revision: snapshot.revision, policy: policy)
            let prepared = PreparedTokenResponse(connection: id, token: token, settings: snapshot.settings)
            let stored = self.entries.withLock { entries -> Bool in
                // A reset or edit during the call made this token stale: do not cache it.
                self.catchUp(&entries)
                guard let entry = entries[id], entry.snapshot.revision == snapshot.revision else { return false }
                if entry.state.token?.accessToken == token.accessToken {
                    // Personio hands out the same token for a credential pair until it expires: asking again before
                    // then cannot renew it, so the next refresh is due when it expires.
                    token.refreshAt = token.expiresAt
                }
                entry.state.succeeded(token)
                entry.prepared = prepared
                return true
            }
            self.logger.debug(
                "token obtained",
                metadata: [
                    "connection.id": "\(id)", "token.expires_in": "\(issued.expiresIn)", "token.cached": "\(stored)",
                ]
            )
            return stored
                ? .success(())
                : .failure(
                    VaultError(
                        .upstreamUnavailable,
                        "the connection changed during the token request; retry",
                        retryAfter: 1
                    )
                )
        } catch let error as PersonioAuthError {
            return await self.failed(snapshot, error: error, policy: policy)
        } catch {
            return .failure(VaultError(.internalError, "token request failed", cause: error))
        }
    }

    func failed(
        _ snapshot: ConnectionSnapshot,
        error: PersonioAuthError,
        policy: RefreshPolicy
    ) async -> Result<Void, VaultError> {
        let id = snapshot.id
        let text = error.message
        self.entries.withLock { entries in
            entries[id]?.state.failed(now: .now, error: text, retryAfter: error.retryAfter, policy: policy)
        }
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
            return .failure(VaultError(.upstreamRejected, "Personio rejected the credentials of '\(id)': \(text)"))
        case .unavailable:
            let retry = self.entries.withLock { entries in entries[id]?.state.retryAt.map { $0 - .now } } ?? .seconds(1)
            try? await self.vault.recordLastError(id, revision: snapshot.revision, error: text)
            return .failure(
                VaultError(
                    .upstreamUnavailable,
                    "Personio is unavailable: \(text)",
                    retryAfter: max(1, Int(retry.components.seconds) + 1)
                )
            )
        default:
            try? await self.vault.recordLastError(id, revision: snapshot.revision, error: text)
            return .failure(VaultError(.upstreamRejected, "Personio refused the token request for '\(id)': \(text)"))
        }
    }

    static func personioCredentials(_ credentials: ConnectionCredentials) throws -> PersonioCredentials {
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
            scope: snapshot.settings.scope
        )
    }

    static func cachedToken(_ issued: IssuedToken, revision: Int64, policy: RefreshPolicy) -> CachedToken {
        let lifetime = Duration.seconds(max(1, issued.expiresIn))
        let jitterRange = policy.jitterFraction * Double(max(1, issued.expiresIn))
        let jitter = jitterRange > 0 ? Double.random(in: -jitterRange...jitterRange) : 0
        let refreshAfter = max(0.5, policy.refreshFraction * Double(issued.expiresIn) + jitter)
        return CachedToken(
            accessToken: issued.accessToken,
            tokenType: issued.tokenType,
            scope: issued.scope,
            revision: revision,
            obtainedAt: issued.issuedAt,
            expiresAt: issued.issuedAt + lifetime,
            expiresAtWall: issued.expiresAtEpochSeconds,
            refreshAt: issued.issuedAt + .milliseconds(Int64(refreshAfter * 1000))
        )
    }

    // MARK: - Changes

    /// Folds the vault's changes published since the last call into `entries` (call with the `entries` lock held):
    /// drops what the broker knows of each changed connection and wakes the revoker when a change withdrew tokens.
    /// One atomic load when nothing changed, so the cached token path calls it on every request: a change the vault
    /// acknowledged is never answered from a stale entry.
    func catchUp(_ entries: inout [String: Entry]) {
        let applied = self.appliedChanges.load(ordering: .relaxed)
        guard self.vault.changes.latest != applied else { return }
        switch self.vault.changes.changes(after: applied) {
        case .changes(let published):
            for item in published { self.fold(item.change, into: &entries) }
            if let last = published.last { self.appliedChanges.store(last.sequence, ordering: .relaxed) }
        case .gap(let latest):
            // Fell behind what the feed keeps: forget everything, and let the revoker look for withdrawn tokens.
            for id in Array(entries.keys) {
                self.fold(ConnectionChange(id: id, kind: .edited, revision: nil), into: &entries)
            }
            self.revokerWake.store(true, ordering: .releasing)
            self.appliedChanges.store(latest, ordering: .relaxed)
        }
    }

    /// Whether a change of `id` was published after sequence number `sequence` (or the feed no longer knows).
    func changed(_ id: String, after sequence: UInt64) -> Bool {
        switch self.vault.changes.changes(after: sequence) {
        case .changes(let published): published.contains { $0.change.id == id }
        case .gap: true
        }
    }

    private func fold(_ change: ConnectionChange, into entries: inout [String: Entry]) {
        if let entry = entries.removeValue(forKey: change.id) {
            _ = entry.state.invalidate()
            for waiter in entry.waiters { waiter.resume() }
            entry.waiters = []
        }
        if change.kind.withdrawsTokens { self.revokerWake.store(true, ordering: .releasing) }
    }

    /// Reads the vault's change stream until cancelled, so that withdrawn tokens are revoked and stale entries
    /// dropped as soon as a change commits, not only at the next request.
    func followChanges() async {
        for await _ in self.vault.changes.updates() {
            self.entries.withLock { self.catchUp(&$0) }
        }
    }

    // MARK: - Background work

    /// Revokes withdrawn tokens and refreshes tokens ahead of expiry until cancelled (run it in the service group).
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.followChanges() }
            group.addTask { await self.runRevoker() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(500))
                    await self.refreshDue()
                }
            }
        }
    }

    /// Refreshes every token past its refresh point, one upstream call per connection.
    func refreshDue() async {
        let now = ContinuousClock.now
        let due = self.entries.withLock { entries -> [String] in
            var due: [String] = []
            for (id, entry) in entries
            where entry.state.shouldRefresh(now: now, policy: self.policy(entry.snapshot.provider)) {
                due.append(id)
            }
            return due
        }
        await withDiscardingTaskGroup { group in
            for id in due {
                group.addTask { try? await self.fetch(id) }
            }
        }
    }
}
