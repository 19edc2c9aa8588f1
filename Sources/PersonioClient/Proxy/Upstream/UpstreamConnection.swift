import NIOCore

/// One keep-alive HTTP/1.1 connection to Personio, as its pool keeps it: carries one ``ProxyExchange`` at a time and
/// hands it the answer's parts, which its channel's ``UpstreamChannelHandler`` passes on.
///
/// Reads as NIO does by default, except while the caller's socket is still taking a piece: then `autoRead` is off
/// until it has (the back-pressure of a caller that reads slowly: Personio is read no faster). Toggling it only
/// then, not around every answer, saves two `epoll_ctl` calls per request. An idle connection is read too, so that
/// Personio closing it (or sending something unasked) is noticed at once, not by the next request. Bound to the
/// pool's event loop.
final class UpstreamConnection: UpstreamBodyWriter {
    private let pool: UpstreamPool
    private let readTimeout: TimeAmount
    /// The handler of the channel NIO connected (one of its attempts, for a host with several addresses); nil while
    /// the connection is being made.
    private var handler: UpstreamChannelHandler?
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
    /// The caller's socket has not taken every piece yet: `autoRead` is off until it has.
    private var paused = false
    /// Pieces of the current answer the caller's socket has not taken yet.
    private var outstanding = 0
    /// Counts answers, so that a piece of an earlier one, taken late, is not counted against the next.
    private var generation = 0
    private var lastActivity = NIODeadline.distantPast
    private var idleSince: NIODeadline?
    private var failure: (any Error)?
    private var closed = false

    init(pool: UpstreamPool, readTimeout: Duration) {
        self.pool = pool
        self.readTimeout = TimeAmount(readTimeout)
    }

    private var context: ChannelHandlerContext? { self.handler?.context }
    /// How the body of the exchange in flight is framed.
    private var framing = UpstreamRequestHead.Framing.none

    var isUsable: Bool { !self.closed && self.context?.channel.isActive == true }

    /// The channel NIO connected carries this connection from now on.
    func attach(_ handler: UpstreamChannelHandler, channel: any Channel) {
        self.handler = handler
        handler.connection = self
        if self.closed || !channel.isActive {
            // Shut down while it was being made, or closed before it got here.
            self.closed = true
            channel.close(promise: nil)
        }
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
        self.failure = nil
        self.resetFlow()
        exchange.started(on: self)
    }

