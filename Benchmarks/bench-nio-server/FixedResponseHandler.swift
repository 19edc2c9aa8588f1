import NIOCore
import NIOHTTP1

/// Answers every request with the same 200 response once the request has been read to its end.
final class FixedResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The response, built once: each request costs a header copy and a body reference, nothing more.
    struct Response: Sendable {
        let head: HTTPResponseHead
        let body: ByteBuffer

        init(body: String) {
            let buffer = ByteBuffer(string: body)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(buffer.readableBytes))
            self.head = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
            self.body = buffer
        }
    }

    private let response: Response
    private var keepAlive = true

    init(response: Response) {
        self.response = response
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            self.keepAlive = request.isKeepAlive
        case .body:
            break
        case .end:
            var head = self.response.head
            if !self.keepAlive { head.headers.replaceOrAdd(name: "Connection", value: "close") }
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(self.response.body))), promise: nil)
            if self.keepAlive {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                    boundContext.value.close(promise: nil)
                }
            }
        }
    }
}
