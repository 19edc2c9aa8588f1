import PersonioClient
import VaultAPI
import VaultCore
import VaultMetrics

/// What a verify found: the outcome as the domain sees it. The HTTP layer gives each failure code its status.
public struct VerifyOutcome: Sendable, Equatable {
    /// Why a verify failed, in words an admin can act on; never a secret.
    public struct Failure: Sendable, Equatable {
        public var code: VaultError.Code
        public var title: String
        public var detail: String
    }

    public var connection: String
    public var ok: Bool { self.failure == nil }
    public var expiresIn: Int?
    public var expiresAt: String?
    public var scope: String?
    public var failure: Failure?
    /// The connection's state after the verify (a rejection moves it to `needs_reset`).
    public var state: ConnectionState

    static func failed(connection: String, _ failure: Failure, state: ConnectionState) -> VerifyOutcome {
        VerifyOutcome(connection: connection, failure: failure, state: state)
    }
}

extension TokenBroker {
    /// Exchanges the connection's credentials with Personio now and reports the outcome (expiry and scope, or
    /// Personio's error), never a secret. A rejection moves the connection to `needs_reset`, as a token request
    /// would. Audited. Works in every state, so an admin can check credentials before enabling a connection.
    public func verify(_ id: String, by actor: AuditActor) async throws -> VerifyOutcome {
        let credentials = try await self.vault.credentials(id)
        let snapshot = credentials.snapshot
        guard snapshot.provider.isTokenExportable else {
            let failure = VerifyOutcome.Failure(
                code: .tokenNotExportable,
                title: "Not verifiable by token exchange",
                detail: "recruiting keys have no token exchange; use the proxy route to try a request"
            )
            return .failed(connection: id, failure, state: snapshot.state)
        }
        // A verify is an exchange with Personio like any other: it counts toward the connection's call limit.
        if let wait = self.reserveCall(id, provider: snapshot.provider, verify: true) {
            let failure = VerifyOutcome.Failure(
                code: .upstreamUnavailable,
                title: "Personio call limit reached",
                detail: "\(TokenState<Waiter>.rateLimited); retry in \(wait.retryAfterSeconds) s"
            )
            try await self.vault.recordVerification(
                id,
                by: actor,
                ok: false,
                detail: "\(failure.code): \(failure.detail)"
            )
            return .failed(connection: id, failure, state: snapshot.state)
        }
        do {
            // The same stable token apps get: recorded before it may be cached, and revoked at once when the
            // connection is not active (a verify of a disabled connection leaves no valid token behind).
            let policy = self.policy(snapshot.provider)
            // Read before the token is recorded: a withdrawal published after it may have made the token's row
            // pending after the record, and the token must then not be cached.
            let changesBefore = self.vault.changes.latest
            // The token of the connection's own scope (the slot of rules without one of their own).
            let obtained = try await self.obtain(
                credentials,
                policy: policy,
                scope: snapshot.settings.scope,
                for: .verify
            )
            let issued = obtained.issued
            if snapshot.state == .active, obtained.outcome.refusal == nil {
                let token = Self.cachedToken(
                    issued,
                    revision: snapshot.revision,
                    policy: policy,
                    obtainedAt: obtained.startedAt,
                    requestedScope: snapshot.settings.scope
                )
                let prepared = PreparedTokenResponse(connection: id, token: token, settings: snapshot.settings)
                await self.awaitCallEndingHook()
                self.withEntries { entries, _ in
                    guard let entry = entries[id], entry.snapshot.revision == snapshot.revision,
                        !self.withdrew(id, after: changesBefore),
                        entry.slots[0].scope == snapshot.settings.scope, entry.slots[0].state.tokenObtained(token)
                    else { return }
                    entry.slots[0].prepared = prepared
                }
            }
            try await self.vault.recordVerification(
                id,
                by: actor,
                ok: true,
                detail: "expires_in \(issued.expiresIn); scope \(issued.scope ?? "-")"
            )
            return VerifyOutcome(
                connection: id,
                expiresIn: issued.expiresIn,
                expiresAt: Timestamp.format(secondsSince1970: issued.expiresAtEpochSeconds),
                scope: issued.scope,
                failure: nil,
                state: snapshot.state
            )
        } catch let error as PersonioAuthError {
            var state = snapshot.state
            let problem: VerifyOutcome.Failure
            switch error.code {
            case .credentialsRejected:
                try await self.vault.markNeedsReset(id, revision: snapshot.revision, error: error.message)
                state = try await self.vault.snapshot(id)?.state ?? state
                problem = VerifyOutcome.Failure(
                    code: .upstreamRejected,
                    title: "Personio rejected the credentials",
                    detail: error.message
                )
            case .unavailable:
                problem = VerifyOutcome.Failure(
                    code: .upstreamUnavailable,
                    title: "Personio is unavailable",
                    detail: error.message
                )
            default:
                problem = VerifyOutcome.Failure(
                    code: .upstreamRejected,
                    title: "Personio refused the request",
                    detail: error.message
                )
            }
            try await self.vault.recordVerification(
                id,
                by: actor,
                ok: false,
                detail: "\(problem.code): \(error.message)"
            )
            return .failed(connection: id, problem, state: state)
        }
    }
}