    func becameIdle(at now: NIODeadline) {
        self.idleSince = now
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
    func sendHead(_ head: UpstreamRequestHead) {
        guard let context = self.context else { return }
        self.framing = head.framing
        self.requestEnded = head.framing == .none
        context.writeAndFlush(NIOAny(head.bytes), promise: nil)
        self.lastActivity = .now()
    }

    func writeBodyPart(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context = self.context, !self.closed else {
            return self.pool.eventLoop.makeFailedFuture(UpstreamError.closedBeforeHead(nil))
        }
        guard self.framing == .chunked else { return context.writeAndFlush(Self.bytes(buffer)) }
        context.write(Self.bytes(UpstreamRequestHead.chunkHeader(buffer.readableBytes)), promise: nil)
        context.write(Self.bytes(buffer), promise: nil)
        return context.writeAndFlush(Self.bytes(UpstreamRequestHead.chunkEnd))
    }

    /// The request's body is complete.
    func endRequest() {
        guard let context = self.context, !self.closed else { return }
        self.requestEnded = true
        if self.framing == .chunked {
            context.writeAndFlush(Self.bytes(UpstreamRequestHead.lastChunk), promise: nil)
        }
    }

    private static func bytes(_ buffer: ByteBuffer) -> NIOAny {
        NIOAny(buffer)
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

    // MARK: - The channel's side (UpstreamChannelHandler)

    /// Whether an answer is expected: bytes that come while none is were not asked for.
    var expectsAnswer: Bool { self.exchange != nil }

    func read(_ part: UpstreamResponseParser.Event) {
        guard let exchange = self.exchange else {
            // Bytes nobody asked for (an answer after the exchange gave up, or unasked while idle): the stream
            // cannot be trusted to frame another answer.
            self.close()
            return
        }
        switch part {
        case .head(let head):
            self.headReceived = true
            self.responseKeepAlive = head.keepAlive
            self.lastActivity = .now()
            // The timer may be armed for the later head deadline: each silence from here on ends at the read time-out.
            self.pool.watch(self.lastActivity + self.readTimeout)
            self.pause(for: exchange.upstreamHead(head))
        case .body(let buffer):
            self.lastActivity = .now()
            self.pause(for: exchange.upstreamBody(buffer))
        case .end:
            self.exchange = nil
            // Personio's answer is read whole: whatever the caller still takes, the connection reads again.
            self.resetFlow()
            // Reusable only when both sides framed their message completely and Personio keeps the connection.
            if self.responseKeepAlive && self.requestEnded && !self.closed {
                self.pool.release(self)
            } else {
                self.close()
            }
            exchange.upstreamEnd()
        }
    }

    func readComplete() {
        // The pieces of this read go to the caller in one write (an answer that ended flushed itself).
        self.exchange?.upstreamReadComplete()
    }

    func inactive() {
        self.closed = true
        self.pool.remove(self)
        guard let exchange = self.exchange else { return }
        self.exchange = nil
        // A parse failure means bytes of an answer came: the request reached Personio, and is not sent again.
        if !self.headReceived, self.reused, !(self.failure is UpstreamResponseParser.Failure),
            exchange.retryOnFreshConnection()
        {
            // A keep-alive connection Personio had closed: the request went nowhere, and it is sent again once.
            self.pool.lease(for: exchange)
            return
        }
        exchange.upstreamFailed(
            self.headReceived ? .closedMidAnswer(self.failure) : .closedBeforeHead(self.failure)
        )
    }

    func caught(_ error: any Error) {
        self.failure = self.failure ?? error
        self.close()
    }

    // MARK: - Back-pressure

    /// Stops reading until `future` (the caller's socket taking a piece) completes, unless it already has (then
    /// the callback below runs at once).
    private func pause(for future: EventLoopFuture<Void>) {
        // The caller's socket took the piece at once (the event loop's one succeeded future): nothing to wait for,
        // and no callback to allocate.
        if future === self.pool.eventLoop.makeSucceededVoidFuture() { return }
        let generation = self.generation
        self.outstanding += 1
        future.assumeIsolated().whenComplete { _ in
            guard self.generation == generation else { return }
            self.outstanding -= 1
            guard self.outstanding == 0, self.paused else { return }
            self.paused = false
            self.lastActivity = .now()
            self.pool.watch(self.lastActivity + self.readTimeout)
            self.setAutoRead(true)
        }
        if self.outstanding > 0, !self.paused {
            self.paused = true
            self.setAutoRead(false)
        }
    }

    /// Forgets the pieces in flight to the caller and reads again.
    private func resetFlow() {
        self.generation &+= 1
        self.outstanding = 0
        if self.paused {
            self.paused = false
            self.setAutoRead(true)
        }
    }

    private func setAutoRead(_ on: Bool) {
        guard !self.closed else { return }
        try? self.context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: on)
    }
}

/// The last handler of an upstream channel's pipeline (after NIOSSL's handler, for `https`): parses what the channel
/// reads with the vault's own ``UpstreamResponseParser`` and passes the answer to the ``UpstreamConnection`` it
/// carries. The connection writes the bytes the vault encoded (``UpstreamRequestHead``) through it as they are: no
/// part of NIO's HTTP codec is involved.
///
/// One per channel, not per connection: for a host with several addresses NIO tries more than one channel at once
/// (happy eyeballs) and keeps the first that connects. Until that one is attached, the handler belongs to no
/// connection, and a channel that loses closes without touching any.
final class UpstreamChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private(set) var context: ChannelHandlerContext?
    /// Set by ``UpstreamConnection/attach(_:channel:)``.
    var connection: UpstreamConnection?
    private var parser = UpstreamResponseParser()

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection = self.connection, connection.expectsAnswer else {
            // Bytes nobody asked for (an answer after the exchange gave up, or unasked while idle): the stream
            // cannot be trusted to frame another answer.
            self.connection?.close()
            context.close(promise: nil)
            return
        }
        self.parser.feed(self.unwrapInboundIn(data))
        while true {
            let event: UpstreamResponseParser.Event?
            do {
                event = try self.parser.next()
            } catch {
                connection.caught(error)
                return
            }
            guard let event else { return }
            connection.read(event)
            // The answer's end may have released the connection, or a caller gone away closed it: what follows in
            // this read is then not for anyone.
            guard self.connection != nil, connection.isUsable else { return }
            if case .end = event, self.parser.hasUnparsedBytes {
                // More after a complete answer, before the next request went out (even if the pool has handed the
                // connection on already): not asked for.
                connection.close()
                return
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.connection?.readComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let connection = self.connection
        self.connection = nil
        // An answer framed by the end of the connection is complete now.
        if let connection, connection.expectsAnswer, let end = self.parser.connectionClosed() {
            connection.read(end)
        }
        connection?.inactive()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let connection = self.connection else {
            context.close(promise: nil)
            return
        }
        connection.caught(error)
    }
}
