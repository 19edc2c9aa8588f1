import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import VaultAPI
import VaultCore

/// The last handler of a connection's pipeline: collects each request's body (at most the dispatcher's limit), hands
/// the complete request to the ``RequestDispatcher`` and writes its response.
///
/// ``HTTPServerCodec`` sits in front of it, so it sees one request at a time, and keep-alive and pipelining
/// need no bookkeeping here. A request whose body is too large, or bytes that are not HTTP, get an answer and the
/// connection is closed: the rest of such a stream cannot be trusted to frame another request.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPAnswerPart

    private enum State {
        /// Between requests.
        case idle
        /// Reading a request; the body buffer is allocated at the first body part.
        case receiving(HTTPRequestHead, ByteBuffer?, ContinuousClock.Instant?)
        /// A request of a route that streams (the proxy): its body goes to the exchange as it arrives, the answer
        /// comes back through it.
        case forwarding(ForwardingExchange)
        /// The request is complete and its response is being prepared.
        case responding
        /// An answer went out before the request was complete; the rest is ignored and the connection closes.
        case closing
    }

    private let dispatcher: RequestDispatcher
    private let caller: Caller
    private let logger: Logger
    /// The connection's time-outs; nil in tests that drive the handler alone.
    private let deadlines: ConnectionDeadlines?
    private var state = State.idle
    /// The peer shut its writing side: answer what is in progress, then close.
    private var inputClosed = false
    /// The current request's route, resolved when its head arrived; kept apart from `state`, so that the state's
    /// payload stays small (it is copied on every body part and at the end of every request).
    private var resolution: RequestDispatcher.Resolution?
    /// The request counter of the last answer's route and status: a connection's requests mostly share both, and
    /// finding the counter by its labels costs two strings hashed per request.
    private var lastCounter: (route: String, status: UInt, counter: CoreMetrics.Counter)?
    /// The codec right in front of this handler, with its context, once ``HTTPServer/addHTTPHandlers(_:to:)``
    /// linked them: answer parts then reach it by a call, not through the pipeline (``HTTPServerCodec/link(_:context:)``).
    private var codec: (codec: HTTPServerCodec, context: ChannelHandlerContext)?

    init(dispatcher: RequestDispatcher, caller: Caller, logger: Logger, deadlines: ConnectionDeadlines? = nil) {
        self.dispatcher = dispatcher
        self.caller = caller
        self.logger = logger
        self.deadlines = deadlines
    }

    /// When a request began: read only when the debug log will print its duration.
    private var requestStart: ContinuousClock.Instant? {
        self.logger.logLevel <= .debug ? .now : nil
    }

    /// Writes answer parts to `codec`, which stands right in front of this handler in the same pipeline, by calling
    /// it with `context` (its own); see ``HTTPServerCodec/link(_:context:)``.
    func link(_ codec: HTTPServerCodec, context: ChannelHandlerContext) {
        self.codec = (codec, context)
    }

    func unlink() {
        self.codec = nil
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.codec?.codec.unlink()
        self.codec = nil
    }

    /// Writes an answer's part to the codec: by a call when linked, else through the pipeline.
    private func send(_ part: HTTPAnswerPart, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        if let codec = self.codec {
            codec.codec.write(part, context: codec.context, promise: promise)
        } else {
            context.write(self.wrapOutboundOut(part), promise: promise)
        }
    }

    private func sendAndFlush(_ part: HTTPAnswerPart, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext)
    {
        self.send(part, promise: promise, context: context)
        context.flush()
    }

    private func sendAndFlush(_ part: HTTPAnswerPart, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        let promise = context.eventLoop.makePromise(of: Void.self)
        self.sendAndFlush(part, promise: promise, context: context)
        return promise.futureResult
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.receive(self.unwrapInboundIn(data), context: context)
    }

    /// Takes a request's part: what a read through the pipeline hands on, called directly by the linked codec.
    func receive(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            self.receiveHead(head, context: context)
        case .body(let part):
            self.receiveBody(part, context: context)
        case .end:
            self.receiveEnd(context: context)
        }
    }

    private func receiveHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .idle = self.state else { return }
        self.deadlines?.headReceived()
        let start = self.requestStart
        let resolution = self.dispatcher.resolve(head: head, caller: self.caller)
        if let forward = resolution.forwardAction, case .success(let matched) = resolution.matched {
            // A route that streams its body has a limit of its own, checked as the body arrives.
            self.continueIfExpected(head, context: context)
            self.startForwarding(forward, matched, resolution, head: head, start: start, context: context)
            return
        }
        if let declared = head.headers.first(name: "Content-Length").flatMap({ Int($0) }),
            declared > self.dispatcher.bodyLimit
        {
            // Refused from the head alone: the body is never read into memory.
            self.refuse(Self.tooLarge(self.dispatcher.bodyLimit), version: head.version, start: start, context: context)
            return
        }
        self.continueIfExpected(head, context: context)
        self.resolution = resolution
        self.state = .receiving(head, nil, start)
    }

    private func continueIfExpected(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        if head.headers.first(name: "Expect")?.lowercased() == "100-continue" {
            let continueHead = HTTPResponseHead(version: head.version, status: .continue)
            self.sendAndFlush(.head(continueHead), promise: nil, context: context)
        }
    }

    /// Hands a streaming route its request at once; its body follows as it arrives.
    private func startForwarding(
        _ action: @Sendable (Request, ForwardingExchange) -> Void,
        _ matched: RequestDispatcher.Matched,
        _ resolution: RequestDispatcher.Resolution,
        head: HTTPRequestHead,
        start: ContinuousClock.Instant?,
        context: ChannelHandlerContext
    ) {
        let exchange = ForwardingExchange(
            handler: self,
            context: context,
            head: head,
            resolution: resolution,
            start: start
        )
        self.state = .forwarding(exchange)
        let request = self.dispatcher.request(
            matched,
            resolution,
            head: head,
            body: .empty,
            caller: self.caller,
            logger: self.logger
        )
        action(request, exchange)
    }

    private func receiveBody(_ part: ByteBuffer, context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            // A body that streams is bounded by progress, not in total: each piece restarts the body time-out.
            self.deadlines?.bodyProgressed()
            exchange.receiveBody(part)
            return
        }
        guard case .receiving(let head, var body, let start) = self.state else { return }
        // Leave no second reference to the buffer in `state` while writing, or every write would copy it.
        self.state = .responding
        let limit = self.dispatcher.bodyLimit
        if (body?.readableBytes ?? 0) + part.readableBytes > limit {
            if var body {
                body.withUnsafeMutableReadableBytes { zeroBytes($0) }
            }
            self.refuse(Self.tooLarge(limit), version: head.version, start: start, context: context)
            return
        }
        if body == nil {
            // Sized once for the whole body, so that it never grows: a reallocation would leave a copy of a secret in
            // freed memory.
            let declared = head.headers.first(name: "Content-Length").flatMap { Int($0) } ?? limit
            body = context.channel.allocator.buffer(capacity: min(max(declared, part.readableBytes), limit))
        }
        body!.writeImmutableBuffer(part)
        self.state = .receiving(head, body, start)
    }

    private func receiveEnd(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            self.deadlines?.requestReceived()
            exchange.receiveEnd()
            return
        }
        guard case .receiving(let head, let body, let start) = self.state, let resolution = self.resolution else {
            return
        }
        self.resolution = nil
        self.state = .responding
        self.deadlines?.requestReceived()
        let requestBody = body.map(RequestBody.init) ?? .empty
        let dispatch = self.dispatcher.dispatch(
            resolution,
            head: head,
            body: requestBody,
            caller: self.caller,
            logger: self.logger,
            on: context.eventLoop
        )
        switch dispatch.outcome {
        case .immediate(let response):
            self.write(response, for: head, dispatch: dispatch, start: start, context: context)
        case .deferred(let future):
            future.assumeIsolated().whenComplete { result in
                let response: Response
                switch result {
                case .success(let value): response = value
                case .failure(let error):
                    response = ErrorResponse.response(
                        for: error,
                        requestID: dispatch.requestID.description,
                        logger: dispatch.logger
                    )
                }
                self.write(response, for: head, dispatch: dispatch, start: start, context: context)
            }
        }
    }

    // MARK: - Events

    func channelInactive(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            self.state = .closing
            exchange.callerGone()
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            self.inputClosed = true
            if case .idle = self.state { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let failure = error as? HTTPRequestParser.Failure else {
            self.logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        switch self.state {
        case .forwarding(let exchange):
            self.state = .closing
            exchange.callerGone()
            context.close(promise: nil)
        case .idle, .receiving:
            // Not HTTP, or not HTTP this server speaks: say so once and hang up.
            // The reason names the rule broken, never the bytes.
            let error = HTTPError(.badRequest, failure.description)
            self.refuse(error, version: .http1_1, start: self.requestStart, context: context)
        case .responding, .closing:
            context.close(promise: nil)
        }
    }

    // MARK: - Writing

    /// Answers before the request is complete, then closes the connection.
    private func refuse(
        _ error: HTTPError,
        version: HTTPVersion,
        start: ContinuousClock.Instant?,
        context: ChannelHandlerContext
    ) {
        self.state = .closing
        let requestID = RequestID.next()
        let logger = RequestDispatcher.requestLogger(self.logger, requestID: requestID, connectionID: nil)
        let response = ErrorResponse.response(for: error, requestID: requestID.description, logger: logger)
        let head = HTTPRequestHead(version: version, method: .GET, uri: "/")
        let dispatch = RequestDispatcher.Dispatch(
            outcome: .immediate(response),
            requestID: requestID,
            route: "rejected",
            connectionLogger: self.logger
        )
        self.write(response, for: head, dispatch: dispatch, start: start, forceClose: true, context: context)
    }

    private func write(
        _ response: Response,
        for request: HTTPRequestHead,
        dispatch: RequestDispatcher.Dispatch,
        start: ContinuousClock.Instant?,
        forceClose: Bool = false,
        context: ChannelHandlerContext
    ) {
        // A streamed body is chunked, which HTTP/1.0 does not have: there the end of the connection ends the body.
        let streamable = response.bodyStream == nil || request.version == .http1_1
        let keepAlive = request.isKeepAlive && !self.inputClosed && !forceClose && streamable
        let head: HTTPResponseHead
        if let prepared = response.preparedHead, keepAlive, request.version == .http1_1 {
            head = prepared
        } else {
            head = Self.responseHead(
                response.status,
                headers: response.preparedHead?.headers ?? response.framedHeaders,
                for: request,
                keepAlive: keepAlive
            )
        }
        if let stream = response.bodyStream {
            self.sendAndFlush(.head(head), promise: nil, context: context)
            self.answered(response.status, route: dispatch.route, logger: dispatch.logger, start: start)
            self.streamBody(stream, keepAlive: keepAlive, context: context)
            return
        }
        // Set before writing: writing `.end` lets the pipeline handler deliver a pipelined request re-entrantly.
        if !keepAlive {
            self.state = .closing
        } else {
            switch self.state {
            case .responding, .forwarding: self.state = .idle
            case .idle, .receiving, .closing: break
            }
        }
        self.send(.head(head), promise: nil, context: context)
        if let body = response.body, body.readableBytes > 0 {
            self.send(.body(.byteBuffer(body)), promise: nil, context: context)
        }
        if keepAlive {
            self.deadlines?.responseFinished()
            self.sendAndFlush(.end, promise: nil, context: context)
        } else {
            self.sendAndFlush(.end, context: context).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
        self.answered(response.status, route: dispatch.route, logger: dispatch.logger, start: start)
    }

    /// Runs a streamed body's writer after its head went out: each piece is written and flushed, and the writer
    /// then waits until the socket took the piece before it (the back-pressure of a client that reads slowly: at
    /// most two pieces wait in the daemon, and the next is made while the last drains). The state stays
    /// `.responding` until the end is written, so a pipelined request waits; a writer that fails (the client gone, a
    /// read that failed halfway) closes the connection, the only way left to say the body is cut.
    private func streamBody(_ stream: @escaping ResponseBodyStream, keepAlive: Bool, context: ChannelHandlerContext) {
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: eventLoop)
        let previous = NIOLoopBoundBox<EventLoopFuture<Void>?>(nil, eventLoop: eventLoop)
        let writer = ResponseBodyWriter { buffer in
            try await eventLoop.flatSubmit {
                let before = previous.value ?? eventLoop.makeSucceededVoidFuture()
                previous.value = bound.value.writeAndFlush(NIOAny(HTTPAnswerPart.body(.byteBuffer(buffer))))
                return before
            }.get()
        }
        eventLoop.makeFutureWithTask { try await stream(writer) }.assumeIsolated().whenComplete { result in
            switch result {
            case .success where keepAlive && !self.inputClosed:
                if case .responding = self.state { self.state = .idle }
                self.deadlines?.responseFinished()
                self.sendAndFlush(.end, promise: nil, context: context)
            case .success:
                self.state = .closing
                self.sendAndFlush(.end, context: context).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            case .failure(let error):
                self.logger.debug(
                    "streamed response failed halfway; closing the connection",
                    metadata: ["error": "\(error)"]
                )
                self.state = .closing
                context.close(promise: nil)
            }
        }
    }

    /// Counts an answer and logs it at debug level.
    private func answered(
        _ status: HTTPResponseStatus,
        route: String,
        logger: @autoclosure () -> Logger,
        start: ContinuousClock.Instant?
    ) {
        if let last = self.lastCounter, last.status == status.code, last.route == route {
            last.counter.increment()
        } else {
            let counter = self.dispatcher.metrics.requestCounter(
                socket: self.dispatcher.socket,
                route: route,
                status: status.code
            )
            self.lastCounter = (route, status.code, counter)
            counter.increment()
        }
        guard self.logger.logLevel <= .debug else { return }
        var metadata: Logger.Metadata = ["http.route": "\(route)", "http.status": "\(status.code)"]
        if let start {
            metadata["http.duration_us"] = "\((ContinuousClock.now - start).inMicroseconds)"
        }
        // The request's logger is built only now: its metadata costs allocations on every request otherwise.
        logger().debug("request", metadata: metadata)
    }

    /// A response head for `request`: `headers` with `Connection` set as keep-alive requires.
    /// `headers` is consumed: edited in place when no one else holds it, not copied first.
    private static func responseHead(
        _ status: HTTPResponseStatus,
        headers: consuming HTTPHeaders,
        for request: HTTPRequestHead,
        keepAlive: Bool
    ) -> HTTPResponseHead {
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if request.version == .http1_0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let version: HTTPVersion = request.version == .http1_0 ? .http1_0 : .http1_1
        return HTTPResponseHead(version: version, status: status, headers: headers)
    }

    // MARK: - Forwarded answers (ForwardingExchange)

    var connectionLogger: Logger { self.logger }

    /// Pauses or resumes reading the caller's socket (the request body's back-pressure).
    func setReading(_ reading: Bool, context: ChannelHandlerContext) {
        context.eventLoop.assertInEventLoop()
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: reading)
        if reading { context.read() }
    }

    /// Writes a forwarded answer's head (``HTTPServerCodec/encodeForwardedHead(status:headers:http10:keepAlive:allocator:)``
    /// frames it); returns whether the connection stays open after it.
    func startForwardedResponse(
        status: HTTPResponseStatus,
        headers: [(String, String)],
        head request: HTTPRequestHead,
        resolution: RequestDispatcher.Resolution,
        start: ContinuousClock.Instant?,
        context: ChannelHandlerContext
    ) -> Bool {
        let encoded = HTTPServerCodec.encodeForwardedHead(
            status: status,
            headers: headers,
            http10: request.version == .http1_0,
            keepAlive: request.isKeepAlive && !self.inputClosed,
            allocator: context.channel.allocator
        )
        self.send(.encodedHead(encoded.bytes, chunked: encoded.chunked), promise: nil, context: context)
        self.answered(
            status,
            route: resolution.routeName,
            logger: RequestDispatcher.requestLogger(
                self.logger,
                requestID: resolution.requestID,
                connectionID: resolution.connectionID
            ),
            start: start
        )
        return encoded.keepAlive
    }

    /// Writes a piece of a forwarded body. The future completes at once while the socket takes more (the pieces of
    /// one read from Personio go out in one flush, ``flushForwarded(context:)``), and once the socket has drained
    /// otherwise: Personio is read no faster.
    func writeForwardedBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        guard context.channel.isWritable else {
            return self.sendAndFlush(.body(.byteBuffer(buffer)), context: context)
        }
        self.send(.body(.byteBuffer(buffer)), promise: nil, context: context)
        return context.eventLoop.makeSucceededVoidFuture()
    }

    /// Writes out the forwarded head and pieces written since the last flush.
    func flushForwarded(context: ChannelHandlerContext) {
        context.flush()
    }

    /// Ends a forwarded answer; the connection stays open for the next request when `keepAlive`.
    func endForwardedResponse(keepAlive: Bool, context: ChannelHandlerContext) {
        if keepAlive {
            self.state = .idle
            self.deadlines?.responseFinished()
            self.sendAndFlush(.end, promise: nil, context: context)
        } else {
            self.state = .closing
            self.sendAndFlush(.end, context: context).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    /// A forwarded answer failed after its head: the connection closes, the only way left to say it is cut.
    func cutForwardedResponse(context: ChannelHandlerContext) {
        self.logger.debug("forwarded response failed halfway; closing the connection")
        self.state = .closing
        context.close(promise: nil)
    }

    /// Answers a forwarded request with a complete response of the vault's own (a refusal or a failure before
    /// Personio's head); the connection closes after it unless the request was read to its end.
    func finishForwarding(
        _ exchange: ForwardingExchange,
        response: Response,
        head: HTTPRequestHead,
        resolution: RequestDispatcher.Resolution,
        start: ContinuousClock.Instant?,
        requestComplete: Bool,
        context: ChannelHandlerContext
    ) {
        guard case .forwarding(let current) = self.state, current === exchange else { return }
        let dispatch = RequestDispatcher.Dispatch(
            outcome: .immediate(response),
            requestID: resolution.requestID,
            route: resolution.routeName,
            connectionLogger: self.logger,
            connectionID: resolution.connectionID
        )
        if !requestComplete {
            // The rest of the body is not read: it cannot be told from the next request.
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        }
        self.write(
            response,
            for: head,
            dispatch: dispatch,
            start: start,
            forceClose: !requestComplete,
            context: context
        )
    }

    static func tooLarge(_ limit: Int) -> HTTPError {
        HTTPError(.payloadTooLarge, "request bodies are limited to \(limit) bytes")
    }
}
