import NIOCore

/// How long a connection may take over each part of a request, and stay silent between requests.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// From the first byte of a request to the end of its head (`--request-head-timeout`).
    public var head: Duration
    /// From the end of a request's head to the end of its body (`--body-timeout`).
    public var body: Duration
    /// Without a request between two requests, or after connecting (`--idle-timeout`). Checked lazily: an idle
    /// connection is closed between one and two of these after its last request.
    public var idle: Duration

    public static let defaults = ConnectionTimeouts(head: .seconds(10), body: .seconds(30), idle: .seconds(60))

    /// - Parameters:
    ///   - head: The request-head time-out.
    ///   - body: The body time-out.
    ///   - idle: The idle keep-alive time-out.
    public init(head: Duration, body: Duration, idle: Duration) {
        self.head = head
        self.body = body
        self.idle = idle
    }
}

/// The time-outs of one connection, driven by ``RequestBytesHandler`` (which sees raw bytes, in front of the HTTP
/// decoder) and ``HTTPConnectionHandler`` (which sees requests and responses). Bound to the connection's event loop.
///
/// The cached-token path pays for none of it but a counter and a few stores: a timer is armed only when a read
/// ends in the middle of a request head or body, which a client that sends each request in one write never does,
/// and the idle check is one scheduled task per connection and idle period that compares a request counter.
final class ConnectionDeadlines {
    private enum Phase {
        /// Between requests: no head yet.
        case idle
        /// The head is complete, the body is not.
        case body
        /// The request is complete; its response is being prepared or written. No time-out: the broker and the proxy
        /// bound their own work.
        case responding
    }

    private let timeouts: ConnectionTimeouts
    private let eventLoop: any EventLoop
    private var phase = Phase.idle
    /// Bytes have arrived since the last head, so a request has begun.
    private var headStarted = false
    /// Heads received so far; timers compare it to tell whether progress was made.
    private var requests: UInt64 = 0
    private var headTimer: Scheduled<Void>?
    private var bodyTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    /// Armed at shutdown: closes the connection when the drain time-out expires, whatever it is doing.
    private var drainTimer: Scheduled<Void>?
    private var requestsAtIdleCheck: UInt64 = 0
    private var close: (() -> Void)?

    init(timeouts: ConnectionTimeouts, eventLoop: any EventLoop) {
        self.timeouts = timeouts
        self.eventLoop = eventLoop
    }

    /// Starts the idle check; `close` closes the connection when a time-out expires.
    func start(close: @escaping () -> Void) {
        self.close = close
        self.scheduleIdleCheck()
    }

    /// Cancels every timer (the connection closed).
    func stop() {
        self.headTimer?.cancel()
        self.bodyTimer?.cancel()
        self.idleTimer?.cancel()
        self.drainTimer?.cancel()
        self.headTimer = nil
        self.bodyTimer = nil
        self.idleTimer = nil
        self.drainTimer = nil
        self.close = nil
    }

    /// The server is shutting down: the connection closes at `deadline` unless it has closed by then (an idle one
    /// closes at once, one with a request in progress after its response).
    func drain(until deadline: NIODeadline) {
        guard self.drainTimer == nil, self.close != nil else { return }
        self.drainTimer = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.close?()
        }
    }

    // MARK: - Raw bytes

    /// Some bytes arrived.
    func bytesRead() {
        if case .idle = self.phase { self.headStarted = true }
    }

    /// A read ended: arm the head or body time-out if it ended inside a request.
    func readEnded() {
        switch self.phase {
        case .idle where self.headStarted && self.headTimer == nil:
            self.headTimer = self.schedule(after: self.timeouts.head, reason: "request head")
        case .body where self.bodyTimer == nil:
            self.bodyTimer = self.schedule(after: self.timeouts.body, reason: "request body")
        default:
            break
        }
    }

    // MARK: - Requests

    /// A request head is complete.
    func headReceived() {
        self.requests &+= 1
        self.phase = .body
        self.headStarted = false
        if let timer = self.headTimer {
            timer.cancel()
            self.headTimer = nil
        }
    }

    /// A piece of a streamed body arrived: the body time-out counts from here (the next read that ends inside the
    /// body arms it again), so that a large upload is bounded by its progress, not by its total time.
    func bodyProgressed() {
        if let timer = self.bodyTimer {
            timer.cancel()
            self.bodyTimer = nil
        }
    }

    /// A request is complete.
    func requestReceived() {
        self.phase = .responding
        if let timer = self.bodyTimer {
            timer.cancel()
            self.bodyTimer = nil
        }
    }

    /// The response to the current request is written.
    func responseFinished() {
        self.phase = .idle
    }

    // MARK: - Timers

    private func schedule(after timeout: Duration, reason: String) -> Scheduled<Void> {
        let armedAt = self.requests
        let phase = self.phase
        return self.eventLoop.assumeIsolated().scheduleTask(in: .init(timeout)) {
            // A head (or the end of the body) that arrived meanwhile has cancelled this timer; the comparison makes
            // sure a timer that raced with its cancellation does not close a connection that made progress.
            guard self.requests == armedAt, Self.same(self.phase, phase) else { return }
            self.close?()
        }
    }

    private func scheduleIdleCheck() {
        self.idleTimer = self.eventLoop.assumeIsolated().scheduleTask(in: .init(self.timeouts.idle)) {
            self.idleTimer = nil
            guard self.close != nil else { return }
            if case .idle = self.phase, !self.headStarted, self.requests == self.requestsAtIdleCheck {
                self.close?()
                return
            }
            self.requestsAtIdleCheck = self.requests
            self.scheduleIdleCheck()
        }
    }

    private static func same(_ lhs: Phase, _ rhs: Phase) -> Bool {
        switch (lhs, rhs) {
        case (.idle, .idle), (.body, .body), (.responding, .responding): true
        default: false
        }
    }
}

/// The first handler of a connection: tells ``ConnectionDeadlines`` when bytes arrive and when a read ends, which the
/// HTTP decoder behind it does not say, and when shutdown asks the connection to quiesce.
final class RequestBytesHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let deadlines: ConnectionDeadlines
    private let drain: DrainDeadline?

    init(deadlines: ConnectionDeadlines, drain: DrainDeadline? = nil) {
        self.deadlines = deadlines
        self.drain = drain
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.deadlines.start { bound.value.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadlines.stop()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadlines.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.deadlines.bytesRead()
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        self.deadlines.readEnded()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The HTTP codec behind this one (``HTTPServerCodec``) finishes the request in progress and closes; this bounds how
        // long that may take.
        if event is ChannelShouldQuiesceEvent, let deadline = self.drain?.deadline {
            self.deadlines.drain(until: deadline)
        }
        context.fireUserInboundEventTriggered(event)
    }
}
