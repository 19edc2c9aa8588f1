import Logging
import NIOCore
import PersonioClient
import VaultAPI
import VaultCore
import VaultLocks
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
        let (cached, policy) = try self.entries.withLock {
            entries throws(VaultError) -> (ConnectionSnapshot, GrantPolicy) in
            guard let entry = entries[id] else { throw Self.forbidden }
            _ = try entry.authorization(caller: caller, use: .proxy).get()
            return (entry.snapshot, entry.policy)
        }
        switch cached.provider {
        case .personioV1, .personioV2:
            let token = try await self.servedToken(id, for: caller, minTTL: Self.proxyMinimumTTL, use: .proxy).token
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
            return try await self.recruitingTarget(cached, policy: policy, caller: caller)
        }
    }

    /// Decrypts the recruiting key, checking authorization again against the state read with it: the cached entry
    /// may predate a disable whose notification has not been handled yet.
    private func recruitingTarget(
        _ cached: ConnectionSnapshot,
        policy: GrantPolicy,
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
        let current = snapshot.grants == cached.grants ? policy : Self.policy(snapshot.grants)
        _ = try Self.authorization(snapshot, policy: current, caller: caller, use: .proxy).get()
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

    // MARK: - Forwarding

    /// The largest proxied request body of a connection (its `proxy_max_body` setting).
    static func proxyBodyLimit(_ settings: ConnectionSettings) -> Int {
        settings.effectiveProxyMaxBody
    }

    /// Permission to forward one request of a caller: where it goes, with which credential, and how large its body
    /// may be. Holds a live credential: use it for one request and drop it.
    ///
    /// A class, and immutable: it is made on every proxied request and handed on several times (to the route, the
    /// sink, the admission), and as a struct of a dozen parts each hand-over copied them all.
    public final class ForwardGrant: Sendable {
        public let connection: String
        public let destination: ProxyDestination
        /// The most body bytes the request may send.
        public let bodyLimit: Int
        /// The request's head, checked once (``PersonioProxy/check(_:)``).
        public let head: PersonioProxy.CheckedHead
        /// The access token injected, so that a 401 can drop it from the cache; nil for a recruiting key.
        let accessToken: String?
        /// Who asks, for the access trail of a refusal.
        let caller: Caller
        /// The rule that lets the caller: its budget is spent by ``startForward``.
        let rule: MatchedRule
        /// Whether the connection is a recruiting one (Personio's limit per company applies).
        let recruiting: Bool

        init(
            connection: String,
            destination: ProxyDestination,
            bodyLimit: Int,
            head: PersonioProxy.CheckedHead,
            accessToken: String?,
            caller: Caller,
            rule: MatchedRule,
            recruiting: Bool
        ) {
            self.connection = connection
            self.destination = destination
            self.bodyLimit = bodyLimit
            self.head = head
            self.accessToken = accessToken
            self.caller = caller
            self.rule = rule
            self.recruiting = recruiting
        }

        /// The caller as the audit log names it.
        var actor: AuditActor { self.caller.auditActor }
        /// The caller's uid: its share of the proxy's upstream connections (``ProxyAdmission``).
        var uid: UInt32 { self.caller.uid }
    }

    /// Checks `head` and authorizes `caller` from memory: the grant for a connection whose access token is cached
    /// with at least 60 s left, or nil when the answer needs a wait (``forwardGrant(_:head:for:)``). Runs on the
    /// event loop on every proxied request: a dictionary look-up, the grant check and a comparison.
    ///
    /// - Throws: `VaultError`: `bad_request` (path, query or header), `method_not_allowed`, then as
    ///   ``proxyTarget(_:for:)``.
    public func cachedForwardGrant(
        _ id: String,
        head: PersonioProxy.RequestHead,
        for caller: Caller
    ) throws(VaultError) -> ForwardGrant? {
        let checked: PersonioProxy.CheckedHead
        do {
            checked = try PersonioProxy.check(head)
        } catch {
            throw Self.vaultError(error)
        }
        let now = self.clock.now
        // `withEntries`' work, written out as in `cachedResponse`: this runs for every proxied request.
        var grant: ForwardGrant?
        var rule: MatchedRule?
        let (released, refusal) = self.entries.withLock { entries -> ([Waiter], VaultError?) in
            let released = self.catchUp(&entries)
            guard let entry = entries[id] else { return (released, nil) }
            do throws(VaultError) {
                let granted = try entry.authorization(caller: caller, use: .proxy).get()
                rule = granted
                grant = try entry.cachedForwardGrant(caller: caller, rule: granted, head: checked, now: now)
                return (released, nil)
            } catch {
                return (released, error)
            }
        }
        for waiter in released { waiter.resume() }
        if let refusal { throw refusal }
        if let rule { try self.checkAllowList(id, rule: rule, head: head, caller: caller) }
        if grant != nil { self.metrics.cacheHit() }
        return grant
    }

    /// Refuses a request outside `rule`'s proxy allow-list with 403 `not_allowed` (recorded in the access trail).
    /// Matched on the normalized path: after the proxy's own path checks, percent-decoded once, so that an encoded
    /// spelling reaches the same decision as the plain one.
    func checkAllowList(
        _ id: String,
        rule: MatchedRule,
        head: PersonioProxy.RequestHead,
        caller: Caller
    ) throws(VaultError) {
        guard rule.proxy != nil else { return }
        let path: String
        switch PersonioProxy.normalizedPath(head.path) {
        case .success(let normalized): path = normalized
        case .failure(let error): throw Self.vaultError(error)
        }
        guard !rule.allowsProxy(method: head.method, path: path) else { return }
        let error = VaultError(
            .notAllowed,
            "this method and path are outside the proxy patterns of the rule that grants you '\(id)'"
        )
        self.refusedByPolicy(id, caller: caller, error: error, request: "\(head.method) \(path)", rule: rule)
        throw error
    }

    /// ``cachedForwardGrant(_:head:for:)`` when it had no answer: loads the connection, waits for a token (v1, v2)
    /// or decrypts the recruiting key.
    ///
    /// - Throws: `VaultError`: as ``cachedForwardGrant(_:head:for:)``, then as ``proxyTarget(_:for:)``, and
    ///   `upstream_rejected` when the connection's settings or credential cannot go into a request.
    public func forwardGrant(
        _ id: String,
        head: PersonioProxy.RequestHead,
        for caller: Caller
    ) async throws
        -> ForwardGrant
    {
        let checked: PersonioProxy.CheckedHead
        do {
            checked = try PersonioProxy.check(head)
        } catch {
            throw Self.vaultError(error)
        }
        // The allow-list is checked before a token is fetched or a key decrypted.
        try await self.loadEntry(id)
        let (rule, provider) = try self.withEntries { entries, _ throws(VaultError) -> (MatchedRule, Provider) in
            guard let entry = entries[id] else { throw Self.forbidden }
            let rule = try entry.authorization(caller: caller, use: .proxy).get()
            return (rule, entry.snapshot.provider)
        }
        try self.checkAllowList(id, rule: rule, head: head, caller: caller)
        let target = try await self.proxyTarget(id, for: caller)
        // The token just obtained is cached now: take the entry's destination, built once per token.
        if case .bearer = target.authorization, let grant = try self.cachedForwardGrant(id, head: head, for: caller) {
            return grant
        }
        let destination: ProxyDestination
        do {
            destination = try ProxyDestination(
                baseURL: target.baseURL,
                authorization: target.authorization,
                appID: target.appID,
                partnerID: target.partnerID
            )
        } catch {
            throw Self.vaultError(error, connection: id)
        }
        let limit = self.withEntries { entries, _ in entries[id].map { Self.proxyBodyLimit($0.snapshot.settings) } }
        var accessToken: String?
        if case .bearer(let token) = target.authorization { accessToken = token }
        return ForwardGrant(
            connection: id,
            destination: destination,
            bodyLimit: limit ?? ConnectionSettings.defaultProxyMaxBody,
            head: checked,
            accessToken: accessToken,
            caller: caller,
            rule: rule,
            recruiting: provider == .personioRecruiting
        )
    }

    /// Where the answer to a forwarded request goes, on the caller's event loop, in order: ``forwardedHead`` once,
    /// ``forwardedBody`` (the next after the previous one's future completed), ``forwardedEnd``; or
    /// ``forwardedFailed`` at any point, after which nothing more arrives.
    public protocol ResponseWriter: AnyObject {
        func forwardedHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void>
        func forwardedBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void>
        func forwardedEnd()
        /// Before the head: the problem to answer with. After it: the body is cut.
        func forwardedFailed(_ error: VaultError)
        /// The pieces written since the last flush are all of one read from Personio: write them out.
        func forwardedFlush()
    }

    /// Forwards a request `grant` allows, on `eventLoop` (the caller's), streaming its body to Personio and the
    /// answer to `writer`. Personio's own answers (2xx–4xx, 429 with its Retry-After) go to the writer as they are; a
    /// 5xx becomes a failure (`upstream_unavailable` for 503, else `upstream_error`) without relaying a body nobody
    /// vetted, unless `relayServerErrors`. A 401 to a cached access token drops it (see ``dropRejectedToken``); the
    /// request is not repeated: its body is gone, and a POST is not safe to replay.
    ///
    /// - Returns: The exchange, to cancel it when the caller goes away; nil when it could not start (the writer
    ///   got the failure).
    @discardableResult
    public func startForward(
        _ grant: ForwardGrant,
        body: ProxyRequestBody?,
        on eventLoop: any EventLoop,
        writer: any ResponseWriter,
        timeout: Duration? = nil,
        relayServerErrors: Bool = false
    ) -> ProxyExchange? {
        // A caller past its rule's budget, or a recruiting connection past Personio's limit, is refused before
        // anything is sent; so is a caller past its share of the upstream connections.
        if grant.recruiting || grant.rule.ratePerMinute != nil,
            let refusal = self.budgets.spend(
                connection: grant.connection,
                uid: grant.uid,
                rate: grant.rule.ratePerMinute,
                recruiting: grant.recruiting,
                at: self.clock.now
            )
        {
            self.refusedByPolicy(
                grant.connection,
                caller: grant.caller,
                error: refusal,
                request: "\(grant.head.callerMethod) "
                    + ((try? PersonioProxy.normalizedPath(grant.head.callerPath).get()) ?? grant.head.callerPath),
                rule: grant.rule
            )
            writer.forwardedFailed(refusal)
            return nil
        }
        guard let ticket = self.proxyAdmission.admit(uid: grant.uid) else {
            writer.forwardedFailed(self.proxyAdmission.refusal)
            return nil
        }
        let sink = ForwardSink(
            broker: self,
            grant: grant,
            writer: writer,
            relayServerErrors: relayServerErrors,
            ticket: ticket
        )
        do {
            return try self.proxyClient.start(
                checked: grant.head,
                body: body,
                to: grant.destination,
                on: eventLoop,
                timeout: timeout ?? self.proxyTimeout,
                sink: sink
            )
        } catch {
            sink.proxyFailed(error)
            return nil
        }
    }

    /// Forwards `request` with its whole body and collects the answer: the proxy route without a socket, for tests
    /// and tools. Personio's answer comes back whatever its status, 5xx included.
    ///
    /// - Throws: `VaultError`: as ``forwardGrant(_:head:for:)``, `payload_too_large` past the connection's body
    ///   limit, `upstream_unavailable` when Personio cannot be reached in time.
    public func proxy(
        _ id: String,
        request: ProxyRequest,
        for caller: Caller,
        timeout: Duration? = nil,
        maximumResponseBytes: Int = 64 << 20
    ) async throws -> ProxyResponse {
        let head = PersonioProxy.RequestHead(
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers
        )
        let grant = try await self.forwardGrant(id, head: head, for: caller)
        let size = request.body?.readableBytes ?? 0
        guard size <= grant.bodyLimit else {
            throw VaultError(.payloadTooLarge, "the body is larger than \(grant.bodyLimit) bytes")
        }
        let eventLoop = self.proxyClient.eventLoopGroup.next()
        let collector = ProxyResponseCollector(eventLoop: eventLoop, limit: maximumResponseBytes) { limit in
            VaultError(.upstreamError, "Personio's answer exceeded \(limit) bytes")
        }
        return try await withTaskCancellationHandler {
            try await eventLoop.flatSubmit { () -> EventLoopFuture<ProxyResponse> in
                // Cancelled before this ran on the loop (`onCancel` ran first): nothing is sent.
                guard !collector.isFinished else { return collector.result.futureResult }
                var body: ProxyRequestBody?
                if let content = request.body, content.readableBytes > 0 {
                    body = ProxyRequestBody(eventLoop: eventLoop, declaredLength: content.readableBytes)
                }
                collector.exchange = self.startForward(
                    grant,
                    body: body,
                    on: eventLoop,
                    writer: collector,
                    timeout: timeout,
                    relayServerErrors: true
                )
                if let body, let content = request.body {
                    body.append(content)
                    body.finish()
                }
                return collector.result.futureResult
            }.get()
        } onCancel: {
            let connection = grant.connection
            eventLoop.execute {
                collector.cancel(failure: Self.vaultError(ProxyExchange.cancelled, connection: connection))
            }
        }
    }

    /// Forgets `token` if it is still cached (in the slot that holds it; other scopes' tokens stay) and old enough
    /// (see `proxy(_:request:for:timeout:)`).
    func dropRejectedToken(_ id: String, token: String) {
        let now = self.clock.now
        let dropped = self.withEntries { entries, _ -> Bool in
            guard let entry = entries[id],
                let slot = entry.slots.first(where: { $0.state.tokenRejected(accessToken: token, now: now) })
            else { return false }
            slot.prepared = nil
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
        case .invalidResponse:
            // Bytes that are not an answer the vault can frame: nothing of them is relayed.
            return VaultError(.upstreamError, "Personio's answer for '\(id)' was not relayed: \(error.message)")
        default:
            return VaultError(
                .upstreamRejected,
                "the request for '\(id)' could not be sent to Personio: \(error.message)"
            )
        }
    }
}

