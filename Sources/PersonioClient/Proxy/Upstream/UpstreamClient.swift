import NIOCore
import NIOPosix
import NIOSSL
import VaultLocks

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension PersonioProxy {
    /// How the proxy route's connections to Personio are made, kept and bounded.
    ///
    /// Each event loop of the proxy has its own connections, kept alive between requests, so that a proxied request
    /// runs on one loop from the caller's socket to Personio's and back: no lock, no hop.
    public struct UpstreamConfiguration: Sendable {
        /// The limit for a TCP connection to be made.
        public var connectTimeout: Duration = PersonioAuthClient.defaultConnectTimeout
        /// The longest time without progress once an answer's head has arrived (the limit up to the head is each
        /// request's own time-out): Personio silent, or a caller that takes none of the answer. Each piece Personio
        /// sends and each piece the caller's socket takes restarts it, so a slow download is bounded by its progress.
        public var readTimeout: Duration = PersonioAuthClient.defaultReadTimeout
        /// How long an idle kept-alive connection stays open.
        public var idleTimeout: Duration = .seconds(60)
        /// The most connections to one host per event loop, busy, idle and being made; requests beyond wait for one
        /// (within their time-out).
        public var maximumConnectionsPerHost = 64
        /// How certificates are verified for `https` bases: by default the system's trust roots, full
        /// verification (chain and host name).
        public var tls: TLSConfiguration = .makeClientConfiguration()
        /// Every connection goes to this host and port instead of the base URL's (the `Host` header and TLS name
        /// stay the base URL's): for test servers that must never reach a network.
        public var connectOverride: (host: String, port: Int)?
        /// Resolves the base URL's host in place of the system's resolver, one per connection to be made: for tests
        /// of a name with an IPv6 and an IPv4 address, which this machine's hosts file may not have.
        /// ``connectOverride`` wins over it.
        package var resolver: (@Sendable (any EventLoop) -> any Resolver)?

        public init() {}
    }
}

/// Why an upstream exchange failed, before ``ProxyExchange`` turns it into a sanitized ``PersonioAuthError``.
enum UpstreamError: Error {
    /// No answer head within the request's time-out (connecting, waiting for a connection and sending included).
    case headTimeout
    /// Personio fell silent for the read time-out while the body streamed.
    case readTimeout
    /// The caller took none of the answer for the read time-out.
    case callerStalled
    /// The connection closed (or failed) before the answer's head.
    case closedBeforeHead((any Error)?)
    /// The connection closed (or failed) before the answer's end.
    case closedMidAnswer((any Error)?)
    /// The connection could not be made.
    case connectFailed(any Error)
    /// The exchange was cancelled.
    case cancelled
    /// The proxy is shutting down.
    case shutDown
}

/// One event loop's connections to Personio's hosts, one pool per origin.
///
/// Bound to its event loop: every method must be called there. Time-outs need no timer per request: one timer per
/// client fires at the earliest deadline of everything it holds (an answer's head, a silence, an idle connection),
/// times out what is due and is armed again for the next; with every request on the same time-out, that is one
/// timer per time-out period, not one per request. (`Sendable` so that the proxy can hold one per loop; all its
/// state is touched on its loop only, which its entry points assert.)
final class UpstreamClient: @unchecked Sendable {
    let eventLoop: any EventLoop
    let configuration: PersonioProxy.UpstreamConfiguration
    private let sslContext: NIOSSLContext?
    private var pools: [UpstreamOrigin: UpstreamPool] = [:]
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private(set) var isShutDown = false

