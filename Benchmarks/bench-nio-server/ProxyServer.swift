import NIOCore
import NIOHTTP1
import NIOPosix

/// The bare SwiftNIO reverse proxy `connvault-bench` measures beside nginx's `proxy_pass` and the vault's proxy route:
/// the usual NIO HTTP/1.1 server pipeline on a Unix socket, and per event loop a small pool of keep-alive HTTP/1.1
/// connections to one upstream on TCP (NIO's `HTTPRequestEncoder` / `HTTPResponseDecoder`, nothing else). It maps
/// `prefix…` to the upstream's `/…` as the bench's nginx does, drops hop-by-hop headers both ways, replaces the
/// caller's `Authorization` with the configured one, and streams the answer back as it arrives.
struct ProxyServer {
    /// What every proxied request shares, built once.
    struct Settings: Sendable {
        var prefix: String
        var upstreamHost: String
        var upstreamPort: Int
        /// The `Host` header sent upstream.
        var hostHeader: String
        var authorization: String
    }

    var socketPath: String
    var settings: Settings
    var threads: Int?

    func run() throws {
        let settings = self.settings
        try ProxyListener.run(
            socketPath: self.socketPath,
            settings: settings,
            threads: self.threads,
            codec: "NIO's HTTP/1.1 codec",
            makePool: { UpstreamPool<UpstreamHandler>(eventLoop: $0, settings: settings) },
            addHandlers: { pipeline, pool in
                try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                try pipeline.addHandler(ProxyServerHandler(pool: pool, settings: settings))
            }
        )
    }
}

/// What both proxies share: the event loops, one upstream pool per loop (only ever touched on its loop: no lock on
/// the path), and the listening Unix socket whose connections get `addHandlers` with their loop's pool.
enum ProxyListener {
    static func run<Pool>(
        socketPath: String,
        settings: ProxyServer.Settings,
        threads: Int?,
        codec: String,
        makePool: @escaping @Sendable (any EventLoop) -> Pool,
        addHandlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations, Pool) throws -> Void
    ) throws {
        let threads = threads ?? System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { try? group.syncShutdownGracefully() }
        var pools: [ObjectIdentifier: NIOLoopBound<Pool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = try loop.submit { NIOLoopBound(makePool(loop), eventLoop: loop) }.wait()
        }
        let byLoop = pools
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let pool = byLoop[ObjectIdentifier(channel.eventLoop)]?.value else {
                        throw ChannelError.inappropriateOperationForState
                    }
                    try addHandlers(channel.pipeline.syncOperations, pool)
                }
            }
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true)
            .wait()
        print(
            "bench-nio-server proxying \(settings.prefix) on \(socketPath) to "
                + "\(settings.upstreamHost):\(settings.upstreamPort) with \(codec) and \(threads) event loops"
        )
        try channel.closeFuture.wait()
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way; `Authorization` is replaced on the way in.
enum HopByHop {
    static let names: [String] = [
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "proxy-authorization", "proxy-authenticate",
    ]

    /// Removes the hop-by-hop headers and any header the `Connection` header names.
    static func strip(_ headers: inout HTTPHeaders) {
        for token in headers[canonicalForm: "connection"] {
            headers.remove(name: String(token))
        }
        for name in Self.names where headers.contains(name: name) {
            headers.remove(name: name)
        }
    }
}

/// The end of an upstream connection's pipeline, as ``UpstreamPool`` keeps it.
protocol PooledUpstream: ChannelHandler {
    /// Adds the handlers in front of it and itself to a new connection's pipeline.
    static func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws
    var isUsable: Bool { get }
    func close()
}

/// The idle keep-alive connections of one event loop to the upstream. Only touched on `eventLoop`.
final class UpstreamPool<Upstream: PooledUpstream> {
    let eventLoop: any EventLoop
    private let settings: ProxyServer.Settings
    private var idle: [Upstream] = []
    /// Idle connections kept beyond this are closed (nginx's `keepalive 32` is per worker).
    private let maximumIdle = 32

    init(eventLoop: any EventLoop, settings: ProxyServer.Settings) {
        self.eventLoop = eventLoop
        self.settings = settings
    }

    /// An idle connection, or a new one once it is connected.
    func acquire() -> EventLoopFuture<Upstream> {
        self.eventLoop.assertInEventLoop()
        while let handler = self.idle.popLast() {
            if handler.isUsable { return self.eventLoop.makeSucceededFuture(handler) }
        }
        return ClientBootstrap(group: self.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Upstream.addHandlers(to: channel.pipeline.syncOperations)
                }
            }
            .connect(host: self.settings.upstreamHost, port: self.settings.upstreamPort)
            .flatMapThrowing { channel in
                try channel.pipeline.syncOperations.handler(type: Upstream.self)
            }
    }

    /// Back to the pool after a complete keep-alive exchange.
    func release(_ handler: Upstream) {
        self.eventLoop.assertInEventLoop()
        guard handler.isUsable, self.idle.count < self.maximumIdle else {
            handler.close()
            return
        }
        self.idle.append(handler)
    }
}

/// The caller's side of one exchange: what the upstream connection tells it.
protocol UpstreamResponseReceiver: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd(reusable: Bool)
    func upstreamResponseFlush()
    func upstreamFailed()
}

