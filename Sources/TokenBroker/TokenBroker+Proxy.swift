import Logging
import NIOCore
import PersonioClient
import Synchronization
import VaultAPI
import VaultCore
import VaultMetrics

/// Where and with which credential the proxy route sends a connection's requests. Holds a live credential (an
/// access token, or the decrypted recruiting key): use it for one request and drop it.
public struct ProxyTarget: Sendable, CustomStringConvertible {
    public var connection: String
    public var provider: Provider
    /// The connection's API base URL (its own path prefix included).
    public var baseURL: String
    /// The credential to inject.
    public var authorization: ProxyAuthorization
    /// Sent as `X-Personio-App-ID` when set.
    public var appID: String?
    /// Sent as `X-Personio-Partner-ID` when set.
    public var partnerID: String?

    /// Names the connection and where it points; never the credential.
    public var description: String {
        "ProxyTarget(connection: \(self.connection), provider: \(self.provider.rawValue), baseURL: \(self.baseURL), "
            + "authorization: \(self.authorization))"
    }
}

/// The proxy route (`/v1/connections/{id}/proxy/{path}`): the same authorization as token requests, except that
/// recruiting connections are allowed, since their key is injected here and never handed out.
extension TokenBroker {
    /// The remaining lifetime an access token must have to be used for a proxied request.
    static let proxyMinimumTTL = 60

    /// Where and with what `caller`'s proxied requests for `id` go now.
    ///
    /// v1 and v2 connections carry a cached or fresh access token (at least 60 s left), obtained exactly as by
    /// `token(_:for:minTTL:)`; recruiting connections carry the recruiting key, decrypted for this call, and the
    /// company id from the settings.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - caller: Who asks.
    /// - Returns: Base URL, credential and identification headers.
    /// - Throws: `VaultError`: `forbidden` (unknown or not granted alike), `connection_disabled`,
    ///   `connection_needs_reset`; for v1 and v2 also what `token(_:for:minTTL:)` throws (`upstream_rejected`,
    ///   `upstream_unavailable`).
    public func proxyTarget(_ id: String, for caller: Caller) async throws -> ProxyTarget {
        try await self.loadEntry(id)
        let (cached, grantedGIDs) = try self.entries.withLock {
            entries throws(VaultError) -> (ConnectionSnapshot, Set<UInt32>) in
            guard let entry = entries[id] else { throw Self.forbidden }
            if let refusal = Self.refusal(
                entry.snapshot,
                grantedGIDs: entry.grantedGIDs,
                caller: caller,
                allowRecruiting: true
            ) {
                throw refusal
            }
            return (entry.snapshot, entry.grantedGIDs)
        }
        switch cached.provider {
        case .personioV1, .personioV2:
            let token = try await self.servedToken(id, for: caller, minTTL: Self.proxyMinimumTTL).token
            // Take the base URL from the revision that obtained the token: after an edit that moved the connection
            // elsewhere, the new token must not go to the old address (nor the old token to the new one).
            let snapshot = self.entries.withLock { $0[id]?.snapshot }
            guard let snapshot, snapshot.revision == token.revision else {
                throw VaultError(
                    .upstreamUnavailable,
                    "connection '\(id)' changed during the request; retry",
                    retryAfter: 1
                )
            }
            return ProxyTarget(
                connection: id,
                provider: snapshot.provider,
                baseURL: snapshot.settings.effectiveAPIBaseURL,
                authorization: .bearer(token.accessToken),
                appID: snapshot.settings.appID,
                partnerID: snapshot.settings.partnerID
            )
        case .personioRecruiting:
            return try await self.recruitingTarget(cached, grantedGIDs: grantedGIDs, caller: caller)
        }
    }

