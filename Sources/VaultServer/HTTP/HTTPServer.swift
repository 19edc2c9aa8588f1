import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import VaultCore
import VaultLocks
import ZeroedBuffers

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's listeners (admin and app socket) and their connections, as one service: it serves until a graceful
/// shutdown, then stops accepting, lets requests in progress finish, and closes every connection.
final class HTTPServer: Service, Sendable {
    /// One listening socket and what answers on it.
    struct Listener: Sendable {
        var socket: ListeningSocket
        var dispatcher: RequestDispatcher
        /// How the connection caps treat a caller, judged from its kernel credentials and groups alone.
        var standing: @Sendable (Caller) -> ConnectionLimiter.Standing
    }

    /// What every connection is held to.
    struct ConnectionPolicy: Sendable {
        var limiter: ConnectionLimiter
        var timeouts: ConnectionTimeouts
    }

    private let channels: [any Channel]
    /// One per listener: each tracks its listener's connections and quiesces them at shutdown.
    private let quiescing: [ServerQuiescingHelper]
    private let sockets: [ListeningSocket]
    private let drain: DrainDeadline
    private let logger: Logger
    /// How long requests in progress may take to finish at shutdown before their connections are closed anyway.
    private let drainTimeout: Duration

    private init(
        channels: [any Channel],
        quiescing: [ServerQuiescingHelper],
        sockets: [ListeningSocket],
        drain: DrainDeadline,
        logger: Logger,
        drainTimeout: Duration
    ) {
        self.channels = channels
        self.quiescing = quiescing
        self.sockets = sockets
        self.drain = drain
        self.logger = logger
        self.drainTimeout = drainTimeout
    }