/// The end of one upstream connection's pipeline: passes the response of the exchange in flight to its receiver.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler, PooledUpstream {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    static func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHTTPClientHandlers()
        try pipeline.addHandler(UpstreamHandler())
    }

    private var context: ChannelHandlerContext?
    private weak var receiver: (any UpstreamResponseReceiver)?
    private var responseKeepAlive = true
    private var closed = false

    var isUsable: Bool { !self.closed && self.context?.channel.isActive == true }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Starts an exchange: the response goes to `receiver`.
    func begin(receiver: any UpstreamResponseReceiver, head: HTTPRequestHead) {
        self.receiver = receiver
        self.responseKeepAlive = true
        self.context?.write(self.wrapOutboundOut(.head(head)), promise: nil)
    }

    func write(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context = self.context else { return }
        if flush {
            context.writeAndFlush(self.wrapOutboundOut(part), promise: nil)
        } else {
            context.write(self.wrapOutboundOut(part), promise: nil)
        }
    }

    func close() {
        self.closed = true
        self.receiver = nil
        self.context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.responseKeepAlive = head.isKeepAlive
            self.receiver?.upstreamResponseHead(head)
        case .body(let body):
            self.receiver?.upstreamResponseBody(body)
        case .end:
            let receiver = self.receiver
            self.receiver = nil
            if !self.responseKeepAlive { self.close() }
            receiver?.upstreamResponseEnd(reusable: self.responseKeepAlive && !self.closed)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.receiver?.upstreamResponseFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed = true
        let receiver = self.receiver
        self.receiver = nil
        receiver?.upstreamFailed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let receiver = self.receiver
        self.close()
        receiver?.upstreamFailed()
    }
}

/// The caller's connection: maps each request to the upstream, forwards it on a pooled connection and writes the
/// answer back as its parts arrive. NIO's `HTTPServerPipelineHandler` before it keeps one request in flight per
/// connection.
final class ProxyServerHandler: ChannelInboundHandler, UpstreamResponseReceiver {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Waiting for an upstream connection; request parts that arrive meanwhile are kept.
        case connecting(pending: [HTTPClientRequestPart])
        case forwarding(UpstreamHandler)
        /// The request was answered locally (404); its remaining parts are ignored.
        case answeredLocally
    }

    private let pool: UpstreamPool<UpstreamHandler>
    private let settings: ProxyServer.Settings
    private var context: ChannelHandlerContext?
    private var state = State.idle
    private var keepAlive = true
    private var responseStarted = false

    init(pool: UpstreamPool<UpstreamHandler>, settings: ProxyServer.Settings) {
        self.pool = pool
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            self.keepAlive = request.isKeepAlive
            self.responseStarted = false
            guard request.uri.hasPrefix(self.settings.prefix) else {
                self.state = .answeredLocally
                self.answer(.notFound)
                return
            }
            var headers = request.headers
            HopByHop.strip(&headers)
            headers.replaceOrAdd(name: "Host", value: self.settings.hostHeader)
            headers.replaceOrAdd(name: "Authorization", value: self.settings.authorization)
            let path = "/" + request.uri.dropFirst(self.settings.prefix.count)
            let head = HTTPRequestHead(version: .http1_1, method: request.method, uri: path, headers: headers)
            self.state = .connecting(pending: [])
            self.pool.acquire().whenComplete { result in
                self.connected(result, head: head)
            }
        case .body(let body):
            self.forward(.body(.byteBuffer(body)))
        case .end(let trailers):
            self.forward(.end(trailers))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A caller that leaves mid-exchange: the upstream connection cannot be reused.
        if case .forwarding(let upstream) = self.state { upstream.close() }
        self.state = .idle
        context.fireChannelInactive()
    }

    private func connected(_ result: Result<UpstreamHandler, any Error>, head: HTTPRequestHead) {
        guard case .connecting(let pending) = self.state, self.context != nil else {
            if case .success(let upstream) = result { self.pool.release(upstream) }
            return
        }
        switch result {
        case .success(let upstream):
            self.state = .forwarding(upstream)
            upstream.begin(receiver: self, head: head)
            // The head waits for the request's first part: a GET's head and end leave in one write.
            for part in pending {
                upstream.write(part, flush: true)
            }
        case .failure:
            self.state = .answeredLocally
            self.answer(.badGateway)
        }
    }

    private func forward(_ part: HTTPClientRequestPart) {
        switch self.state {
        case .connecting(var pending):
            self.state = .idle  // lets `pending` be appended to without a copy
            pending.append(part)
            self.state = .connecting(pending: pending)
        case .forwarding(let upstream):
            // Each part as it arrives: a request body is streamed, never collected.
            upstream.write(part, flush: true)
        case .idle, .answeredLocally:
            break
        }
    }

    private func answer(_ status: HTTPResponseStatus) {
        guard let context = self.context else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "0")
        if !self.keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        self.finishResponse(context: context)
    }

    private func finishResponse(context: ChannelHandlerContext) {
        if self.keepAlive {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    // MARK: - UpstreamResponseReceiver

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard let context = self.context else { return }
        var headers = head.headers
        HopByHop.strip(&headers)
        if !self.keepAlive { headers.add(name: "Connection", value: "close") }
        self.responseStarted = true
        context.write(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: headers))),
            promise: nil
        )
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
    }

    func upstreamResponseFlush() {
        self.context?.flush()
    }

    func upstreamResponseEnd(reusable: Bool) {
        guard case .forwarding(let upstream) = self.state else { return }
        self.state = .idle
        if reusable { self.pool.release(upstream) } else { upstream.close() }
        guard let context = self.context else { return }
        self.finishResponse(context: context)
    }

    func upstreamFailed() {
        self.state = .idle
        guard let context = self.context else { return }
        if self.responseStarted {
            context.close(promise: nil)
        } else {
            self.state = .answeredLocally
            self.answer(.badGateway)
        }
    }
}
