import AsyncHTTPClient
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
}

/// One proxied request in flight: cancel it when the caller goes away.
///
/// Bound to the event loop it was started on.
public final class ProxyExchange: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private var task: HTTPClient.Task<Void>?
    private var cancelled = false

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    fileprivate func started(_ task: HTTPClient.Task<Void>) {
        self.task = task
        if self.cancelled { task.cancel() }
    }

    /// Cancels the upstream request: its connection to Personio is closed, and the sink gets ``ProxyResponseSink/proxyFailed(_:)``
    /// unless the answer was already complete.
    public func cancel() {
        self.eventLoop.assertInEventLoop()
        self.cancelled = true
        self.task?.cancel()
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

    /// Checks what the caller alone decides: method, path, query, headers. Calling this before the credential is
    /// looked up lets the server answer 405 or 400 without touching it.
    ///
    /// - Throws: ``ProxyRequestError``.
    public static func validate(_ head: RequestHead) throws(ProxyRequestError) {
        _ = try Self.checked(head)
    }

    static func checked(_ head: RequestHead) throws(ProxyRequestError) -> (HTTPMethod, String, [(String, String)]) {
        guard Self.allowedMethods.contains(head.method) else {
            throw ProxyRequestError(.methodNotAllowed, "the method must be one of GET, POST, PUT, PATCH or DELETE")
        }
        let query = head.query.flatMap { $0.isEmpty ? nil : $0 }
        let path = try Self.validatedPath(head.path, query: query).get()
        let headers = try Self.forwardedRequestHeaders(head.headers)
        return (HTTPMethod(rawValue: head.method), path, headers)
    }

    /// Starts forwarding a caller's request to `destination` on `eventLoop`, the caller's connection's loop, where
    /// everything about it then happens: no task, no hop. Personio's answer goes to `sink` as it streams in,
    /// whatever its status; the body, if any, is streamed to Personio as it arrives.
    ///
    /// The upstream request carries the re-encoded path and the caller's query under the destination's base, the
    /// caller headers ``forwardedRequestHeaders(_:)`` lets through, then the destination's identification and
    /// credential headers. `timeout` bounds everything up to Personio's response head; the HTTP client's read
    /// time-out bounds each silence after it. Redirects are never followed: a 3xx is an answer like any other.
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
        eventLoop.assertInEventLoop()
        let (method, path, callerHeaders): (HTTPMethod, String, [(String, String)])
        do {
            (method, path, callerHeaders) = try Self.checked(head)
        } catch {
            throw PersonioAuthError(.invalidRequest, error.message)
        }
        guard let (client, preference) = self.client(for: eventLoop) else {
            throw PersonioAuthError(.invalidRequest, "the proxy has no HTTP client on this event loop")
        }
        let query = head.query.flatMap { $0.isEmpty ? nil : "?" + Self.forwardedQuery($0) } ?? ""
        var headers = HTTPHeaders(callerHeaders)
        headers.add(contentsOf: destination.headers)
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(
                url: destination.base + path + query,
                method: method,
                headers: headers,
                body: body?.httpClientBody
            )
        } catch {
            throw PersonioAuthClient.transportFailure(error, timeout: timeout, redactor: destination.redactor)
        }
        let exchange = ProxyExchange(eventLoop: eventLoop)
        let delegate = ProxyResponseDelegate(
            eventLoop: eventLoop,
            sink: sink,
            destination: destination,
            timeout: timeout,
            report: CredentialEchoReport(onCredentialEcho)
        )
        // AsyncHTTPClient gets no logger: what it logs is not ours to vouch for.
        let task = client.execute(request: request, delegate: delegate, eventLoop: preference)
        exchange.started(task)
        delegate.armTimeout(task)
        return exchange
    }

    /// A failure while the body streams (Personio fell silent for the read time-out, closed the connection, the
    /// request was cancelled), sanitized like every other.
    static func streamFailure(_ error: any Error, redactor: Redactor) -> PersonioAuthError {
        if let error = error as? HTTPClientError, error == .readTimeout {
            return PersonioAuthError(.unavailable, "Personio stopped sending its answer halfway")
        }
        if let error = error as? HTTPClientError, error == .remoteConnectionClosed {
            return PersonioAuthError(.unavailable, "Personio closed the connection before the end of its answer")
        }
        return PersonioAuthClient.transportFailure(
            error,
            timeout: PersonioAuthClient.defaultReadTimeout,
            redactor: redactor
        )
    }
}

