import NIOCore
import NIOPosix

/// A reverse proxy on NIO's channels with an HTTP/1.1 codec of its own, the bench's measure of what a Swift proxy
/// could reach below NIO's HTTP layer: one handler per connection reads bytes, finds the head's end, and copies or
/// skips whole header lines by comparing their names' bytes. No `HTTPHeaders`, no llhttp, no request and response
/// parts travelling through a pipeline, no per-request strings. It does what ``ProxyServer`` does (the prefix mapped
/// to the upstream's root, hop-by-hop headers dropped both ways, `Host` and `Authorization` replaced, the answer
/// streamed back as it arrives) for the requests the bench sends: bodiless requests, and answers framed by
/// `Content-Length`. Anything else is refused (a request with a body: 501; an answer without `Content-Length`: the
/// connection closed), and it checks nothing else a real proxy must: a reference figure, not a design.
struct RawProxyServer {
    var socketPath: String
    var settings: ProxyServer.Settings
    var threads: Int?

    func run() throws {
        let settings = self.settings
        let prefix = RawRequestPrefix(settings: settings)
        try ProxyListener.run(
            socketPath: self.socketPath,
            settings: settings,
            threads: self.threads,
            codec: "an HTTP/1.1 codec of its own",
            makePool: { UpstreamPool<RawUpstreamHandler>(eventLoop: $0, settings: settings) },
            addHandlers: { pipeline, pool in
                try pipeline.addHandler(RawDownstreamHandler(pool: pool, prefix: prefix))
            }
        )
    }
}

/// The bytes every forwarded request shares, prepared once.
struct RawRequestPrefix: Sendable {
    /// The caller's path prefix mapped to the upstream's `/`.
    let pathPrefix: [UInt8]
    /// `Host: …\r\nAuthorization: …\r\n`, written after the request line.
    let injected: ByteBuffer

    init(settings: ProxyServer.Settings) {
        self.pathPrefix = Array(settings.prefix.utf8)
        var injected = ByteBuffer()
        injected.writeString("Host: \(settings.hostHeader)\r\nAuthorization: \(settings.authorization)\r\n")
        self.injected = injected
    }
}

/// Header-line scanning over a head's bytes.
enum RawHTTP {
    /// The header names never forwarded either way (lowercased): hop-by-hop ones, and the two replaced on the way in.
    /// A `Content-Length` or `Transfer-Encoding` on a request means a body, which this proxy refuses.
    static let dropped: [[UInt8]] = [
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "proxy-authorization", "proxy-authenticate", "host", "authorization",
    ].map { Array($0.utf8) }