    /// Adopts every listener's socket into NIO; they accept connections from here on.
    /// - Throws: NIO's error when a socket cannot be adopted; listeners adopted so far are closed again.
    static func start(
        _ listeners: [Listener],
        group: any EventLoopGroup,
        logger: Logger,
        drainTimeout: Duration,
        policy: ConnectionPolicy
    ) async throws -> HTTPServer {
        let drain = DrainDeadline()
        var channels: [any Channel] = []
        var quiescing: [ServerQuiescingHelper] = []
        var adopted = 0
        do {
            for listener in listeners {
                adopted += 1
                let helper = ServerQuiescingHelper(group: group)
                quiescing.append(helper)
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                helper.makeServerChannelHandler(channel: channel)
                            )
                        }
                    }
                    .childChannelOption(.allowRemoteHalfClosure, value: true)
                    // Admin requests carry secrets: every buffer of such a connection (socket reads, the body, the
                    // parser's) is zeroed when freed. The app socket keeps NIO's allocator (its hot path).
                    .childChannelOption(
                        .allocator,
                        value: listener.dispatcher.zeroesFreedBuffers
                            ? ZeroingAllocator.allocator : ByteBufferAllocator()
                    )
                    .childChannelInitializer { channel in
                        Self.initializeConnection(
                            channel,
                            listener: listener,
                            policy: policy,
                            drain: drain
                        )
                    }
                    .withBoundSocket(listener.socket.descriptor)
                    .get()
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            // NIO owns the descriptor it failed on; the ones after it were never handed over.
            for listener in listeners.dropFirst(adopted) { close(listener.socket.descriptor) }
            throw error
        }
        return HTTPServer(
            channels: channels,
            quiescing: quiescing,
            sockets: listeners.map(\.socket),
            drain: drain,
            logger: logger,
            drainTimeout: drainTimeout
        )
    }

    /// The HTTP/1.1 handler every connection of both sockets has: ``HTTPServerCodec``, the vault's own parser and
    /// writer in one handler, where NIO's decoder, pipelining handler and encoder stood (docs/decisions.md, "The app
    /// socket's half").
    ///
    /// It writes answer heads as they are, with no outbound header validation (NIO's validator re-checked every byte
    /// of every header of every response, about 3,800 instructions per answer): no header the vault writes can fail
    /// it. Its own are fixed names with values it makes (numbers, validated connection ids, fixed media types), and
    /// the only ones from outside, those of a proxied answer, pass `PersonioProxy.returnedResponseHeaders` first:
    /// allow-listed token names, values of printable ASCII only (docs/decisions.md, "No outbound header validator on
    /// the server").
    static func addHTTPHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(HTTPServerCodec())
    }

    /// ``addHTTPHandlers(to:)`` with `handler` right behind the codec, the two linked so that request and answer
    /// parts pass between them by a call rather than through the pipeline (``HTTPServerCodec/link(_:context:)``).
    static func addHTTPHandlers(
        _ handler: HTTPConnectionHandler,
        to pipeline: ChannelPipeline.SynchronousOperations
    ) throws {
        let codec = HTTPServerCodec()
        try pipeline.addHandler(codec)
        try pipeline.addHandler(handler)
        let codecContext = try pipeline.context(handler: codec)
        let handlerContext = try pipeline.context(handler: handler)
        codec.link(handler, context: handlerContext)
        handler.link(codec, context: codecContext)
    }

    /// Reads what the kernel knows about the peer, admits the connection or closes it at once when a cap is reached,
    /// then sets up the HTTP/1.1 pipeline with a handler that knows the caller.
    ///
    /// Everything here runs once per connection, on the connection's event loop, where NIO completes the socket
    /// option calls at once.
    private static func initializeConnection(
        _ channel: any Channel,
        listener: Listener,
        policy: ConnectionPolicy,
        drain: DrainDeadline
    ) -> EventLoopFuture<Void> {
        guard let provider = channel as? any SocketOptionProvider, let credentials = Kernel.peerCredentials(of: channel)
        else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let dispatcher = listener.dispatcher
        return credentials.flatMapThrowing { credentials -> PeerIdentity.Reading in
            // Accepted as shutdown began: the quiescing helper's event may have gone out before this pipeline
            // existed to see it, so such a connection is closed here instead.
            guard drain.deadline == nil else { throw ShuttingDown() }
            let groups = Kernel.peerGroups(of: provider)
            // Judged from the kernel's record alone (no /proc), and before anything else is read or opened for it.
            let standing = listener.standing(PeerIdentity.caller(credentials, groups: groups, pidfd: nil))
            let ticket: ConnectionLimiter.Ticket
            switch policy.limiter.admit(socket: dispatcher.socket, uid: credentials.uid, standing: standing) {
            case .success(let admitted):
                ticket = admitted
            case .failure(let refusal):
                dispatcher.logger.debug(
                    "connection refused",
                    metadata: ["peer.uid": "\(credentials.uid)", "reason": "\(refusal)"]
                )
                throw refusal
            }
            channel.closeFuture.whenComplete { _ in policy.limiter.release(ticket) }

            let pidfd = Kernel.peerPidfd(of: provider)
            // The pidfd is needed only to confirm what /proc said (unit and executable, read in the same window).
            defer { if let pidfd { close(pidfd) } }
            return PeerIdentity.read(credentials, groups: groups, pidfd: pidfd)
        }.flatMap { reading in
            // A hash not in the cache is made on a thread pool; the channel is registered, and its first request
            // read, only once the caller is complete.
            reading.complete(on: channel.eventLoop)
        }.flatMapThrowing { caller in
            guard drain.deadline == nil else { throw ShuttingDown() }
            var logger = dispatcher.logger
            logger[metadataKey: "peer.uid"] = "\(caller.uid)"
            logger[metadataKey: "peer.pid"] = "\(caller.pid)"
            logger[metadataKey: "peer.comm"] = "\(caller.comm)"
            if let unit = caller.unit { logger[metadataKey: "peer.unit"] = "\(unit)" }
            if let exe = caller.exe { logger[metadataKey: "peer.exe"] = "\(exe)" }
            if let hash = caller.exeSHA256 { logger[metadataKey: "peer.exe_sha256"] = "\(hash)" }
            logger.trace("connection accepted", metadata: ["peer.gid": "\(caller.gid)"])
            let deadlines = ConnectionDeadlines(timeouts: policy.timeouts, eventLoop: channel.eventLoop)
            try channel.pipeline.syncOperations.addHandler(RequestBytesHandler(deadlines: deadlines, drain: drain))
            try Self.addHTTPHandlers(
                HTTPConnectionHandler(dispatcher: dispatcher, caller: caller, logger: logger, deadlines: deadlines),
                to: channel.pipeline.syncOperations
            )
        }
    }

    /// Serves until graceful shutdown (or cancellation), then stops.
    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: stop all the same, without waiting for requests in progress.
        }
        await self.stop()
    }

    /// Stops accepting, removes the socket files this daemon bound, asks every connection to finish its current
    /// request and close (NIOExtras' quiescing: an idle keep-alive connection closes at once), and closes those still
    /// open when the drain time-out expires.
    func stop() async {
        // Set before the first quiesce event goes out: each connection reads it when the event arrives.
        let timeout = Task.isCancelled ? Duration.zero : self.drainTimeout
        self.drain.begin(closingAt: .now() + .init(timeout))
        var drained: [EventLoopFuture<Void>] = []
        for (helper, channel) in zip(self.quiescing, self.channels) {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            helper.initiateShutdown(promise: promise)
            drained.append(promise.futureResult)
        }
        for channel in self.channels {
            try? await channel.closeFuture.get()
        }
        for socket in self.sockets {
            UnixSocketFile.remove(socket)
        }
        for future in drained {
            try? await future.get()
        }
    }
}

/// When the connections still open at shutdown are closed, whatever they are doing: unset until shutdown begins.
final class DrainDeadline: Sendable {
    private let value = Locked<NIODeadline?>(nil)

    /// The moment connections close anyway; nil while the server is not shutting down.
    var deadline: NIODeadline? { self.value.withLock { $0 } }

    /// Marks the start of shutdown.
    func begin(closingAt deadline: NIODeadline) {
        self.value.withLock { $0 = $0 ?? deadline }
    }
}

/// A connection accepted after shutdown began (it is closed at once).
struct ShuttingDown: Error, CustomStringConvertible {
    var description: String { "the server is shutting down" }
}
