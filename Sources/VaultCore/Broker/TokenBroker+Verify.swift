import PersonioAuth
import Synchronization
import VaultAPI

extension TokenBroker {
    /// Exchanges the connection's credentials with Personio now and reports the outcome (expiry and scope, or
    /// Personio's error), never a secret. A rejection moves the connection to `needs_reset`, as a token request
    /// would. Audited. Works in every state, so an admin can check credentials before enabling a connection.
    public func verify(_ id: String, by actor: AuditActor) async throws -> VerifyResult {
        let credentials = try await self.vault.credentials(id)
        let snapshot = credentials.snapshot
        guard snapshot.provider.isTokenExportable else {
            let problem = Problem(
                status: 409,
                code: .tokenNotExportable,
                title: "Not verifiable by token exchange",
                detail: "recruiting keys have no token exchange; use the proxy route to try a request"
            )
            return .failed(connection: id, error: problem, state: snapshot.state)
        }
        do {
            // The same stable token apps get: recorded before it may be cached, and revoked at once when the
            // connection is not active (a verify of a disabled connection leaves no valid token behind).
            let (issued, refusal) = try await self.obtain(credentials, policy: self.policy(snapshot.provider))
            if snapshot.state == .active, refusal == nil {
                let token = Self.cachedToken(
                    issued,
                    revision: snapshot.revision,
                    policy: self.policy(snapshot.provider)
                )
                let prepared = PreparedTokenResponse(connection: id, token: token, settings: snapshot.settings)
                self.entries.withLock { entries in
                    guard let entry = entries[id], entry.snapshot.revision == snapshot.revision, !entry.state.inFlight
                    else { return }
                    entry.state.succeeded(token)
                    entry.prepared = prepared
                }
            }
            try await self.vault.recordVerification(
                id,
                by: actor,
                ok: true,
                detail: "expires_in \(issued.expiresIn); scope \(issued.scope ?? "-")"
            )
            return VerifyResult(
                connection: id,
                ok: true,
                expiresIn: issued.expiresIn,
                expiresAt: Timestamp.format(secondsSince1970: issued.expiresAtEpochSeconds),
                scope: issued.scope,
                error: nil,
                state: snapshot.state
            )
        } catch let error as PersonioAuthError {
            var state = snapshot.state
            let problem: Problem
            switch error.code {
            case .credentialsRejected:
                try await self.vault.markNeedsReset(id, revision: snapshot.revision, error: error.message)
                state = try await self.vault.snapshot(id)?.state ?? state
                problem = Problem(
                    status: 502,
                    code: .upstreamRejected,
                    title: "Personio rejected the credentials",
                    detail: error.message
                )
            case .unavailable:
                problem = Problem(
                    status: 503,
                    code: .upstreamUnavailable,
                    title: "Personio is unavailable",
                    detail: error.message
                )
            default:
                problem = Problem(
                    status: 502,
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
            return .failed(connection: id, error: problem, state: state)
        }
    }
}