    /// The offset just past `\r\n\r\n` in `bytes`, if the head is complete.
    static func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var index = 3
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") {
                if bytes[index - 1] == UInt8(ascii: "\r") && bytes[index - 2] == UInt8(ascii: "\n")
                    && bytes[index - 3] == UInt8(ascii: "\r")
                {
                    return index + 1
                }
                index += 1
            } else if byte == UInt8(ascii: "\r") {
                index += 1
            } else {
                // Neither byte of a line end: the next possible end of `\r\n\r\n` is 3 bytes on at least.
                index += 3
            }
        }
        return nil
    }

    /// Whether the header line `line` (without its line end) names one of `names`.
    static func names(_ line: UnsafeRawBufferPointer, oneOf names: [[UInt8]]) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return false }
        for name in names where name.count == colon {
            var same = true
            for index in 0..<colon where line[index] | 0x20 != name[index] {
                same = false
                break
            }
            if same { return true }
        }
        return false
    }

    /// Calls `body` with each header line of `head` (the bytes after the first line, up to the empty line), without
    /// its line end, and its offset.
    static func forEachHeaderLine(_ head: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, Int) -> Void) {
        guard var start = head.firstIndex(of: UInt8(ascii: "\n")).map({ $0 + 1 }) else { return }
        while start < head.count {
            guard let newline = head[start...].firstIndex(of: UInt8(ascii: "\n")) else { return }
            var end = newline
            if end > start && head[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            if end == start { return }
            body(UnsafeRawBufferPointer(rebasing: head[start..<end]), start)
            start = newline + 1
        }
    }

    /// The decimal value of a `Content-Length` line's field, if it is one.
    static func contentLength(_ line: UnsafeRawBufferPointer) -> Int? {
        let name: [UInt8] = Array("content-length".utf8)
        guard Self.names(line, oneOf: [name]) else { return nil }
        var value = 0
        var digits = 0
        for byte in line[(name.count + 1)...] {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { continue }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < 18 else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}

/// One upstream connection: writes a prepared request, parses the answer's head, passes the head (hop-by-hop lines
/// dropped) and then the body's bytes to the caller's handler until `Content-Length` bytes have gone.
final class RawUpstreamHandler: ChannelInboundHandler, PooledUpstream {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(RawUpstreamHandler())
    }

    private var context: ChannelHandlerContext?
    private var receiver: RawDownstreamHandler?
    /// The answer's head so far, while it is incomplete.
    private var head: ByteBuffer?
    /// Body bytes still to come; nil before the head.
    private var remaining: Int?
    private var keepAlive = true
    private var closed = false

    var isUsable: Bool { !self.closed && self.context?.channel.isActive == true }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ request: ByteBuffer, to receiver: RawDownstreamHandler) {
        self.receiver = receiver
        self.head = nil
        self.remaining = nil
        self.keepAlive = true
        self.context?.writeAndFlush(self.wrapOutboundOut(request), promise: nil)
    }

    func close() {
        self.closed = true
        self.receiver = nil
        self.context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        guard let receiver = self.receiver else {
            self.close()
            return
        }
        if self.remaining == nil {
            if var partial = self.head {
                self.head = nil
                partial.writeBuffer(&buffer)
                buffer = partial
            }
            guard let parsed = self.parseHead(&buffer) else {
                guard buffer.readableBytes < 16_384 else { return self.fail() }
                self.head = buffer
                return
            }
            receiver.upstreamHead(parsed)
        }
        guard let remaining = self.remaining else { return }
        if buffer.readableBytes > 0 {
            let count = min(remaining, buffer.readableBytes)
            receiver.upstreamBody(buffer.readSlice(length: count)!)
            self.remaining = remaining - count
        }
        if self.remaining == 0 {
            self.receiver = nil
            if !self.keepAlive || buffer.readableBytes > 0 { self.close() }
            receiver.upstreamEnd(reusable: !self.closed)
        }
    }

    /// The answer's head to send to the caller, when `buffer` holds all of it (read past it).
    private func parseHead(_ buffer: inout ByteBuffer) -> ByteBuffer? {
        typealias Parsed = (end: Int, out: ByteBuffer, length: Int?, close: Bool)
        let parsed = buffer.withUnsafeReadableBytes { bytes -> Parsed? in
            guard let end = RawHTTP.headEnd(bytes) else { return nil }
            let head = UnsafeRawBufferPointer(rebasing: bytes[..<end])
            var out = ByteBuffer()
            out.reserveCapacity(end)
            let statusLineEnd = head.firstIndex(of: UInt8(ascii: "\n"))! + 1
            out.writeBytes(UnsafeRawBufferPointer(rebasing: head[..<statusLineEnd]))
            var length: Int?
            var close = false
            let connection = Array("connection".utf8)
            RawHTTP.forEachHeaderLine(head) { line, _ in
                if let value = RawHTTP.contentLength(line) { length = value }
                if RawHTTP.names(line, oneOf: [connection]) {
                    close = line.count >= 16 && line[(line.count - 5)...].elementsEqual("close".utf8)
                }
                guard !RawHTTP.names(line, oneOf: RawHTTP.dropped) else { return }
                out.writeBytes(line)
                out.writeStaticString("\r\n")
            }
            out.writeStaticString("\r\n")
            return (end, out, length, close)
        }
        guard let parsed else { return nil }
        buffer.moveReaderIndex(forwardBy: parsed.end)
        guard let length = parsed.length else {
            self.fail()
            return nil
        }
        self.remaining = length
        self.keepAlive = !parsed.close
        return parsed.out
    }

    private func fail() {
        let receiver = self.receiver
        self.close()
        receiver?.upstreamFailed()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.receiver?.upstreamFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed = true
        let receiver = self.receiver
        self.receiver = nil
        receiver?.upstreamFailed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail()
    }
}

