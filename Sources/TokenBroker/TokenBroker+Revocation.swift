import Logging
import PersonioClient
import Synchronization
import VaultAPI
import VaultCore
import VaultLocks
import VaultMetrics

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The revoker's retry rules, as numbers.
public struct RevocationPolicy: Sendable {
    /// Wait after the first failed attempt; doubles with each further failure up to `maximumBackoff`.
    public var initialBackoff: Duration = .seconds(1)
    public var maximumBackoff: Duration = .seconds(300)
    /// How often the revoker checks whether a pending row has become due (it reads the store only then).
    public var tick: Duration = .milliseconds(250)
    /// Wall-clock seconds since 1970: pending rows survive restarts, so their schedule is in wall time.
    public var now: @Sendable () -> Double = { Date().timeIntervalSince1970 }

    public init() {}

    /// The wait after `failures` failed attempts (1 or more), at least `retryAfter` when Personio gave one.
    public func backoff(afterFailures failures: Int, retryAfter: Duration? = nil) -> Duration {
        var delay = self.initialBackoff
        for _ in 1..<max(1, min(failures, 40)) where delay < self.maximumBackoff { delay *= 2 }
        delay = min(delay, self.maximumBackoff)
        if let retryAfter, retryAfter > delay { delay = min(retryAfter, .seconds(3600)) }
        return delay
    }
}

extension TokenBroker {
    // MARK: - Recording what is handed out

    /// What may be done with a token just obtained.
    enum RecordOutcome {
        case serve
        /// Not to be served: the vault could not record it (counts for the back-off).
        case refuse(VaultError)
        /// Not to be served: the connection changed during the call (no back-off; the caller asks again).
        case withdrawn(VaultError)
        /// Personio handed back a token of the connection's previous state that still waits for revocation.
        case revokeFirst(VaultError)

        var refusal: VaultError? {
            switch self {
            case .serve: nil
            case .refuse(let error), .withdrawn(let error), .revokeFirst(let error): error
            }
        }

        /// Whether a token call that ends so backs off.
        var backsOff: Bool {
            switch self {
            case .serve, .withdrawn: false
            case .refuse, .revokeFirst: true
            }
        }
    }

    /// A token obtained from Personio and recorded (or why not to serve it).
    struct Obtained {
        var issued: IssuedToken
        /// The broker's clock just before the exchange that issued it was sent.
        var startedAt: ContinuousClock.Instant
        var outcome: RecordOutcome
    }

    /// Exchanges the credentials with Personio and records the token before anyone is handed it.
    ///
    /// When Personio hands back a token of the connection's previous state that still waits for revocation (a reset
    /// to credentials Personio did not change, moments after the change), the due revocations are made now and the
    /// exchange is repeated once: after the revocation Personio issues a new token.
    /// The first exchange must already be counted toward the connection's call limit (a token call of the state
    /// machine, or a verify); the repeated one is counted here, and not made when the limit is reached.
    /// - Parameter scope: The scope the token is asked for (nil: every scope the client has).
    /// - Returns: The token, when the exchange that issued it started, and whether it may be served.
    /// - Throws: `PersonioAuthError` from the exchange; `VaultError` for credentials that cannot be exchanged.
    func obtain(
        _ credentials: ConnectionCredentials,
        policy: RefreshPolicy,
        scope: String?,
        for exchange: BrokerMetrics.Exchange = .token
    ) async throws -> Obtained {
        let snapshot = credentials.snapshot
        let request = try Self.personioCredentials(credentials, scope: scope)
        var startedAt = self.clock.now
        var issued = try await self.counted(exchange, request)
        var outcome = await self.record(issued, for: snapshot, policy: policy)
        if case .revokeFirst = outcome,
            self.reserveCall(snapshot.id, provider: snapshot.provider) == nil
        {
            _ = await self.revocationPass(now: self.revocationPolicy.now())
            startedAt = self.clock.now
            issued = try await self.counted(exchange, request)
            outcome = await self.record(issued, for: snapshot, policy: policy)
        }
        return Obtained(issued: issued, startedAt: startedAt, outcome: outcome)
    }

