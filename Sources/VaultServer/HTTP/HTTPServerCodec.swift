import HTTP1Wire
import NIOCore
import NIOHTTP1

/// What ``HTTPConnectionHandler`` writes to ``HTTPServerCodec``: NIO's answer parts, and a head written as bytes by
/// its writer (``HTTPServerCodec/encodeForwardedHead(status:headers:http10:keepAlive:allocator:)``), which the proxy
/// route uses so that a relayed head is neither built as `HTTPHeaders` nor copied again.
enum HTTPAnswerPart {
    case head(HTTPResponseHead)
    /// A final answer's head, from its status line to the empty line, framed by its writer: `chunked` says that the
    /// body, if the request may have one, goes in chunks.
    case encodedHead(ByteBuffer, chunked: Bool)
    case body(IOData)
    case end
}

/// HTTP/1.1 for one server connection, in one handler: parses requests from the bytes read (``HTTPRequestParser``),
/// hands them on one at a time, and writes the answers' parts as bytes. It stands where NIO's request decoder,
/// pipelining handler and response encoder stood (three handlers, each part passing through each), and behaves as
/// they did towards ``HTTPConnectionHandler`` (docs/decisions.md, "The app socket's half").
///
/// - Pipelining: once a request's end is handed on, the next request is not parsed until the answer's end is
///   written, and the socket is not read once bytes of it wait in the parser.
/// - Framing of answers: an answer with `Content-Length` is sent as it is; without one, an HTTP/1.1 answer that may
///   have a body is chunked, an HTTP/1.0 one is ended by the connection (the connection handler closes it). An answer
///   that may not have a body (1xx, 204, 304) loses any framing header. The answer to `HEAD` keeps its head and sends
///   no body. Interim answers (`100 Continue`) go out as they are and answer nothing.
/// - Half-closure: the peer's end of input reaches the connection handler once the requests read before it are handed
///   on (so the last one is answered, then the connection closes); a request cut by it is an error of its own.
/// - Graceful shutdown (`ChannelShouldQuiesceEvent`): an idle connection closes at once, a busy one after the answer
///   in progress.
///
/// A malformed request is reported once through `errorCaught` (``HTTPRequestParser/Failure``), and nothing more is
/// parsed: the connection handler answers 400 and closes.
final class HTTPServerCodec: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPAnswerPart
    typealias OutboundOut = IOData

    private var parser = HTTPRequestParser()
    /// A request's end was handed on and its answer's end is not written yet: nothing more is parsed or read.
    private var awaitingAnswerEnd = false
    /// A read was asked for while parsing waited.
    private var readPending = false
    /// Inside ``deliver(context:)``: an answer ended during it lets the loop go on, without a second one.
    private var delivering = false
    /// A malformed request was reported: what follows is dropped.
    private var failed = false
    /// The peer's end of input came while requests read before it were waiting.
    private var inputClosedPending = false
    /// Shutdown began: the connection closes after the answer in progress.
    private var quiescing = false
    /// The request being answered is a `HEAD`: its answer keeps its head and sends no body.
    private var answeringHead = false
    /// How the answer in progress frames its body.
    private var chunked = false
    /// The connection handler right behind this codec, with its context, once ``link(_:context:)`` joined them:
    /// request parts then reach it by a call, not through the pipeline.
    private var receiver: (handler: HTTPConnectionHandler, context: ChannelHandlerContext)?

    init() {}

    /// Hands request parts to `handler`, which stands right behind this codec in the same pipeline, by calling it
    /// with `context` (its own): a part sent through the pipeline is boxed in `NIOAny` (a head or a body part is too
    /// large to be stored inline) and cast back by the handler (both ways together, about 3,700 instructions per proxied request).
    /// ``HTTPServer/addHTTPHandlers(_:to:)`` links the two as it adds them; the link goes when either is removed.
    func link(_ handler: HTTPConnectionHandler, context: ChannelHandlerContext) {
        self.receiver = (handler, context)
    }

    func unlink() {
        self.receiver = nil
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.receiver?.handler.unlink()
        self.receiver = nil
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        self.parser.feed(self.unwrapInboundIn(data))
        self.deliver(context: context)
    }

    /// Hands on what the parser finds, until it needs more bytes or a request's answer is awaited.
    private func deliver(context: ChannelHandlerContext) {
        guard !self.delivering else { return }
        self.delivering = true
        defer { self.delivering = false }
        var needsBytes = false
        while !self.awaitingAnswerEnd && !self.failed {
            let event: HTTPRequestParser.Event?
            do {
                event = try self.parser.next()
            } catch {
                self.failed = true
                context.fireErrorCaught(error)
                return
            }
            guard let event else {
                needsBytes = true
                break
            }
            switch event {
            case .head(let head):
                self.answeringHead = head.method.isSame(as: .HEAD)
                self.handOn(.head(head), context: context)
            case .body(let bytes):
                self.handOn(.body(bytes), context: context)
            case .end:
                self.awaitingAnswerEnd = true
                self.handOn(.end(nil), context: context)
            }
        }
        // The end of input follows what was read before it: once every request read is handed on, or the parser
        // waits for bytes that will never come.
        if self.inputClosedPending && (needsBytes || !self.parser.hasUnparsedBytes) {
            self.inputClosedPending = false
            self.inputClosed(context: context)
        }
    }

    private func handOn(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        if let receiver = self.receiver {
            receiver.handler.receive(part, context: receiver.context)
        } else {
            context.fireChannelRead(self.wrapInboundOut(part))
        }
    }

    /// While an answer is awaited the socket is read on until bytes of a next request wait; then reading stops until
    /// the answer's end is written. A caller that waits for each answer (nearly every one) so never has its socket's
    /// read interest taken away and given back, two `epoll_ctl` calls per request; one that pipelines has at most one
    /// read's worth of bytes waiting (NIO's receive buffer, a few reads of it at the most).
    func read(context: ChannelHandlerContext) {
        if self.awaitingAnswerEnd && self.parser.hasUnparsedBytes {
            self.readPending = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            if self.awaitingAnswerEnd || self.parser.isInsideRequest {
                self.quiescing = true
            } else {
                context.close(promise: nil)
            }
        case ChannelEvent.inputClosed:
            if self.awaitingAnswerEnd && self.parser.hasUnparsedBytes {
                self.inputClosedPending = true
            } else {
                self.inputClosed(context: context)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// The peer will send nothing more: a request it cut short is an error, then the event goes on.
    private func inputClosed(context: ChannelHandlerContext) {
        if !self.failed && (self.parser.isInsideRequest || self.parser.hasUnparsedBytes) {
            self.failed = true
            context.fireErrorCaught(HTTPRequestParser.Failure(reason: "the request ended before it was complete"))
        }
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    // MARK: - Writing

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.write(self.unwrapOutboundIn(data), context: context, promise: promise)
    }

    /// Writes an answer's part: what a write through the pipeline does, called directly by the linked connection
    /// handler (``link(_:context:)``) with this codec's `context`.
    func write(_ part: HTTPAnswerPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(var head):
            let code = head.status.code
            if code >= 100 && code < 200 && code != 101 {
                // Interim: the final answer follows.
                context.write(self.wrapOutboundOut(.byteBuffer(Self.encode(head, context: context))), promise: promise)
                return
            }
            self.frame(&head)
            context.write(self.wrapOutboundOut(.byteBuffer(Self.encode(head, context: context))), promise: promise)
        case .encodedHead(let bytes, let chunked):
            // The answer to HEAD says what a GET would have had, and sends none of it.
            self.chunked = chunked && !self.answeringHead
            context.write(self.wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
        case .body(let body):
            self.writeBody(body, context: context, promise: promise)
        case .end:
            self.writeEnd(context: context, promise: promise)
        }
    }

    /// Sets the framing headers of a final answer as its status, its version and the request's method require.
    ///
    /// The headers are changed only when they must be: a head the handler keeps and sends again (the cached token's
    /// prepared head) is then written without being copied.
    private func frame(_ head: inout HTTPResponseHead) {
        var hasLength = false
        var hasTransferEncoding = false
        for (name, _) in head.headers {
            // One pass, by length first: most names are neither.
            switch name.utf8.count {
            case 14: hasLength = hasLength || HTTPBytes.equalsIgnoringCase(name, "content-length")
            case 17:
                hasTransferEncoding = hasTransferEncoding || HTTPBytes.equalsIgnoringCase(name, "transfer-encoding")
            default: break
            }
        }
        if !head.status.mayHaveResponseBody {
            if hasLength { head.headers.remove(name: "content-length") }
            if hasTransferEncoding { head.headers.remove(name: "transfer-encoding") }
            self.chunked = false
        } else if hasLength {
            if hasTransferEncoding { head.headers.remove(name: "transfer-encoding") }
            self.chunked = false
        } else if head.version == .http1_1 {
            head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
            // The answer to HEAD says what a GET would have had, and sends none of it.
            self.chunked = !self.answeringHead
        } else {
            self.chunked = false
        }
    }

    private func writeBody(_ body: IOData, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        if self.answeringHead || body.readableBytes == 0 {
            // Nothing goes out (an empty chunk would end the body); the promise completes in order.
            context.write(self.wrapOutboundOut(.byteBuffer(Self.noBytes)), promise: promise)
            return
        }
        guard self.chunked else {
            context.write(self.wrapOutboundOut(body), promise: promise)
            return
        }
        var size = context.channel.allocator.buffer(capacity: 18)
        size.writeString(String(body.readableBytes, radix: 16))
        size.writeStaticString("\r\n")
        context.write(self.wrapOutboundOut(.byteBuffer(size)), promise: nil)
        context.write(self.wrapOutboundOut(body), promise: nil)
        context.write(self.wrapOutboundOut(.byteBuffer(Self.lineEnd)), promise: promise)
    }

    private func writeEnd(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let last = self.chunked ? Self.lastChunk : Self.noBytes
        self.chunked = false
        self.answeringHead = false
        let requestComplete = !self.parser.isInsideRequest
        if requestComplete { self.awaitingAnswerEnd = false }
        if self.quiescing && requestComplete {
            // Shutdown: this answer was the last one. Its writer hears of the write when it is done, then the
            // connection closes.
            context.write(self.wrapOutboundOut(.byteBuffer(last))).assumeIsolated().whenComplete { result in
                promise?.completeWith(result)
                context.close(promise: nil)
            }
            return
        }
        if promise != nil || last.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.byteBuffer(last)), promise: promise)
        }
        guard requestComplete else { return }
        // The next request, if one was read already; else the socket is read again.
        self.deliver(context: context)
        if !self.awaitingAnswerEnd && self.readPending {
            self.readPending = false
            context.read()
        }
    }

    // MARK: - Bytes

    /// A response head as bytes: the status line, the headers and the empty line. The buffer is sized for a head of
    /// the usual size and grows for a larger one: summing the headers' sizes first costs more than it saves.
    private static func encode(_ head: HTTPResponseHead, context: ChannelHandlerContext) -> ByteBuffer {
        var buffer = context.channel.allocator.buffer(capacity: 512)
        Self.writeStatusLine(head.status, http10: head.version == .http1_0, to: &buffer)
        for (name, value) in head.headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        return buffer
    }

    private static func writeStatusLine(_ status: HTTPResponseStatus, http10: Bool, to buffer: inout ByteBuffer) {
        let code = status.code
        switch (http10, code) {
        case (false, 200): buffer.writeStaticString("HTTP/1.1 200 OK\r\n")
        case (true, 200): buffer.writeStaticString("HTTP/1.0 200 OK\r\n")
        case (let http10, _):
            buffer.writeStaticString(http10 ? "HTTP/1.0 " : "HTTP/1.1 ")
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(code / 100 % 10))
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(code / 10 % 10))
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(code % 10))
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(status.reasonPhrase)
            buffer.writeStaticString("\r\n")
        }
    }

    /// A forwarded answer's head as bytes, for ``HTTPAnswerPart/encodedHead(_:chunked:)``: what
    /// `frame(_:)` and `encode(_:context:)` make of a head, without building one.
    ///
    /// - `headers` go out in their order and spelling, but for `Cache-Control` (replaced by `no-store`: an answer
    ///   that carries HR data is not for caches) and the framing and connection headers, which are the vault's to
    ///   set: `Connection`, `Keep-Alive` and `Transfer-Encoding` are dropped, `Content-Length` too when the status
    ///   allows no body.
    /// - `Connection` says `close` when the connection ends after the answer, and `keep-alive` to an HTTP/1.0 caller
    ///   when it does not.
    /// - A body without a length is chunked (HTTP/1.1) or ended by the connection (HTTP/1.0): the answer then says
    ///   `close` and `keepAlive` comes back false.
    ///
    /// The bytes are copied once, into a buffer of their exact size.
    static func encodeForwardedHead(
        status: HTTPResponseStatus,
        headers: [(String, String)],
        http10: Bool,
        keepAlive: Bool,
        allocator: ByteBufferAllocator
    ) -> (bytes: ByteBuffer, chunked: Bool, keepAlive: Bool) {
        let mayHaveBody = status.mayHaveResponseBody
        var hasLength = false
        var size = 0
        for (name, value) in headers {
            switch Self.forwardedHeaderKind(name) {
            case .passed: break
            case .length:
                guard mayHaveBody else { continue }
                hasLength = true
            case .dropped: continue
            }
            size += name.utf8.count + value.utf8.count + 4
        }
        let chunked = mayHaveBody && !hasLength && !http10
        let keepAlive = keepAlive && !(mayHaveBody && !hasLength && http10)
        let connection: StaticString? =
            !keepAlive ? "Connection: close\r\n" : (http10 ? "Connection: keep-alive\r\n" : nil)
        let cacheControl: StaticString = "Cache-Control: no-store\r\n"
        let transferEncoding: StaticString = "transfer-encoding: chunked\r\n"
        let separator: StaticString = ": "
        let crlf: StaticString = "\r\n"
        size += cacheControl.utf8CodeUnitCount + 2
        size += connection?.utf8CodeUnitCount ?? 0
        size += chunked ? transferEncoding.utf8CodeUnitCount : 0

        var buffer = allocator.buffer(capacity: size + 64)
        Self.writeStatusLine(status, http10: http10, to: &buffer)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            // Each write returns where the next begins (HTTPBytes.put).
            var at = 0
            for (name, value) in headers {
                switch Self.forwardedHeaderKind(name) {
                case .passed: break
                case .length where mayHaveBody: break
                case .length, .dropped: continue
                }
                at = HTTPBytes.put(name, into: out, at: at)
                at = HTTPBytes.put(separator, into: out, at: at)
                at = HTTPBytes.put(value, into: out, at: at)
                at = HTTPBytes.put(crlf, into: out, at: at)
            }
            at = HTTPBytes.put(cacheControl, into: out, at: at)
            if let connection { at = HTTPBytes.put(connection, into: out, at: at) }
            if chunked { at = HTTPBytes.put(transferEncoding, into: out, at: at) }
            at = HTTPBytes.put(crlf, into: out, at: at)
            assert(at == size)
            return at
        }
        return (buffer, chunked, keepAlive)
    }

    private enum ForwardedHeaderKind { case passed, length, dropped }

    /// How ``encodeForwardedHead(status:headers:http10:keepAlive:allocator:)`` treats a header, by its name in any
    /// letter case: compared by length first, since most names are none of these.
    private static func forwardedHeaderKind(_ name: String) -> ForwardedHeaderKind {
        switch name.utf8.count {
        case 10:
            let isHopByHop =
                HTTPBytes.equalsIgnoringCase(name, "connection") || HTTPBytes.equalsIgnoringCase(name, "keep-alive")
            return isHopByHop ? .dropped : .passed
        case 13: return HTTPBytes.equalsIgnoringCase(name, "cache-control") ? .dropped : .passed
        case 14: return HTTPBytes.equalsIgnoringCase(name, "content-length") ? .length : .passed
        case 17: return HTTPBytes.equalsIgnoringCase(name, "transfer-encoding") ? .dropped : .passed
        default: return .passed
        }
    }

    private static let noBytes = ByteBuffer()
    private static let lineEnd = ByteBuffer(string: "\r\n")
    private static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
}