/// The caller's connection: one request at a time (bytes of a pipelined next one wait in `buffered`, and reading
/// stops only while such bytes wait), each forwarded on a pooled upstream connection as a prepared byte string.
final class RawDownstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pool: UpstreamPool<RawUpstreamHandler>
    private let prefix: RawRequestPrefix
    private var context: ChannelHandlerContext?
    /// Bytes read and not yet part of a forwarded request.
    private var buffered: ByteBuffer?
    /// A request is forwarded and not yet answered (its upstream connection may still be connecting).
    private var inFlight = false
    private var upstream: RawUpstreamHandler?
    private var keepAlive = true
    private var responseStarted = false
    /// A `read` held back while a next request's bytes waited.
    private var readHeld = false

    init(pool: UpstreamPool<RawUpstreamHandler>, prefix: RawRequestPrefix) {
        self.pool = pool
        self.prefix = prefix
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if var pending = self.buffered {
            self.buffered = nil
            pending.writeBuffer(&buffer)
            buffer = pending
        }
        self.buffered = buffer
        if !self.inFlight { self.startNext(context: context) }
    }

    func read(context: ChannelHandlerContext) {
        // Back-pressure only when a next request's bytes already wait: a caller that waits for each answer is read
        // without interest changes.
        guard !self.holdsReads else {
            self.readHeld = true
            return
        }
        context.read()
    }

    private var holdsReads: Bool { self.inFlight && (self.buffered?.readableBytes ?? 0) > 0 }

    private func startNext(context: ChannelHandlerContext) {
        guard var buffer = self.buffered, buffer.readableBytes > 0 else { return }
        let request = buffer.withUnsafeReadableBytes { bytes -> UpstreamRequest? in
            guard let end = RawHTTP.headEnd(bytes) else { return nil }
            return self.upstreamRequest(UnsafeRawBufferPointer(rebasing: bytes[..<end]), end: end)
        }
        guard let request else {
            if buffer.readableBytes > 16_384 { self.answer(431, context: context, close: true) }
            return
        }
        buffer.moveReaderIndex(forwardBy: request.end)
        self.buffered = buffer.readableBytes > 0 ? buffer : nil
        self.keepAlive = request.keepAlive
        self.responseStarted = false
        guard let out = request.out else {
            self.answer(request.refusal, context: context, close: !request.keepAlive)
            return
        }
        self.inFlight = true
        self.pool.acquire().whenComplete { result in
            switch result {
            case .success(let upstream):
                guard self.context != nil else { return self.pool.release(upstream) }
                self.upstream = upstream
                upstream.send(out, to: self)
            case .failure:
                self.inFlight = false
                guard let context = self.context else { return }
                self.answer(502, context: context, close: true)
            }
        }
    }

    /// A caller's request head read: its length, and what to send upstream or the status it is refused with.
    private struct UpstreamRequest {
        var end: Int
        var out: ByteBuffer?
        var refusal = 0
        var keepAlive: Bool
    }

    /// The request to send upstream for the caller's head `head`: none for a path outside the prefix (404), a
    /// request with a body (501) or a malformed request line (400).
    private func upstreamRequest(_ head: UnsafeRawBufferPointer, end: Int) -> UpstreamRequest {
        guard let lineEnd = head.firstIndex(of: UInt8(ascii: "\n")),
            let firstSpace = head.firstIndex(of: UInt8(ascii: " ")),
            let secondSpace = head[(firstSpace + 1)..<lineEnd].firstIndex(of: UInt8(ascii: " "))
        else { return UpstreamRequest(end: end, refusal: 400, keepAlive: false) }
        let target = UnsafeRawBufferPointer(rebasing: head[(firstSpace + 1)..<secondSpace])
        guard target.count >= self.prefix.pathPrefix.count,
            target.prefix(self.prefix.pathPrefix.count).elementsEqual(self.prefix.pathPrefix)
        else { return UpstreamRequest(end: end, refusal: 404, keepAlive: true) }
        var out = ByteBuffer()
        out.reserveCapacity(end + self.prefix.injected.readableBytes)
        out.writeBytes(UnsafeRawBufferPointer(rebasing: head[...firstSpace]))
        out.writeStaticString("/")
        out.writeBytes(UnsafeRawBufferPointer(rebasing: target[self.prefix.pathPrefix.count...]))
        out.writeStaticString(" HTTP/1.1\r\n")
        out.writeImmutableBuffer(self.prefix.injected)
        var keepAlive = true
        var hasBody = false
        let connection = Array("connection".utf8)
        let framing = [Array("content-length".utf8), Array("transfer-encoding".utf8)]
        RawHTTP.forEachHeaderLine(head) { line, _ in
            if RawHTTP.names(line, oneOf: [connection]) {
                keepAlive = !(line.count >= 16 && line[(line.count - 5)...].elementsEqual("close".utf8))
            }
            if RawHTTP.names(line, oneOf: framing) { hasBody = RawHTTP.contentLength(line) != 0 }
            guard !RawHTTP.names(line, oneOf: RawHTTP.dropped) else { return }
            out.writeBytes(line)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
        guard !hasBody else { return UpstreamRequest(end: end, refusal: 501, keepAlive: false) }
        return UpstreamRequest(end: end, out: out, keepAlive: keepAlive)
    }

    private func answer(_ status: Int, context: ChannelHandlerContext, close: Bool) {
        var head = ByteBuffer()
        head.writeString("HTTP/1.1 \(status) Refused\r\nContent-Length: 0\r\n")
        if close { head.writeStaticString("Connection: close\r\n") }
        head.writeStaticString("\r\n")
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(head)).whenComplete { _ in
            if close { channel.close(promise: nil) }
        }
        if !close { self.startNext(context: context) }
    }

    // MARK: - From the upstream connection

    func upstreamHead(_ head: ByteBuffer) {
        var head = head
        if !self.keepAlive {
            head.moveWriterIndex(to: head.writerIndex - 2)
            head.writeStaticString("Connection: close\r\n\r\n")
        }
        self.responseStarted = true
        self.context?.write(self.wrapOutboundOut(head), promise: nil)
    }

    func upstreamBody(_ body: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(body), promise: nil)
    }

    func upstreamFlush() {
        self.context?.flush()
    }

    func upstreamEnd(reusable: Bool) {
        guard let upstream = self.upstream else { return }
        self.upstream = nil
        self.inFlight = false
        if reusable { self.pool.release(upstream) } else { upstream.close() }
        guard let context = self.context else { return }
        context.flush()
        guard self.keepAlive else {
            context.close(promise: nil)
            return
        }
        self.startNext(context: context)
        if self.readHeld && !self.holdsReads {
            self.readHeld = false
            context.read()
        }
    }

    func upstreamFailed() {
        self.upstream = nil
        self.inFlight = false
        guard let context = self.context else { return }
        if self.responseStarted {
            context.close(promise: nil)
        } else {
            self.answer(502, context: context, close: true)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let upstream = self.upstream { upstream.close() }
        self.upstream = nil
        context.fireChannelInactive()
    }
}
