import NIOCore
import NIOPosix

/// A reverse proxy on NIO's channels with an HTTP/1.1 codec of its own, the bench's measure of what a Swift proxy
/// could reach below NIO's HTTP layer: one handler per connection reads bytes, finds the head's end, and copies or
/// skips whole header lines by comparing their names' bytes. No `HTTPHeaders`, no llhttp, no request and response
/// parts travelling through a pipeline, no per-request strings. It does what ``ProxyServer`` does (the prefix mapped
/// to the upstream's root, hop-by-hop headers dropped both ways, `Host` and `Authorization` replaced, the answer
/// streamed back as it arrives) for the requests the bench sends: bodiless requests, and answers framed by
/// `Content-Length`. Anything else is refused (a request with a body: 501; an answer without `Content-Length`: the
/// connection closed). Every head, both ways, is first held to the strict syntax a real codec must check
/// (``RawHTTP/isWellFormed(_:request:)``: 400, or the upstream connection closed), so that its cost is in the figure;
/// the rest of what a real proxy does (chunked bodies, time-outs, limits per caller) is not: a reference, not a
/// design.
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

    /// What each byte may be: `token` in a method or header name (RFC 9110 tchar), `target` in a request target
    /// (visible ASCII), `value` in a field value or reason phrase (visible ASCII, SP, HTAB, obs-text).
    static let token: UInt8 = 1
    static let target: UInt8 = 2
    static let value: UInt8 = 4
    static let classes: [UInt8] = (0..<256).map { byte -> UInt8 in
        let visible = byte > 0x20 && byte < 0x7F
        let alphanumeric =
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
        let tokenSymbols = Array("!#$%&'*+-.^_`|~".utf8)
        var classes: UInt8 = 0
        if alphanumeric || tokenSymbols.contains(UInt8(byte)) { classes |= Self.token }
        if visible { classes |= Self.target }
        if visible || byte == 0x20 || byte == 0x09 || byte >= 0x80 { classes |= Self.value }
        return classes
    }

    /// Whether `head` (through its empty line) is a strict HTTP/1.1 request or response head: CRLF line ends only,
    /// `METHOD SP target SP HTTP/1.x` or `HTTP/1.x SP 3DIGIT SP reason`, header lines of a token name directly
    /// followed by `:` and a value without control characters other than HTAB, no obs-fold. What a real codec
    /// checks on every head; one pass, a table lookup per byte.
    static func isWellFormed(_ head: UnsafeRawBufferPointer, request: Bool) -> Bool {
        let classes = Self.classes
        func lineEnd(from start: Int) -> Int? {
            guard let newline = head[start...].firstIndex(of: UInt8(ascii: "\n")), newline > start,
                head[newline - 1] == UInt8(ascii: "\r")
            else { return nil }
            return newline - 1
        }
        func isVersion(_ at: Int) -> Bool {
            head.count >= at + 8 && head[at..<(at + 7)].elementsEqual("HTTP/1.".utf8)
                && (head[at + 7] == UInt8(ascii: "0") || head[at + 7] == UInt8(ascii: "1"))
        }
        guard let first = lineEnd(from: 0) else { return false }
        if request {
            var index = 0
            while index < first && classes[Int(head[index])] & Self.token != 0 { index += 1 }
            guard index > 0, index < first, head[index] == UInt8(ascii: " ") else { return false }
            let targetStart = index + 1
            index = targetStart
            while index < first && classes[Int(head[index])] & Self.target != 0 { index += 1 }
            guard index > targetStart, head[targetStart] == UInt8(ascii: "/"), index < first,
                head[index] == UInt8(ascii: " "), first - index - 1 == 8, isVersion(index + 1)
            else { return false }
        } else {
            guard first >= 12, isVersion(0), head[8] == UInt8(ascii: " "),
                head[9..<12].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                first == 12 || head[12] == UInt8(ascii: " ")
            else { return false }
            for byte in head[12..<first] where classes[Int(byte)] & Self.value == 0 { return false }
        }
        var start = first + 2
        while true {
            guard let end = lineEnd(from: start) else { return false }
            // The empty line ends the head, and nothing may follow it here.
            if end == start { return end + 2 == head.count }
            var index = start
            while index < end && classes[Int(head[index])] & Self.token != 0 { index += 1 }
            guard index > start, index < end, head[index] == UInt8(ascii: ":") else { return false }
            for byte in head[(index + 1)..<end] where classes[Int(byte)] & Self.value == 0 { return false }
            start = end + 2
        }
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
            guard RawHTTP.isWellFormed(head, request: false) else { return (end, ByteBuffer(), nil, true) }
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
            let head = UnsafeRawBufferPointer(rebasing: bytes[..<end])
            guard RawHTTP.isWellFormed(head, request: true) else {
                return UpstreamRequest(end: end, refusal: 400, keepAlive: false)
            }
            return self.upstreamRequest(head, end: end)
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
