import Logging
import NIOCore
import NIOHTTP1
import VaultAPI
import VaultCore

/// The last handler of a connection's pipeline: collects each request's body (at most the dispatcher's limit), hands
/// the complete request to the ``RequestDispatcher`` and writes its response.
///
/// `HTTPServerPipelineHandler` sits in front of it, so it sees one request at a time, and keep-alive and pipelining
/// need no bookkeeping here. A request whose body is too large, or bytes that are not HTTP, get an answer and the
/// connection is closed: the rest of such a stream cannot be trusted to frame another request.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// Reading a request; the body buffer is allocated at the first body part.
        case receiving(HTTPRequestHead, ByteBuffer?, ContinuousClock.Instant?)
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

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
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
        if let declared = head.headers.first(name: "Content-Length").flatMap({ Int($0) }),
            declared > self.dispatcher.bodyLimit
        {
            // Refused from the head alone: the body is never read into memory.
            self.refuse(Self.tooLarge(self.dispatcher.bodyLimit), version: head.version, start: start, context: context)
            return
        }
        if head.headers.first(name: "Expect")?.lowercased() == "100-continue" {
            let continueHead = HTTPResponseHead(version: head.version, status: .continue)
            context.writeAndFlush(self.wrapOutboundOut(.head(continueHead)), promise: nil)
        }
        self.state = .receiving(head, nil, start)
    }

    private func receiveBody(_ part: ByteBuffer, context: ChannelHandlerContext) {
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
        guard case .receiving(let head, let body, let start) = self.state else { return }
        self.state = .responding
        self.deadlines?.requestReceived()
        let requestBody = body.map(RequestBody.init) ?? .empty
        let dispatch = self.dispatcher.dispatch(
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

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            self.inputClosed = true
            if case .idle = self.state { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            self.logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        switch self.state {
        case .idle, .receiving:
            // Not HTTP, or not HTTP this server speaks: say so once and hang up.
            let error = HTTPError(.badRequest, "the request is not valid HTTP/1.1")
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
        let keepAlive = request.isKeepAlive && !self.inputClosed && !forceClose
        let head: HTTPResponseHead
        if let prepared = response.preparedHead, keepAlive, request.version == .http1_1 {
            head = prepared
        } else {
            var headers: HTTPHeaders
            if let prepared = response.preparedHead {
                headers = prepared.headers
            } else if response.stream == nil {
                headers = response.framedHeaders
            } else {
                // A relayed (streamed) response may carry its own Cache-Control: it is replaced.
                headers = response.headers
                headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
            }
            if !keepAlive {
                headers.replaceOrAdd(name: "Connection", value: "close")
            } else if request.version == .http1_0 {
                headers.replaceOrAdd(name: "Connection", value: "keep-alive")
            }
            let version: HTTPVersion = request.version == .http1_0 ? .http1_0 : .http1_1
            head = HTTPResponseHead(version: version, status: response.status, headers: headers)
        }
        // Set before writing: writing `.end` lets the pipeline handler deliver a pipelined request re-entrantly.
        if !keepAlive {
            self.state = .closing
        } else if case .responding = self.state {
            self.state = .idle
        }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if let stream = response.stream {
            self.stream(stream, keepAlive: keepAlive, context: context)
        } else {
            if let body = response.body, body.readableBytes > 0 {
                context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            }
            if keepAlive {
                self.deadlines?.responseFinished()
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
        }

        self.dispatcher.metrics.record(
            socket: self.dispatcher.socket,
            route: dispatch.route,
            status: response.status.code
        )
        guard self.logger.logLevel <= .debug else { return }
        var metadata: Logger.Metadata = ["http.route": "\(dispatch.route)", "http.status": "\(response.status.code)"]
        if let start {
            metadata["http.duration_us"] = "\((ContinuousClock.now - start).inMicroseconds)"
        }
        dispatch.logger.debug("request", metadata: metadata)
    }

    /// Writes a streamed body piece by piece, each write waiting for the previous one to be flushed (back-pressure
    /// from the socket reaches the upstream read), then the end; an error midway closes the connection.
    private func stream(_ stream: ResponseStream, keepAlive: Bool, context: ChannelHandlerContext) {
        context.flush()
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: eventLoop)
        let promise = eventLoop.makePromise(of: Void.self)
        promise.completeWithTask {
            while let piece = try await stream.next() {
                guard piece.readableBytes > 0 else { continue }
                try await eventLoop.flatSubmit {
                    let (handler, context) = bound.value
                    return context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(piece))))
                }.get()
            }
        }
        promise.futureResult.assumeIsolated().whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success:
                if keepAlive { handler.deadlines?.responseFinished() }
                let written = context.writeAndFlush(handler.wrapOutboundOut(.end(nil)))
                if !keepAlive {
                    written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                }
            case .failure(let error):
                handler.logger.warning(
                    "streamed response failed; closing the connection",
                    metadata: ["error": "\(error)"]
                )
                handler.state = .closing
                context.close(promise: nil)
            }
        }
    }

    static func tooLarge(_ limit: Int) -> HTTPError {
        HTTPError(.payloadTooLarge, "request bodies are limited to \(limit) bytes")
    }
}