    init(eventLoop: any EventLoop, configuration: PersonioProxy.UpstreamConfiguration, sslContext: NIOSSLContext?) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.sslContext = sslContext
    }

    /// Sends `exchange` on a connection to `origin`: an idle one, a new one, or the next to be free.
    func execute(_ exchange: ProxyExchange, to origin: UpstreamOrigin) {
        self.eventLoop.assertInEventLoop()
        guard !self.isShutDown else {
            exchange.upstreamFailed(.shutDown)
            return
        }
        let pool: UpstreamPool
        if let existing = self.pools[origin] {
            pool = existing
        } else {
            pool = UpstreamPool(client: self, origin: origin)
            self.pools[origin] = pool
        }
        self.watch(exchange.headDeadline)
        pool.lease(for: exchange)
    }

    /// Makes sure the timer fires no later than `deadline`.
    func watch(_ deadline: NIODeadline) {
        if let armed = self.timerDeadline, armed <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            self.timerDeadline = nil
            self.sweep()
        }
    }

    /// Times out what is due, closes connections idle too long, forgets empty pools, and arms the timer again.
    private func sweep() {
        let now = NIODeadline.now()
        var next: NIODeadline?
        for (origin, pool) in self.pools {
            if let deadline = pool.sweep(now: now) {
                next = min(next ?? deadline, deadline)
            } else if pool.isEmpty {
                self.pools[origin] = nil
            }
        }
        if let next { self.watch(next) }
    }

    /// Opens a channel to `origin`, with TLS for `https`; its last handler is an ``UpstreamChannelHandler``.
    func connect(to origin: UpstreamOrigin) -> EventLoopFuture<any Channel> {
        let sslContext = self.sslContext
        var bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(TimeAmount(self.configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if origin.tls {
                        guard let sslContext else { throw UpstreamError.shutDown }
                        // An IP address is not a name for SNI: the certificate is then checked against the address.
                        let name = origin.host.isIPAddressLiteral ? nil : origin.host
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: name))
                    }
                    // The request is encoded and the answer parsed by the vault; a handler of its own for each of
                    // NIO's attempts: only the winner's is attached to the connection.
                    try pipeline.addHandler(UpstreamChannelHandler())
                }
            }
        if let override = self.configuration.connectOverride {
            return bootstrap.connect(host: override.host, port: override.port)
        }
        if let resolver = self.configuration.resolver {
            bootstrap = bootstrap.resolver(resolver(self.eventLoop))
        }
        return bootstrap.connect(host: origin.host, port: origin.port)
    }

    /// Closes every connection and fails every request still waiting or in flight.
    func shutdown() {
        self.eventLoop.assertInEventLoop()
        self.isShutDown = true
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
        let pools = self.pools
        self.pools = [:]
        for pool in pools.values { pool.shutdown() }
    }
}

/// The connections of one event loop to one origin: idle ones are reused last-in first-out (the warmest first), at
/// most ``PersonioProxy/UpstreamConfiguration/maximumConnectionsPerHost`` exist, and requests beyond wait in
/// arrival order.
final class UpstreamPool {
    private let client: UpstreamClient
    let origin: UpstreamOrigin
    /// Every connection: being made, busy or idle.
    private var connections: [UpstreamConnection] = []
    private var idle: [UpstreamConnection] = []
    /// Requests waiting for a connection; ones that gave up meanwhile are skipped when their turn comes.
    private var waiters = CircularBuffer<ProxyExchange>()

    init(client: UpstreamClient, origin: UpstreamOrigin) {
        self.client = client
        self.origin = origin
    }

    var isEmpty: Bool { self.connections.isEmpty && self.waiters.isEmpty }

    var eventLoop: any EventLoop { self.client.eventLoop }

    /// Makes sure the client's timer fires no later than `deadline`.
    func watch(_ deadline: NIODeadline) {
        self.client.watch(deadline)
    }

    func lease(for exchange: ProxyExchange) {
        while let connection = self.idle.popLast() {
            if connection.isUsable {
                connection.assign(exchange, reused: true)
                return
            }
            connection.close()
        }
        if self.connections.count < self.client.configuration.maximumConnectionsPerHost {
            self.connect(for: exchange)
        } else {
            self.waiters.append(exchange)
        }
    }

