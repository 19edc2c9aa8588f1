import Logging
import NIOCore
import NIOHTTP1
import PersonioClient
import TokenBroker
import VaultCore

/// One request of a route that streams (the proxy), from its head to the end of its answer: the caller's body flows
/// into ``requestBody`` as it is read (reading pauses while Personio is slower than the caller), and the answer is
/// written to the caller as it arrives (Personio is read no faster than the caller reads).
///
/// Created by ``HTTPConnectionHandler`` when the head arrives and bound to the connection's event loop: the route
/// calls it there, or hops there first (`eventLoop.execute`).
public final class ForwardingExchange: TokenBroker.ResponseWriter, @unchecked Sendable {
    public let eventLoop: any EventLoop
    /// The caller's body as it arrives; nil when the request has none.
    public let requestBody: ProxyRequestBody?

    private let handler: HTTPConnectionHandler
    private let context: ChannelHandlerContext
    private let head: HTTPRequestHead
    private let resolution: RequestDispatcher.Resolution
    private let start: ContinuousClock.Instant?
    /// The route's limit on the body, once it is known (before: none, while reading pauses at the high-water mark).
    private var bodyLimit: Int?
    private var received = 0
    private var requestComplete = false
    private var upstream: ProxyExchange?
    private var phase = Phase.waiting

    private enum Phase {
        /// No answer written yet.
        case waiting
        /// The head is written; the body streams.
        case streaming(keepAlive: Bool)
        /// The answer is complete, failed, or the caller went away.
        case done
    }

    init(
        handler: HTTPConnectionHandler,
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        resolution: RequestDispatcher.Resolution,
        start: ContinuousClock.Instant?
    ) {
        self.eventLoop = context.eventLoop
        self.handler = handler
        self.context = context
        self.head = head
        self.resolution = resolution
        self.start = start
        let declared = head.headers.first(name: "Content-Length").flatMap { Int($0) }
        let hasBody = declared.map { $0 > 0 } ?? head.headers.contains(name: "Transfer-Encoding")
        self.requestBody = hasBody ? ProxyRequestBody(eventLoop: context.eventLoop, declaredLength: declared) : nil
        self.requestBody?.demand = { [weak handler] more in
            handler?.setReading(more, context: context)
        }
    }

    // MARK: - The route's side

    /// The route allows the request with a body of at most `limit` bytes: false when the declared length or what
    /// arrived already is over it (the caller has 413), or the caller is gone.
    public func allowBody(upTo limit: Int) -> Bool {
        self.eventLoop.assertInEventLoop()
        // The caller may have gone while the grant was being made.
        guard case .waiting = self.phase else { return false }
        self.bodyLimit = limit
        let declared = self.requestBody?.declaredLength ?? 0
        guard declared <= limit, self.received <= limit else {
            self.refuseBody()
            return false
        }
        return true
    }

    /// The upstream exchange carrying this request: cancelled when the caller goes away.
    public func attach(_ exchange: ProxyExchange?) {
        self.eventLoop.assertInEventLoop()
        guard case .done = self.phase else {
            self.upstream = exchange
            return
        }
        exchange?.cancel()
    }

    /// Answers with the problem `error` maps to (or cuts the answer, if its head is out).
    public func fail(_ error: any Error) {
        self.eventLoop.assertInEventLoop()
        switch self.phase {
        case .waiting:
            self.phase = .done
            self.upstream = nil
            self.requestBody?.abandon(ProxyRequestBody.Abandoned("the request was refused"))
            let response = ErrorResponse.response(
                for: error,
                requestID: self.resolution.requestID.description,
                logger: self.logger
            )
            self.handler.finishForwarding(
                self,
                response: response,
                head: self.head,
                resolution: self.resolution,
                start: self.start,
                // A request without a body is complete with its head: its end follows, and the connection can stay.
                requestComplete: self.requestComplete || self.requestBody == nil,
                context: self.context
            )
        case .streaming:
            self.cut()
        case .done:
            break
        }
    }

    // MARK: - TokenBroker.ResponseWriter

    public func forwardedHead(status: Int, headers: [(String, String)]) -> EventLoopFuture<Void> {
        guard case .waiting = self.phase else { return self.eventLoop.makeSucceededVoidFuture() }
        // Written as bytes as they are: a relayed `Cache-Control` becomes `no-store` there.
        let keepAlive = self.handler.startForwardedResponse(
            status: HTTPResponseStatus(statusCode: status),
            headers: headers,
            head: self.head,
            resolution: self.resolution,
            start: self.start,
            context: self.context
        )
        self.phase = .streaming(keepAlive: keepAlive)
        return self.eventLoop.makeSucceededVoidFuture()
    }

    public func forwardedBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard case .streaming = self.phase else { return self.eventLoop.makeSucceededVoidFuture() }
        return self.handler.writeForwardedBody(buffer, context: self.context)
    }

    public func forwardedFlush() {
        guard case .streaming = self.phase else { return }
        self.handler.flushForwarded(context: self.context)
    }

    public func forwardedEnd() {
        guard case .streaming(let keepAlive) = self.phase else { return }
        self.phase = .done
        self.upstream = nil
        self.handler.endForwardedResponse(
            keepAlive: keepAlive && self.requestComplete,
            context: self.context
        )
    }

    public func forwardedFailed(_ error: VaultError) {
        self.fail(error)
    }

    // MARK: - The connection's side

    /// A piece of the caller's body.
    func receiveBody(_ part: ByteBuffer) {
        self.received += part.readableBytes
        if let limit = self.bodyLimit, self.received > limit {
            self.refuseBody()
            return
        }
        self.requestBody?.append(part)
    }

    /// The caller's request is complete.
    func receiveEnd() {
        self.requestComplete = true
        self.requestBody?.finish()
    }

    /// The caller went away (or the connection failed): the upstream request is cancelled.
    func callerGone() {
        if case .done = self.phase, self.upstream == nil { return }
        self.phase = .done
        self.requestBody?.abandon(ProxyRequestBody.Abandoned("the caller went away"))
        self.upstream?.cancel()
        self.upstream = nil
    }

    private func refuseBody() {
        let limit = self.bodyLimit ?? 0
        let upstream = self.upstream
        // The answer first: abandoning the body fails the upstream request, whose failure must not answer instead.
        self.fail(HTTPError(.payloadTooLarge, "proxied request bodies are limited to \(limit) bytes"))
        upstream?.cancel()
    }

    /// Ends an answer whose head is out: closing the connection is the only way left to say it is incomplete.
    private func cut() {
        self.phase = .done
        self.requestBody?.abandon(ProxyRequestBody.Abandoned("the answer failed"))
        self.upstream?.cancel()
        self.upstream = nil
        self.handler.cutForwardedResponse(context: self.context)
    }

    private var logger: Logger {
        RequestDispatcher.requestLogger(
            self.handler.connectionLogger,
            requestID: self.resolution.requestID,
            connectionID: self.resolution.connectionID
        )
    }
}
