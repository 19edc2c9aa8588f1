import Logging
import NIOCore
import NIOHTTP1

/// Receives Personio's answer to a proxied request, on the event loop the exchange runs on, in order: ``proxyHead``
/// once, then ``proxyBody`` zero or more times (the next only after the future the previous one returned has
/// completed: that is the back-pressure from the caller's socket to Personio's), then ``proxyEnd``; or
/// ``proxyFailed`` at any point, after which nothing more arrives.
public protocol ProxyResponseSink: AnyObject {
    /// Personio's status and the headers passed back (see ``PersonioProxy/returnedResponseHeaders``).
    func proxyHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void>
    /// A piece of the body, already scrubbed of the injected credential.
    func proxyBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void>
    /// The answer is complete.
    func proxyEnd()
    /// The exchange failed: Personio could not be reached, did not answer in time, stopped halfway, or the
    /// exchange was cancelled. Sanitized: no message contains the credential.
    func proxyFailed(_ error: PersonioAuthError)
    /// What one read from Personio brought has been passed on: a writer flushes it now, in one write for the head
    /// and body pieces of that read (an answer's end flushes by itself).
    func proxyFlush()
    /// The injected credential was found in the answer (and overwritten): called once per answer, at the first.
    func proxyCredentialEchoed()
}

extension ProxyResponseSink {
    /// Nothing to flush: a sink that collects.
    public func proxyFlush() {}
    /// Nothing to report: the exchange's own handler, if any, is told.
    public func proxyCredentialEchoed() {}
}

/// One proxied request in flight, from the moment it waits for a connection to Personio to the end (or failure) of
/// the answer: it sends the request head and streams the body on the connection it gets, scrubs the injected
/// credential out of the answer and passes it to the sink. Cancel it when the caller goes away.
///
/// Bound to the event loop it was started on.
public final class ProxyExchange: @unchecked Sendable {
    private enum State {
        /// Waiting for a connection (being made, or the next to be free).
        case waiting
        case active(UpstreamConnection)
        /// The answer ended, failed, or the exchange was cancelled.
        case done
    }

    let eventLoop: any EventLoop
    /// When the answer's head must have arrived.
    let headDeadline: NIODeadline
    private let head: UpstreamRequestHead
    private let body: ProxyRequestBody?
    private let sink: any ProxyResponseSink
    private let scrubber: CredentialScrubber
    private let redactor: Redactor
    private let timeout: Duration
    /// Called at the first echo of the credential in the answer, if at all.
    private let onCredentialEcho: (@Sendable () async -> Void)?
    private var echoReported = false
    /// The body's scrubbing, across pieces.
    private var stream: ScrubbingStream
    private var state = State.waiting
    private var retried = false

    init(
        eventLoop: any EventLoop,
        head: UpstreamRequestHead,
        body: ProxyRequestBody?,
        destination: ProxyDestination,
        timeout: Duration,
        sink: any ProxyResponseSink,
        onCredentialEcho: (@Sendable () async -> Void)?
    ) {
        self.eventLoop = eventLoop
        self.headDeadline = .now() + TimeAmount(timeout)
        self.head = head
        self.body = body
        self.sink = sink
        self.scrubber = destination.scrubber
        self.stream = ScrubbingStream(destination.scrubber)
        self.redactor = destination.redactor
        self.timeout = timeout
        self.onCredentialEcho = onCredentialEcho
    }

    /// Cancels the upstream request: its connection to Personio is closed, and the sink gets
    /// ``ProxyResponseSink/proxyFailed(_:)`` unless the answer was already complete.
    public func cancel() {
        self.eventLoop.assertInEventLoop()
        if case .active(let connection) = self.state { connection.abandon(self) }
        self.upstreamFailed(.cancelled)
    }

    // MARK: - The connection's side

    var isWaitingForConnection: Bool {
        if case .waiting = self.state { return true }
        return false
    }