/// Turns AsyncHTTPClient's callbacks into the sink's, scrubbing the injected credential out of headers and body.
///
/// Every callback runs on the exchange's event loop (the delegate's event loop preference); the state is touched
/// nowhere else.
final class ProxyResponseDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void

    private let eventLoop: any EventLoop
    private let sink: any ProxyResponseSink
    private let scrubber: CredentialScrubber
    private let redactor: Redactor
    private let timeout: Duration
    private let report: CredentialEchoReport
    private var headTimer: Scheduled<Void>?
    private var timedOut = false
    private var headReceived = false
    private var visited = 0
    private var ended = false
    /// The body's scrubbing, across pieces.
    private var stream: ScrubbingStream

    init(
        eventLoop: any EventLoop,
        sink: any ProxyResponseSink,
        destination: ProxyDestination,
        timeout: Duration,
        report: CredentialEchoReport
    ) {
        self.eventLoop = eventLoop
        self.sink = sink
        self.scrubber = destination.scrubber
        self.stream = ScrubbingStream(destination.scrubber)
        self.redactor = destination.redactor
        self.timeout = timeout
        self.report = report
    }

    /// Bounds the wait for the response head (AsyncHTTPClient's own deadline would also cut a long body).
    func armTimeout(_ task: HTTPClient.Task<Void>) {
        guard !self.headReceived, !self.ended else { return }
        self.headTimer = self.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(self.timeout)) {
            self.headTimer = nil
            guard !self.headReceived, !self.ended else { return }
            self.timedOut = true
            task.cancel()
        }
    }

    func didVisitURL(task: HTTPClient.Task<Void>, _ request: HTTPClient.Request, _ head: HTTPResponseHead) {
        self.visited += 1
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.headReceived = true
        self.headTimer?.cancel()
        self.headTimer = nil
        guard self.visited <= 1 else {
            // A redirect that the HTTP client followed all the same: the credential went to wherever it pointed.
            task.cancel()
            self.fail(
                PersonioAuthError(
                    .invalidResponse,
                    "Personio's answer was a redirect that the HTTP client followed; configure it not to",
                    httpStatus: Int(head.status.code)
                )
            )
            return self.eventLoop.makeSucceededVoidFuture()
        }
        let (headers, echoed) = PersonioProxy.returnedResponseHeaders(
            head.headers,
            redactor: self.redactor,
            scrubber: self.scrubber
        )
        if echoed { self.reportEcho() }
        return self.sink.proxyHead(status: Int(head.status.code), headers: headers)
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard !self.ended else { return self.eventLoop.makeSucceededVoidFuture() }
        let (piece, echoed) = self.stream.pass(buffer)
        if echoed { self.reportEcho() }
        guard let piece else { return self.eventLoop.makeSucceededVoidFuture() }
        return self.sink.proxyBody(piece)
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        guard !self.ended else { return }
        self.ended = true
        if let rest = self.stream.finish() {
            _ = self.sink.proxyBody(rest)
        }
        self.sink.proxyEnd()
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        self.headTimer?.cancel()
        self.headTimer = nil
        let failure: PersonioAuthError
        if self.timedOut {
            failure = PersonioAuthError(.unavailable, "Personio did not answer within \(self.timeout)")
        } else if self.headReceived {
            failure = PersonioProxy.streamFailure(error, redactor: self.redactor)
        } else {
            failure = PersonioAuthClient.transportFailure(error, timeout: self.timeout, redactor: self.redactor)
        }
        self.fail(failure)
    }

    private func fail(_ error: PersonioAuthError) {
        guard !self.ended else { return }
        self.ended = true
        _ = self.stream.finish()
        self.sink.proxyFailed(error)
    }

    private func reportEcho() {
        let report = self.report
        Task { await report.report() }
    }
}
