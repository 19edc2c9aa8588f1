import NIOCore
import NIOHTTP1

/// Collects one request (head and body, at most ``maximumBodyBytes``), asks the state what to do, and does it
/// after the configured latency. One instance per connection, used on its event loop only.
final class StandInHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Larger request bodies are answered 413, like Personio's front door would.
    static let maximumBodyBytes = 64 * 1024

    private let core: StandInCore
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false

    init(core: StandInCore) {
        self.core = core
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
            self.bodyTooLarge = false
        case .body(var buffer):
            if self.body.count + buffer.readableBytes > Self.maximumBodyBytes {
                self.bodyTooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                self.body += bytes
            }
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.finish(head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func finish(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let keepAlive = head.isKeepAlive
        if self.bodyTooLarge {
            let response = StandInState.resourceError(
                status: 413,
                title: "Payload Too Large",
                detail: "The request body is too large",
                v1: false
            )
            self.perform(.respond(response), version: head.version, keepAlive: false, context: context)
            return
        }
        let target = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let request = StandInRequest(
            method: head.method.rawValue,
            path: String(target.first ?? ""),
            query: target.count > 1 ? String(target[1]) : nil,
            headers: head.headers.map { (name: $0.name, value: $0.value) },
            body: self.body
        )
        self.body = []
        let (reply, delay) = self.core.handle(request)
        // Held (``PersonioStandIn/holdAnswers(on:)``): the request took effect (a token was issued), the answer waits
        // for the release, then is sent on this connection's event loop as usual.
        if self.core.mayHold {
            let loop = context.eventLoop
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
            let parked = self.core.park(StandInState.endpoint(for: request.path)) {
                loop.execute {
                    let (handler, context) = bound.value
                    handler.answer(reply, after: delay, head: head, keepAlive: keepAlive, context: context)
                }
            }
            if parked { return }
        }
        self.answer(reply, after: delay, head: head, keepAlive: keepAlive, context: context)
    }

    private func answer(
        _ reply: StandInReply,
        after delay: Duration,
        head: HTTPRequestHead,
        keepAlive: Bool,
        context: ChannelHandlerContext
    ) {
        if delay > .zero {
            context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) {
                self.perform(reply, version: head.version, keepAlive: keepAlive, context: context)
            }
        } else {
            self.perform(reply, version: head.version, keepAlive: keepAlive, context: context)
        }
    }

    private func perform(_ reply: StandInReply, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        switch reply {
        case .hang:
            break
        case .close:
            context.close(promise: nil)
        case .respond(let response):
            var headers = HTTPHeaders(response.headers.map { ($0.name, $0.value) })
            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
            if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
            let head = HTTPResponseHead(
                version: version,
                status: HTTPResponseStatus(statusCode: response.status),
                headers: headers
            )
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            if !response.body.isEmpty {
                var buffer = context.channel.allocator.buffer(capacity: response.body.count)
                buffer.writeBytes(response.body)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: written)
            if !keepAlive {
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        }
    }
}