    /// Decrypts the recruiting key, checking authorization again against the state read with it: the cached entry
    /// may predate a disable whose notification has not been handled yet.
    private func recruitingTarget(
        _ cached: ConnectionSnapshot,
        grantedGIDs: Set<UInt32>,
        caller: Caller
    ) async throws -> ProxyTarget {
        let id = cached.id
        let credentials: ConnectionCredentials
        do {
            credentials = try await self.vault.credentials(id)
        } catch let error as VaultError where error.code == .notFound {
            throw Self.forbidden
        }
        let snapshot = credentials.snapshot
        let gids =
            snapshot.grants == cached.grants
            ? grantedGIDs : Set(snapshot.grants.groups.compactMap(GroupDirectory.gid(named:)))
        if let refusal = Self.refusal(snapshot, grantedGIDs: gids, caller: caller, allowRecruiting: true) {
            throw refusal
        }
        guard snapshot.provider == .personioRecruiting, let key = credentials.secrets[.recruitingToken],
            let companyID = snapshot.settings.companyID
        else {
            throw VaultError(.internalError, "recruiting connection '\(id)' has no recruiting key or company id")
        }
        return ProxyTarget(
            connection: id,
            provider: snapshot.provider,
            baseURL: snapshot.settings.effectiveAPIBaseURL,
            authorization: .recruiting(key: key, companyID: companyID),
            appID: snapshot.settings.appID,
            partnerID: snapshot.settings.partnerID
        )
    }

    /// Forwards `request` to the connection's API with its credential injected, and returns Personio's answer as it
    /// streams in, whatever its status.
    ///
    /// A 401 to a request that carried a cached access token drops that token (Personio may have revoked it), so the
    /// next request fetches a new one; unless the token was obtained within the policy's `minimumRefetchInterval`,
    /// which points at something other than revocation and must not cost a token call per proxied request.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - request: The caller's request, with the path under the API base.
    ///   - caller: Who asks.
    ///   - timeout: Limit for connecting to Personio and receiving the response head; the broker's `proxyTimeout`
    ///     when nil.
    /// - Returns: Personio's answer.
    /// - Throws: `VaultError`: `bad_request` (path, query or header), `method_not_allowed`, `payload_too_large`
    ///   (over 1 MiB), then as `proxyTarget(_:for:)`, then `upstream_unavailable` (with `retryAfter`) when Personio
    ///   cannot be reached in time, `upstream_rejected` when the request cannot be built from the connection's
    ///   settings or credential.
    public func proxy(
        _ id: String,
        request: ProxyRequest,
        for caller: Caller,
        timeout: Duration? = nil
    ) async throws -> ProxyResponse {
        do {
            try PersonioProxy.validate(request)
        } catch {
            throw Self.vaultError(error)
        }
        let target = try await self.proxyTarget(id, for: caller)
        let response: ProxyResponse
        // The proxy overwrites an echoed credential in the answer; this records once per answer that it had to.
        let (vault, logger, actor) = (self.vault, self.logger, caller.auditActor)
        let onEcho: @Sendable () async -> Void = {
            logger.warning(
                "Personio's answer to a proxied request echoed the injected credential; overwritten with '*'",
                metadata: ["connection.id": "\(id)"]
            )
            do {
                try await vault.recordCredentialEcho(id, by: actor, kind: target.authorization.kind)
            } catch {
                logger.error(
                    "cannot audit a credential echo",
                    metadata: ["connection.id": "\(id)", "error": "\(error)"]
                )
            }
        }
        do {
            response = try await self.proxyClient.forward(
                request,
                baseURL: target.baseURL,
                authorization: target.authorization,
                appID: target.appID,
                partnerID: target.partnerID,
                timeout: timeout ?? self.proxyTimeout,
                onCredentialEcho: onEcho
            )
        } catch {
            self.metrics.proxied(status: nil)
            self.logger.debug(
                "proxied request failed",
                metadata: ["connection.id": "\(id)", "error.code": "\(error.code)"]
            )
            throw Self.vaultError(error, connection: id)
        }
        self.metrics.proxied(status: response.status)
        self.logger.debug(
            "proxied request answered",
            metadata: ["connection.id": "\(id)", "http.status": "\(response.status)"]
        )
        if response.status == 401, case .bearer(let token) = target.authorization {
            self.dropRejectedToken(id, token: token)
        }
        return response
    }