    private func connect(for exchange: ProxyExchange) {
        let connection = UpstreamConnection(pool: self, readTimeout: self.client.configuration.readTimeout)
        connection.pending = exchange
        self.connections.append(connection)
        self.client.connect(to: self.origin).assumeIsolated().whenComplete { result in
            let pending = connection.pending
            connection.pending = nil
            switch result {
            case .success(let channel):
                guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamChannelHandler.self)
                else {
                    channel.close(promise: nil)
                    self.remove(connection)
                    pending?.upstreamFailed(.closedBeforeHead(nil))
                    return
                }
                connection.attach(handler, channel: channel)
                guard connection.isUsable else {
                    // Shut down meanwhile (its pending exchange failed then), or closed at once by Personio.
                    self.remove(connection)
                    if let pending, pending.isWaitingForConnection { pending.upstreamFailed(.closedBeforeHead(nil)) }
                    return
                }
                if let pending, pending.isWaitingForConnection {
                    connection.assign(pending, reused: false)
                } else {
                    self.release(connection)
                }
            case .failure(let error):
                self.remove(connection)
                if let pending, pending.isWaitingForConnection {
                    pending.upstreamFailed(.connectFailed(error))
                }
            }
        }
    }

    /// A connection whose exchange completed and that can carry another: to the next waiter, or idle.
    func release(_ connection: UpstreamConnection) {
        while let waiter = self.waiters.popFirst() {
            if waiter.isWaitingForConnection {
                connection.assign(waiter, reused: true)
                return
            }
        }
        guard !self.client.isShutDown, connection.isUsable else {
            connection.close()
            return
        }
        let now = NIODeadline.now()
        connection.becameIdle(at: now)
        self.idle.append(connection)
        self.client.watch(now + TimeAmount(self.client.configuration.idleTimeout))
    }

    /// A connection that closed or failed to connect; a waiter may now have a new one.
    func remove(_ connection: UpstreamConnection) {
        if let index = self.connections.firstIndex(where: { $0 === connection }) {
            self.connections.remove(at: index)
        }
        if let index = self.idle.firstIndex(where: { $0 === connection }) {
            self.idle.remove(at: index)
        }
        while !self.client.isShutDown,
            self.connections.count < self.client.configuration.maximumConnectionsPerHost,
            let waiter = self.waiters.popFirst()
        {
            if waiter.isWaitingForConnection { self.connect(for: waiter) }
        }
    }

    /// Times out what is due; returns the next deadline, or nil when nothing waits on one.
    func sweep(now: NIODeadline) -> NIODeadline? {
        var next: NIODeadline?
        let idleTimeout = TimeAmount(self.client.configuration.idleTimeout)
        for connection in self.connections {
            if let deadline = connection.checkDeadlines(now: now, idleTimeout: idleTimeout) {
                next = min(next ?? deadline, deadline)
            }
        }
        if !self.waiters.isEmpty {
            var waiting = CircularBuffer<ProxyExchange>(initialCapacity: self.waiters.count)
            while let waiter = self.waiters.popFirst() {
                guard waiter.isWaitingForConnection else { continue }
                if waiter.headDeadline <= now {
                    waiter.upstreamFailed(.headTimeout)
                } else {
                    waiting.append(waiter)
                    next = min(next ?? waiter.headDeadline, waiter.headDeadline)
                }
            }
            self.waiters = waiting
        }
        return next
    }

    func shutdown() {
        let waiters = self.waiters
        self.waiters.removeAll()
        for waiter in waiters where waiter.isWaitingForConnection { waiter.upstreamFailed(.shutDown) }
        for connection in self.connections { connection.shutdown() }
    }
}

/// The TLS contexts of the process, one per configuration, made on first use: making one loads the trust roots
/// (the system's bundle: milliseconds of CPU), which every proxy of the process would otherwise repeat.
final class TLSContexts: Sendable {
    static let shared = TLSContexts()

    private let contexts = Locked<[(TLSConfiguration, Result<NIOSSLContext, any Error>)]>([])

    func context(for configuration: TLSConfiguration) -> Result<NIOSSLContext, any Error> {
        self.contexts.withLock { contexts in
            if let made = contexts.first(where: { $0.0.bestEffortEquals(configuration) }) { return made.1 }
            let made = Result { try NIOSSLContext(configuration: configuration) }
            contexts.append((configuration, made))
            return made
        }
    }
}

extension String {
    /// Whether this is an IPv4 or IPv6 address rather than a host name.
    var isIPAddressLiteral: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, self, &v4) == 1 || inet_pton(AF_INET6, self, &v6) == 1
    }
}