extension TokenBroker.Entry {
    /// The grant for a proxied request from this entry's cached token of `rule`'s scope (at least 60 s left), or nil
    /// when there is none or the connection is a recruiting one (its key is decrypted per request). The caller is
    /// authorized already.
    func cachedForwardGrant(
        caller: Caller,
        rule: MatchedRule,
        head: PersonioProxy.CheckedHead,
        now: ContinuousClock.Instant
    ) throws(VaultError) -> TokenBroker.ForwardGrant? {
        let slot = self.slot(for: rule)
        guard self.snapshot.provider.isTokenExportable, slot.prepared != nil, let token = slot.token,
            token.revision == self.snapshot.revision,
            token.expiresAt - now >= .seconds(TokenBroker.proxyMinimumTTL)
        else { return nil }
        let destination: ProxyDestination
        if let cached = slot.proxyDestination, cached.revision == token.revision,
            cached.accessToken == token.accessToken
        {
            destination = cached.destination
        } else {
            do {
                destination = try ProxyDestination(
                    baseURL: self.snapshot.settings.effectiveAPIBaseURL,
                    authorization: .bearer(token.accessToken),
                    appID: self.snapshot.settings.appID,
                    partnerID: self.snapshot.settings.partnerID
                )
            } catch {
                throw TokenBroker.vaultError(error, connection: self.snapshot.id)
            }
            slot.proxyDestination = (token.accessToken, token.revision, destination)
        }
        return TokenBroker.ForwardGrant(
            connection: self.snapshot.id,
            destination: destination,
            bodyLimit: TokenBroker.proxyBodyLimit(self.snapshot.settings),
            head: head,
            accessToken: token.accessToken,
            caller: caller,
            rule: rule,
            recruiting: false
        )
    }
}