    /// An app's request for the proxy route, as the route read it off the socket: nothing Personio-specific yet.
    public struct ForwardedRequest: Sendable {
        public var method: String
        /// The path after `/v1/connections/{id}/proxy`, starting with `/`, not yet checked.
        public var path: String
        public var query: String?
        public var headers: [(String, String)]
        public var body: ByteBuffer?

        public init(method: String, path: String, query: String?, headers: [(String, String)], body: ByteBuffer?) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    /// Personio's answer to a forwarded request, for the route to stream back as it is.
    public struct ForwardedResponse: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: ProxyResponse.Body
    }

    /// Forwards an app's request for the proxy route: checks the path, authorizes `caller` as ``proxyTarget(_:for:)``
    /// does, injects the credential, and hands Personio's answer back. Personio's own answers (2xx–4xx, 429 with its
    /// Retry-After) come back as they are; a failure on Personio's side (5xx) becomes a `VaultError`
    /// (`upstream_unavailable` for 503, else `upstream_error`), without relaying a body nobody vetted.
    public func forward(_ id: String, _ request: ForwardedRequest, for caller: Caller) async throws -> ForwardedResponse
    {
        let path: String
        switch PersonioProxy.validatedPath(request.path, query: request.query) {
        case .success(let validated): path = validated
        case .failure(let error): throw VaultError(.badRequest, "proxy path refused: \(error)")
        }
        let upstream = try await self.proxy(
            id,
            request: ProxyRequest(
                method: request.method,
                path: path,
                query: request.query,
                headers: request.headers,
                body: request.body
            ),
            for: caller
        )
        if upstream.status >= 500 {
            let retryAfter = upstream.header("Retry-After").flatMap { Int($0) }
            if upstream.status == 503 {
                throw VaultError(
                    .upstreamUnavailable,
                    "Personio is unavailable (HTTP 503)",
                    retryAfter: retryAfter ?? 5
                )
            }
            throw VaultError(.upstreamError, "Personio failed to answer the proxied request (HTTP \(upstream.status))")
        }
        return ForwardedResponse(status: upstream.status, headers: upstream.headers, body: upstream.body)
    }

    /// Forgets `token` if it is still the cached one and old enough (see `proxy(_:request:for:timeout:)`).
    func dropRejectedToken(_ id: String, token: String) {
        let now = self.clock.now
        let dropped = self.withEntries { entries, _ -> Bool in
            guard let entry = entries[id], entry.state.tokenRejected(accessToken: token, now: now) else { return false }
            entry.prepared = nil
            return true
        }
        if dropped {
            self.logger.info("Personio refused a cached access token; dropped it", metadata: ["connection.id": "\(id)"])
        }
    }

    // MARK: - Errors

    static func vaultError(_ error: ProxyRequestError) -> VaultError {
        switch error.code {
        case .methodNotAllowed: VaultError(.methodNotAllowed, error.message)
        case .bodyTooLarge: VaultError(.payloadTooLarge, error.message)
        default: VaultError(.badRequest, error.message)
        }
    }

    static func vaultError(_ error: PersonioAuthError, connection id: String) -> VaultError {
        switch error.code {
        case .unavailable:
            return VaultError(
                .upstreamUnavailable,
                "Personio is unavailable for '\(id)': \(error.message)",
                retryAfter: error.retryAfter?.retryAfterSeconds ?? 1
            )
        default:
            return VaultError(
                .upstreamRejected,
                "the request for '\(id)' could not be sent to Personio: \(error.message)"
            )
        }
    }
}

extension ProxyAuthorization {
    /// What the proxy injected, for the audit trail: never the value.
    fileprivate var kind: String {
        switch self {
        case .bearer: "access token"
        case .recruiting: "recruiting key"
        }
    }
}
