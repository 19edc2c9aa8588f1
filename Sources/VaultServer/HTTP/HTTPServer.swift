import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PersonioAuth
import ServiceLifecycle
import Synchronization
import VaultCore

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
    private let sockets: [ListeningSocket]
    private let connections: ConnectionTracker
    private let logger: Logger
    /// How long requests in progress may take to finish at shutdown before their connections are closed anyway.
    private let drainTimeout: Duration

    private init(
        channels: [any Channel],
        sockets: [ListeningSocket],
        connections: ConnectionTracker,
        logger: Logger,
        drainTimeout: Duration
    ) {
        self.channels = channels
        self.sockets = sockets
        self.connections = connections
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
        let connections = ConnectionTracker()
        var channels: [any Channel] = []
        var adopted = 0
        do {
            for listener in listeners {
                adopted += 1
                let channel = try await ServerBootstrap(group: group)
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
                            connections: connections
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
            sockets: listeners.map(\.socket),
            connections: connections,
            logger: logger,
            drainTimeout: drainTimeout
        )
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
        connections: ConnectionTracker
    ) -> EventLoopFuture<Void> {
        guard let provider = channel as? any SocketOptionProvider, let credentials = Kernel.peerCredentials(of: channel)
        else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let dispatcher = listener.dispatcher
        return credentials.flatMapThrowing { credentials in
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
            connections.add(channel)

            let pidfd = Kernel.peerPidfd(of: provider)
            // The pidfd is needed only to confirm what /proc said; the exe selector will read /proc/PID/exe in the
            // same window, through the same directory descriptor.
            defer { if let pidfd { close(pidfd) } }
            let caller = PeerIdentity.caller(credentials, groups: groups, pidfd: pidfd)
            var logger = dispatcher.logger
            logger[metadataKey: "peer.uid"] = "\(caller.uid)"
            logger[metadataKey: "peer.pid"] = "\(caller.pid)"
            logger[metadataKey: "peer.comm"] = "\(caller.comm)"
            if let unit = caller.unit { logger[metadataKey: "peer.unit"] = "\(unit)" }
            logger.trace("connection accepted", metadata: ["peer.gid": "\(caller.gid)"])
            let deadlines = ConnectionDeadlines(timeouts: policy.timeouts, eventLoop: channel.eventLoop)
            try channel.pipeline.syncOperations.addHandler(RequestBytesHandler(deadlines: deadlines))
            // The protocol error handler is left out: the connection handler answers malformed requests itself, with
            // a problem+json body like every other error.
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: false)
            try channel.pipeline.syncOperations.addHandler(
                HTTPConnectionHandler(dispatcher: dispatcher, caller: caller, logger: logger, deadlines: deadlines)
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
    /// request and close, and closes those still open after the drain time-out.
    func stop() async {
        for channel in self.channels {
            try? await channel.close()
        }
        for socket in self.sockets {
            UnixSocketFile.remove(socket)
        }
        let open = self.connections.beginShutdown()
        guard !open.isEmpty else { return }
        self.logger.debug("draining connections", metadata: ["connections": "\(open.count)"])
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let timeout = Task.isCancelled ? .zero : self.drainTimeout
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for channel in open { try? await channel.closeFuture.get() }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            if await group.next() == false {
                for channel in open { channel.close(promise: nil) }
            }
            group.cancelAll()
        }
    }
}

/// The open connections, so that shutdown can reach them.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var shuttingDown = false
    }

    private let state = Mutex(State())

    /// Tracks `channel` until it closes; closes it at once when shutdown has begun.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = self.state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.channels[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { _ in
            _ = self.state.withLock { $0.channels.removeValue(forKey: id) }
        }
    }

    /// Marks the start of shutdown and returns the connections open now.
    func beginShutdown() -> [any Channel] {
        self.state.withLock { state in
            state.shuttingDown = true
            return Array(state.channels.values)
        }
    }
}