    /// Records a token just obtained for `snapshot` in the vault, before anyone is handed it.
    ///
    /// A token the broker already holds for the same revision (in any of the connection's slots) was recorded when it
    /// first arrived (Personio hands out the same token until it expires), so refreshes that return it cost no write.
    /// Every scope's token gets a row of its own: a withdrawal revokes them all, also after a restart.
    func record(_ issued: IssuedToken, for snapshot: ConnectionSnapshot, policy: RefreshPolicy) async -> RecordOutcome {
        let id = snapshot.id
        let known = self.entries.withLock { entries in
            guard let entry = entries[id], entry.snapshot.revision == snapshot.revision else { return false }
            return entry.slots.contains { $0.token?.accessToken == issued.accessToken }
        }
        if known { return .serve }
        let recording: TokenRecording
        do {
            recording = try await self.vault.recordIssuedToken(
                snapshot,
                token: issued.accessToken,
                expiresAt: issued.expiresAtEpochSeconds
            )
        } catch {
            // A token that is not recorded could not be revoked after a restart: it is not handed out.
            self.logger.error(
                "could not record an issued token; not serving it",
                metadata: ["connection.id": "\(id)", "error": "\(error)"]
            )
            // The real cause, not Personio's: a fault below the store is 500 storage_failed naming the fault
            // (docs/http-api.md), anything else the vault's own error.
            let failure: VaultError
            if let error = error as? VaultError, error.code == .storageFailed {
                failure = VaultError(
                    .storageFailed,
                    "the vault could not record the token for '\(id)': \(error.message)",
                    cause: error
                )
            } else {
                failure =
                    error as? VaultError
                    ?? VaultError(.internalError, "the vault could not record the token for '\(id)'", cause: error)
            }
            return .refuse(failure)
        }
        switch recording {
        case .recorded:
            // The revoker learns of the new row's expiry, so the row is dropped then.
            self.revokerWake.store(true, ordering: .releasing)
            return .serve
        case .alreadyRecorded:
            return .serve
        case .withdrawn:
            self.revokerWake.store(true, ordering: .releasing)
            return .withdrawn(
                VaultError(
                    .upstreamUnavailable,
                    "the connection changed during the token request; retry",
                    retryAfter: 1
                )
            )
        case .revocationPending:
            // Personio handed back the token of the connection's previous state: it is about to be revoked, so
            // serving it would hand out a token that dies within seconds. Once revoked, Personio issues a new one.
            self.revokerWake.store(true, ordering: .releasing)
            return .revokeFirst(
                VaultError(
                    .upstreamUnavailable,
                    "a token of the previous state of '\(id)' is still being revoked at Personio; retry",
                    retryAfter: 1
                )
            )
        }
    }

    // MARK: - The revoker

    /// Revokes pending tokens until cancelled: at start-up (rows an earlier run left), when a change withdraws
    /// tokens, and when a retry or an expiry falls due. It reads the store only then, not on every tick.
    func runRevoker() async {
        var nextEvent: Double?
        while !Task.isCancelled {
            let now = self.revocationPolicy.now()
            let woken = self.revokerWake.exchange(false, ordering: .acquiringAndReleasing)
            if woken || nextEvent.map({ $0 <= now }) == true {
                nextEvent = await self.revocationPass(now: now)
            }
            try? await self.clock.sleep(until: self.clock.now + self.revocationPolicy.tick)
        }
    }

    /// One pass: drops expired rows, attempts every due revocation; returns when the next pass has work.
    func revocationPass(now: Double) async -> Double? {
        let pass: RevocationPass
        do {
            pass = try await self.vault.revocationPass(now: now)
        } catch {
            self.logger.error("cannot read pending revocations", metadata: ["error": "\(error)"])
            return now + 1
        }
        if pass.expired > 0 {
            self.logger.debug("dropped expired token records", metadata: ["tokens.expired": "\(pass.expired)"])
        }
        for _ in 0..<pass.gaveUp { self.metrics.revocation(.failed) }
        guard !pass.due.isEmpty else { return pass.nextEvent }
        await withDiscardingTaskGroup { group in
            for due in pass.due {
                group.addTask { await self.revoke(due, now: now) }
            }
        }
        // The attempts just made moved their rows' schedule: look again at the next tick.
        return now
    }

    /// Revokes one token at Personio and records the outcome.
    func revoke(_ due: DueRevocation, now: Double) async {
        // A token request may make a pass of its own (see `obtain`): one attempt per row at a time.
        guard self.revoking.withLock({ $0.insert(due.id).inserted }) else { return }
        defer { _ = self.revoking.withLock { $0.remove(due.id) } }
        let metadata: Logger.Metadata = ["connection.id": "\(due.connectionID)", "token.attempts": "\(due.attempts)"]
        guard self.reserveRevocationCall(due.connectionID, provider: due.provider) else {
            // The connection's Personio call budget is spent: wait, without counting an attempt.
            try? await self.vault.postponeRevocation(due, until: now + 1)
            return
        }
        do {
            try await self.auth.revoke(
                token: due.token,
                api: .v2,
                baseURL: due.settings.effectiveAPIBaseURL,
                appID: due.settings.appID,
                partnerID: due.settings.partnerID
            )
            self.metrics.exchanged(.revoke, .ok)
        } catch {
            self.metrics.exchanged(.revoke, BrokerMetrics.Outcome(error))
            let delay = self.revocationPolicy.backoff(afterFailures: due.attempts + 1, retryAfter: error.retryAfter)
            let seconds = delay.secondsValue
            self.logger.warning(
                "token revocation failed; retrying",
                metadata: metadata.merging(["error": "\(error.message)", "retry.in": "\(delay)"]) { $1 }
            )
            do {
                try await self.vault.revocationFailed(due, error: error.message, nextAttemptAt: now + seconds)
            } catch {
                self.logger.error("cannot record a failed revocation", metadata: ["error": "\(error)"])
            }
            return
        }
        do {
            try await self.vault.revocationSucceeded(due)
            self.metrics.revocation(.revoked)
            self.logger.info("token revoked at Personio", metadata: metadata)
        } catch {
            // The row stays and is revoked again later; Personio answers a repeated revocation with 200.
            self.logger.error("cannot record a revocation", metadata: ["error": "\(error)"])
        }
    }
}