    /// The exchange got `connection`: the head goes out, then the body as it arrives.
    func started(on connection: UpstreamConnection) {
        self.state = .active(connection)
        connection.sendHead(self.head)
        guard let body = self.body else { return }
        body.start(connection).assumeIsolated().whenComplete { result in
            guard case .active(let current) = self.state, current === connection else { return }
            switch result {
            case .success:
                connection.endRequest()
            case .failure(let error):
                // The caller's body will not be complete (over its limit, the caller gone) or could not be sent: the
                // connection is mid-request and cannot be reused.
                connection.abandon(self)
                self.fail(
                    PersonioAuthError(
                        .unavailable,
                        error is ProxyRequestBody.Abandoned
                            ? "the request to Personio was cancelled"
                            : "Personio closed the connection while the request was sent"
                    )
                )
            }
        }
    }

    /// Whether the exchange may be sent again on another connection, after a kept-alive one closed before any
    /// answer: once, and only for a request without a body whose method is idempotent (RFC 9110 §9.2.2).
    func retryOnFreshConnection() -> Bool {
        guard !self.retried, self.body == nil, case .active = self.state else { return false }
        switch self.head.method {
        case .GET, .PUT, .DELETE: break
        default: return false
        }
        self.retried = true
        self.state = .waiting
        return true
    }

    func upstreamHead(_ head: UpstreamResponseParser.Head) -> EventLoopFuture<Void> {
        guard case .active = self.state else { return self.eventLoop.makeSucceededVoidFuture() }
        let (headers, echoed) = PersonioProxy.returnedResponseHeaders(
            head,
            redactor: self.redactor,
            scrubber: self.scrubber
        )
        if echoed { self.reportEcho() }
        return self.sink.proxyHead(status: head.status, headers: headers)
    }

    func upstreamBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard case .active = self.state else { return self.eventLoop.makeSucceededVoidFuture() }
        let (piece, echoed) = self.stream.pass(buffer)
        if echoed { self.reportEcho() }
        guard let piece else { return self.eventLoop.makeSucceededVoidFuture() }
        return self.sink.proxyBody(piece)
    }

    /// A read from Personio has been passed on.
    func upstreamReadComplete() {
        guard case .active = self.state else { return }
        self.sink.proxyFlush()
    }

    func upstreamEnd() {
        guard case .active = self.state else { return }
        self.state = .done
        // Personio may answer before the whole body was sent (a 413, a 401): the rest is not sent.
        self.body?.abandon(ProxyRequestBody.Abandoned("Personio answered before the end of the request"))
        if let rest = self.stream.finish() {
            _ = self.sink.proxyBody(rest)
        }
        self.sink.proxyEnd()
    }

    func upstreamFailed(_ error: UpstreamError) {
        guard !self.isDone else { return }
        self.fail(self.sanitized(error))
    }

    private var isDone: Bool {
        if case .done = self.state { return true }
        return false
    }

    private func fail(_ error: PersonioAuthError) {
        guard !self.isDone else { return }
        self.state = .done
        self.body?.abandon(ProxyRequestBody.Abandoned("the request to Personio failed"))
        _ = self.stream.finish()
        self.sink.proxyFailed(error)
    }

    /// The failure as the caller may read it: no message contains the credential.
    private func sanitized(_ error: UpstreamError) -> PersonioAuthError {
        switch error {
        case .headTimeout:
            return PersonioAuthError(.unavailable, "Personio did not answer within \(self.timeout)")
        case .readTimeout:
            return PersonioAuthError(.unavailable, "Personio stopped sending its answer halfway")
        case .callerStalled:
            return PersonioAuthError(.unavailable, "the caller stopped reading the answer")
        case .closedMidAnswer(.some(let cause as UpstreamResponseParser.Failure)),
            .closedBeforeHead(.some(let cause as UpstreamResponseParser.Failure)):
            return PersonioAuthError(.invalidResponse, cause.description)
        case .closedMidAnswer:
            return PersonioAuthError(.unavailable, "Personio closed the connection before the end of its answer")
        case .closedBeforeHead(let cause):
            guard let cause, !(cause is IOError) else {
                return PersonioAuthError(.unavailable, "Personio closed the connection without an answer")
            }
            // A TLS failure (certificate, handshake) or an answer that is not HTTP.
            return Self.unreachable(cause, redactor: self.redactor)
        case .connectFailed(let cause):
            if let cause = cause as? ChannelError, case .connectTimeout = cause {
                return PersonioAuthError(.unavailable, "connecting to Personio timed out")
            }
            return Self.unreachable(cause, redactor: self.redactor)
        case .cancelled:
            return Self.cancelled
        case .shutDown:
            return PersonioAuthError(.unavailable, "the proxy is shutting down")
        }
    }

    /// How a cancelled exchange fails.
    public static let cancelled = PersonioAuthError(.unavailable, "the request to Personio was cancelled")

    private static func unreachable(_ cause: any Error, redactor: Redactor) -> PersonioAuthError {
        let detail = redactor.sanitize("\(type(of: cause)): \(cause)", limit: 150)
        return PersonioAuthError(.unavailable, "could not reach Personio: \(detail)")
    }

    /// Reports the first echo of an answer, to the sink and to the caller's handler (on the event loop: no lock).
    private func reportEcho() {
        guard !self.echoReported else { return }
        self.echoReported = true
        self.sink.proxyCredentialEchoed()
        if let onCredentialEcho = self.onCredentialEcho { Task { await onCredentialEcho() } }
    }
}