/// Between the proxy and the route's writer: counts the answer, drops a rejected token, turns Personio's 5xx and
/// transport failures into the vault's errors. On the exchange's event loop only.
final class ForwardSink: ProxyResponseSink {
    private let broker: TokenBroker
    private let grant: TokenBroker.ForwardGrant
    private let writer: any TokenBroker.ResponseWriter
    private let relayServerErrors: Bool
    private var headSeen = false
    /// A 5xx answered with a problem: the rest of Personio's answer is read and dropped.
    private var discarding = false
    /// The caller's slot, held until the answer has ended or failed.
    private var ticket: ProxyAdmission.Ticket?

    init(
        broker: TokenBroker,
        grant: TokenBroker.ForwardGrant,
        writer: any TokenBroker.ResponseWriter,
        relayServerErrors: Bool,
        ticket: consuming ProxyAdmission.Ticket
    ) {
        self.broker = broker
        self.grant = grant
        self.writer = writer
        self.relayServerErrors = relayServerErrors
        self.ticket = consume ticket
    }

    private func releaseTicket() {
        self.ticket?.release()
        self.ticket = nil
    }

    func proxyHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        self.headSeen = true
        self.broker.metrics.proxied(status: status)
        if status == 401, let token = self.grant.accessToken {
            self.broker.dropRejectedToken(self.grant.connection, token: token)
        }
        if status >= 500, !self.relayServerErrors {
            self.discarding = true
            let retryAfter = headers.first { $0.0.lowercased() == "retry-after" }.flatMap { Int($0.1) }
            if status == 503 {
                self.writer.forwardedFailed(
                    VaultError(.upstreamUnavailable, "Personio is unavailable (HTTP 503)", retryAfter: retryAfter ?? 5)
                )
            } else {
                self.writer.forwardedFailed(
                    VaultError(.upstreamError, "Personio failed to answer the proxied request (HTTP \(status))")
                )
            }
            return self.broker.proxyClient.eventLoopGroup.any().makeSucceededVoidFuture()
        }
        return self.writer.forwardedHead(status: status, headers: headers)
    }

    func proxyBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        if self.discarding { return self.broker.proxyClient.eventLoopGroup.any().makeSucceededVoidFuture() }
        return self.writer.forwardedBody(buffer)
    }

    func proxyEnd() {
        self.releaseTicket()
        if !self.discarding { self.writer.forwardedEnd() }
    }

    func proxyFlush() {
        if !self.discarding { self.writer.forwardedFlush() }
    }

    /// The proxy overwrote an echo of the injected credential in the answer: recorded once per answer.
    func proxyCredentialEchoed() {
        let (vault, logger, id) = (self.broker.vault, self.broker.logger, self.grant.connection)
        let (actor, kind) = (self.grant.actor, self.grant.destination.credentialKind)
        logger.warning(
            "Personio's answer to a proxied request echoed the injected credential; overwritten with '*'",
            metadata: ["connection.id": "\(id)"]
        )
        Task {
            do {
                try await vault.recordCredentialEcho(id, by: actor, kind: kind)
            } catch {
                logger.error(
                    "cannot audit a credential echo",
                    metadata: ["connection.id": "\(id)", "error": "\(error)"]
                )
            }
        }
    }

    func proxyFailed(_ error: PersonioAuthError) {
        self.releaseTicket()
        guard !self.discarding else { return }
        if !self.headSeen {
            self.broker.metrics.proxied(status: nil)
            self.broker.logger.debug(
                "proxied request failed",
                metadata: ["connection.id": "\(self.grant.connection)", "error.code": "\(error.code)"]
            )
        }
        self.writer.forwardedFailed(TokenBroker.vaultError(error, connection: self.grant.connection))
    }
}

/// The broker's writer for ``TokenBroker/proxy(_:request:for:timeout:maximumResponseBytes:)``: the proxy's collector.
extension ProxyResponseCollector: TokenBroker.ResponseWriter {
    public func forwardedHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        self.proxyHead(status: status, headers: headers)
    }

    public func forwardedBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        self.proxyBody(buffer)
    }

    public func forwardedEnd() {
        self.proxyEnd()
    }

    public func forwardedFailed(_ error: VaultError) {
        self.fail(error)
    }

    public func forwardedFlush() {}
}
