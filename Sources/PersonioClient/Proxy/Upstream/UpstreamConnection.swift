import NIOCore
import NIOHTTP1

/// One keep-alive HTTP/1.1 connection to Personio, the last handler of its pipeline (after NIO's client codec and,
/// for `https`, NIOSSL's handler): carries one ``ProxyExchange`` at a time and hands it the answer's parts.
///
/// Reads only on demand (`autoRead` is off): while an exchange waits for its answer, and again after each read
/// unless the caller's socket is still taking the last piece (the back-pressure of a caller that reads slowly:
/// Personio is read no faster). An idle connection keeps one read pending, so that Personio closing it is noticed
/// at once, not by the next request. Bound to the pool's event loop.
final class UpstreamConnection: ChannelInboundHandler, RemovableChannelHandler, UpstreamBodyWriter {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let pool: UpstreamPool
    private let readTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    /// The exchange this connection is being made for, until it is connected.
    var pending: ProxyExchange?
    /// The exchange in flight.
    private var exchange: ProxyExchange?
    /// Whether the exchange in flight came to a connection that had carried one before (a stale keep-alive
    /// connection may be closed by Personio just as a request goes out: such a request may be sent again).
    private var reused = false
    private var headReceived = false
    private var requestEnded = false
    private var responseKeepAlive = true
    /// The caller's socket has not taken the last piece yet: no read until it has.
    private var paused = false
    private var inRead = false
    private var lastActivity = NIODeadline.distantPast
    private var idleSince: NIODeadline?
    private var failure: (any Error)?
    private var closed = false

    init(pool: UpstreamPool, readTimeout: Duration) {
        self.pool = pool
        self.readTimeout = TimeAmount(readTimeout)
    }

    var isUsable: Bool { !self.closed && self.context?.channel.isActive == true }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Shut down while its address was being resolved, before there was a channel to close.
        if self.closed { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: - The pool's side

    /// Starts carrying `exchange`.
    func assign(_ exchange: ProxyExchange, reused: Bool) {
        self.exchange = exchange
        self.reused = reused
        self.idleSince = nil
        self.headReceived = false
        self.requestEnded = false
        self.responseKeepAlive = true
        self.paused = false
        self.failure = nil
        exchange.started(on: self)
    }

    func becameIdle(at now: NIODeadline) {
        self.idleSince = now
        // Notices Personio closing the connection (or anything it sends unasked) while nothing is in flight.
        self.context?.read()
    }

    func close() {
        guard !self.closed else { return }
        self.closed = true
        self.context?.close(promise: nil)
    }

    func shutdown() {
        // Still being made, the connection carries its exchange as `pending`: it must not be sent once connected.
        let exchange = self.exchange ?? self.pending
        self.exchange = nil
        self.pending = nil
        self.close()
        exchange?.upstreamFailed(.shutDown)
    }

    /// Times out the exchange in flight or closes an idle connection when due; returns the next deadline.
    func checkDeadlines(now: NIODeadline, idleTimeout: TimeAmount) -> NIODeadline? {
        if let exchange = self.exchange {
            if !self.headReceived {
                guard exchange.headDeadline <= now else { return exchange.headDeadline }
                self.abort(.headTimeout)
                return nil
            }
            // No progress either way for the read time-out: Personio silent, or a caller that takes nothing (nginx's
            // `send_timeout`), which would otherwise hold the connection and its share for as long as it likes.
            let deadline = self.lastActivity + self.readTimeout
            guard deadline <= now else { return deadline }
            self.abort(self.paused ? .callerStalled : .readTimeout)
            return nil
        }
        if let pending = self.pending, pending.isWaitingForConnection {
            guard pending.headDeadline <= now else { return pending.headDeadline }
            // The connection is still made, for whoever comes next.
            self.pending = nil
            pending.upstreamFailed(.headTimeout)
            return nil
        }
        if let idleSince = self.idleSince {
            let deadline = idleSince + idleTimeout
            guard deadline <= now else { return deadline }
            self.close()
        }
        return nil
    }

    // MARK: - The exchange's side

    /// Sends the request head; the request ends with it unless a body follows.
    func sendHead(_ head: HTTPRequestHead, hasBody: Bool) {
        guard let context = self.context else { return }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if hasBody {
            context.flush()
        } else {
            self.requestEnded = true
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        self.lastActivity = .now()
        context.read()
    }

    func writeBodyPart(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context = self.context, !self.closed else {
            return self.pool.eventLoop.makeFailedFuture(UpstreamError.closedBeforeHead(nil))
        }
        return context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))))
    }

    /// The request's body is complete.
    func endRequest() {
        guard let context = self.context, !self.closed else { return }
        self.requestEnded = true
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// The exchange gives up (cancelled, its body abandoned): the connection cannot carry another request.
    func abandon(_ exchange: ProxyExchange) {
        guard self.exchange === exchange else { return }
        self.exchange = nil
        self.close()
    }

    private func abort(_ error: UpstreamError) {
        let exchange = self.exchange
        self.exchange = nil
        self.close()
        exchange?.upstreamFailed(error)
    }

    // MARK: - ChannelInboundHandler

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange = self.exchange else {
            // Bytes nobody asked for (an answer after the exchange gave up, or unasked while idle): the stream
            // cannot be trusted to frame another answer.
            self.close()
            return
        }
        self.inRead = true
        defer { self.inRead = false }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.headReceived = true
            self.responseKeepAlive = head.isKeepAlive
            self.lastActivity = .now()
            // The timer may be armed for the later head deadline: each silence from here on ends at the read time-out.
            self.pool.watch(self.lastActivity + self.readTimeout)
            self.pause(for: exchange.upstreamHead(head), of: exchange)
        case .body(let buffer):
            self.lastActivity = .now()
            self.pause(for: exchange.upstreamBody(buffer), of: exchange)
        case .end:
            self.exchange = nil
            // Reusable only when both sides framed their message completely and Personio keeps the connection.
            if self.responseKeepAlive && self.requestEnded && !self.closed {
                self.pool.release(self)
            } else {
                self.close()
            }
            exchange.upstreamEnd()
        }
    }

    /// Reads again once `future` (the caller's socket taking the last piece) completes.
    private func pause(for future: EventLoopFuture<Void>, of exchange: ProxyExchange) {
        self.paused = true
        future.assumeIsolated().whenComplete { _ in
            guard self.exchange === exchange else { return }
            self.paused = false
            self.lastActivity = .now()
            self.pool.watch(self.lastActivity + self.readTimeout)
            if !self.inRead { self.context?.read() }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.exchange != nil, !self.paused { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed = true
        self.pool.remove(self)
        guard let exchange = self.exchange else { return }
        self.exchange = nil
        if !self.headReceived, self.reused, exchange.retryOnFreshConnection() {
            // A keep-alive connection Personio had closed: the request went nowhere, and it is sent again once.
            self.pool.lease(for: exchange)
            return
        }
        exchange.upstreamFailed(
            self.headReceived ? .closedMidAnswer(self.failure) : .closedBeforeHead(self.failure)
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.failure = self.failure ?? error
        self.close()
    }
}