extension PersonioProxy {
    /// The request line and headers of a caller's request to forward; the body, if any, comes as a
    /// ``ProxyRequestBody``.
    public struct RequestHead: Sendable {
        public var method: String
        /// The path under the API base, starting with `/`; checked and re-encoded before it is sent.
        public var path: String
        /// The raw query string without `?`; nil or empty for none.
        public var query: String?
        public var headers: [(String, String)]

        public init(method: String, path: String, query: String?, headers: [(String, String)]) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
        }
    }

    /// A request head that passed the checks, as it goes upstream: made once per request by ``check(_:)`` and
    /// handed to ``start(checked:body:to:on:timeout:sink:onCredentialEcho:)``, so that nothing is checked twice.
    public struct CheckedHead: Sendable {
        let method: HTTPMethod
        /// The re-encoded path under the API base.
        let path: String
        /// `?` and the query as it goes upstream, or empty.
        let query: String
        /// The caller headers ``forwardedRequestHeaders(_:)`` passes on.
        let headers: [(String, String)]
        /// The caller's method, as sent.
        public let callerMethod: String
        /// The caller's path, as sent (the allow-lists match its normalized form).
        public let callerPath: String
    }

    /// Checks what the caller alone decides: method, path, query, headers. Calling this before the credential is
    /// looked up lets the server answer 405 or 400 without touching it.
    ///
    /// - Throws: ``ProxyRequestError``.
    public static func validate(_ head: RequestHead) throws(ProxyRequestError) {
        _ = try Self.check(head)
    }

    /// ``validate(_:)``, keeping what it worked out.
    ///
    /// - Throws: ``ProxyRequestError``.
    public static func check(_ head: RequestHead) throws(ProxyRequestError) -> CheckedHead {
        guard Self.allowedMethods.contains(head.method) else {
            throw ProxyRequestError(.methodNotAllowed, "the method must be one of GET, POST, PUT, PATCH or DELETE")
        }
        let query = head.query.flatMap { $0.isEmpty ? nil : $0 }
        let path = try Self.validatedPath(head.path, query: query).get()
        let headers = try Self.forwardedRequestHeaders(head.headers)
        return CheckedHead(
            method: HTTPMethod(rawValue: head.method),
            path: path,
            query: query.map { "?" + Self.forwardedQuery($0) } ?? "",
            headers: headers,
            callerMethod: head.method,
            callerPath: head.path
        )
    }

    static func checked(_ head: RequestHead) throws(ProxyRequestError) -> (HTTPMethod, String, [(String, String)]) {
        let checked = try Self.check(head)
        return (checked.method, checked.path, checked.headers)
    }

    /// Starts forwarding a caller's request to `destination` on `eventLoop`, the caller's connection's loop, where
    /// everything about it then happens: no task, no hop. Personio's answer goes to `sink` as it streams in,
    /// whatever its status; the body, if any, is streamed to Personio as it arrives.
    ///
    /// The upstream request carries the re-encoded path and the caller's query under the destination's base, the
    /// caller headers ``forwardedRequestHeaders(_:)`` lets through, then the destination's identification and
    /// credential headers, framed by the vault (`Content-Length` when the caller declared one, else chunked).
    /// `timeout` bounds everything up to Personio's response head (waiting for a connection, connecting, sending);
    /// the read time-out of ``UpstreamConfiguration`` bounds each silence after it. Redirects are never followed: a
    /// 3xx is an answer like any other.
    ///
    /// - Parameters:
    ///   - head: The caller's request line and headers.
    ///   - body: The caller's body, or nil for none.
    ///   - destination: Base URL and credential.
    ///   - eventLoop: The loop to run on, one of ``eventLoopGroup``'s: the sink is called there.
    ///   - timeout: The limit up to the response head.
    ///   - sink: Receives the answer.
    ///   - onCredentialEcho: Called at most once, when the credential is found (and overwritten) in the answer.
    /// - Returns: The exchange, to cancel it.
    /// - Throws: ``PersonioAuthError`` `.invalidRequest` when the request fails the checks of ``validate(_:)``:
    ///   nothing was sent.
    public func start(
        _ head: RequestHead,
        body: ProxyRequestBody?,
        to destination: ProxyDestination,
        on eventLoop: any EventLoop,
        timeout: Duration = PersonioProxy.defaultTimeout,
        sink: any ProxyResponseSink,
        onCredentialEcho: (@Sendable () async -> Void)? = nil
    ) throws(PersonioAuthError) -> ProxyExchange {
        let checked: CheckedHead
        do {
            checked = try Self.check(head)
        } catch {
            throw PersonioAuthError(.invalidRequest, error.message)
        }
        return try self.start(
            checked: checked,
            body: body,
            to: destination,
            on: eventLoop,
            timeout: timeout,
            sink: sink,
            onCredentialEcho: onCredentialEcho
        )
    }

    /// ``start(_:body:to:on:timeout:sink:onCredentialEcho:)`` for a head ``check(_:)`` already checked.
    ///
    /// - Throws: ``PersonioAuthError`` `.invalidRequest` when `eventLoop` is not one of the proxy's: nothing was sent.
    public func start(
        checked head: CheckedHead,
        body: ProxyRequestBody?,
        to destination: ProxyDestination,
        on eventLoop: any EventLoop,
        timeout: Duration = PersonioProxy.defaultTimeout,
        sink: any ProxyResponseSink,
        onCredentialEcho: (@Sendable () async -> Void)? = nil
    ) throws(PersonioAuthError) -> ProxyExchange {
        eventLoop.assertInEventLoop()
        let (method, path, callerHeaders) = (head.method, head.path, head.headers)
        guard let client = self.client(for: eventLoop) else {
            throw PersonioAuthError(.invalidRequest, "the proxy has no upstream client on this event loop")
        }
        let exchange = ProxyExchange(
            eventLoop: eventLoop,
            // The framing is the vault's: the caller's own Content-Length and Transfer-Encoding never pass.
            head: UpstreamRequestHead(
                method: method,
                target: destination.pathPrefix + path + head.query,
                callerHeaders: callerHeaders,
                destination: destination,
                body: body.map { $0.declaredLength }
            ),
            body: body,
            destination: destination,
            timeout: timeout,
            sink: sink,
            onCredentialEcho: onCredentialEcho
        )
        client.execute(exchange, to: destination.origin)
        return exchange
    }
}
