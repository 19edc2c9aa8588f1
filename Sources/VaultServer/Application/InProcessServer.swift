import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PersonioClient
import TokenBroker
import VaultAPI
import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Both sockets' request handling as ``buildApplication(configuration:logger:)`` wires it (the same route tables,
/// handlers, dispatchers, body limit and per-connection pipeline), on channels the caller supplies instead of
/// accepted sockets: for the fuzz harness (Fuzz/), which writes untrusted bytes into an in-memory channel.
///
/// What it leaves out is what needs a kernel socket: the peer's credentials (the caller is given), the connection
/// caps, the zeroing allocator and the listeners. Personio is never reached: both HTTP clients go through a proxy
/// at a closed loopback port, so every upstream call fails at once without leaving the host.
package final class InProcessServer: Sendable {
    package let vault: Vault
    /// Where the HTTP clients run; free for the caller's own timers.
    package let group: any EventLoopGroup
    private let broker: TokenBroker
    private let admin: RequestDispatcher
    private let app: RequestDispatcher
    private let personio: PersonioAuthClient
    private let proxy: PersonioProxy
    private let httpClient: HTTPClient
    private let logger: Logger
    private let timeouts: ConnectionTimeouts

    /// - Parameters:
    ///   - vault: An open vault (the caller closes it after ``shutdown()``).
    ///   - group: Where the HTTP clients run.
    ///   - logger: For every request's log lines.
    ///   - upstreamTimeout: How long a token exchange or proxied request may take.
    package init(
        vault: Vault,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        upstreamTimeout: Duration = .milliseconds(500)
    ) {
        var configuration = PersonioAuthClient.httpClientConfiguration(
            connectTimeout: upstreamTimeout,
            readTimeout: upstreamTimeout
        )
        // Port 9 (discard) on loopback: nothing listens there, so a connection is refused at once.
        configuration.proxy = .server(host: "127.0.0.1", port: 9)
        let httpClient = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        let personio = PersonioAuthClient(httpClient: httpClient, logger: logger, timeout: upstreamTimeout)
        var proxyConfiguration = PersonioProxy.UpstreamConfiguration()
        proxyConfiguration.connectTimeout = upstreamTimeout
        proxyConfiguration.readTimeout = upstreamTimeout
        proxyConfiguration.connectOverride = (host: "127.0.0.1", port: 9)
        let proxy = PersonioProxy(eventLoopsOf: group, configuration: proxyConfiguration, logger: logger)
        let authorization = AdminAuthorization(daemonUID: geteuid(), adminGID: nil)
        let handling = RequestHandling(
            vault: vault,
            personio: personio,
            proxy: proxy,
            proxyTimeout: upstreamTimeout,
            metrics: ServerMetrics(),
            authorizeAdmin: { authorization.allows($0) },
            adminLogger: logger,
            appLogger: logger,
            logger: logger
        )
        self.admin = handling.admin
        self.app = handling.app
        self.vault = vault
        self.broker = handling.broker
        self.group = group
        self.personio = personio
        self.proxy = proxy
        self.httpClient = httpClient
        self.logger = logger
        self.timeouts = .defaults
    }

    /// Adds the connection pipeline of `socket` to `channel` (which must be on its event loop), serving `caller`:
    /// the byte-level deadlines, then the HTTP/1.1 codec and the connection handler in front of the socket's
    /// dispatcher, linked (``HTTPServer/addHTTPHandlers(_:to:)``), as ``HTTPServer`` sets up each accepted connection.
    package func configure(_ channel: any Channel, socket: SocketKind, caller: Caller) throws {
        let dispatcher = socket == .admin ? self.admin : self.app
        let deadlines = ConnectionDeadlines(timeouts: self.timeouts, eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(RequestBytesHandler(deadlines: deadlines))
        try HTTPServer.addHTTPHandlers(
            HTTPConnectionHandler(
                dispatcher: dispatcher,
                caller: caller,
                logger: dispatcher.logger,
                deadlines: deadlines
            ),
            to: channel.pipeline.syncOperations
        )
    }

    /// Decodes `body` as the routes decode a request body (secret fields scanned out first when `containsSecrets`).
    /// - Throws: `RequestDecodingError` or the secret scanner's error, as a route would see them.
    package static func decodeBody<T: Decodable & Sendable>(
        _ body: [UInt8],
        as type: T.Type,
        containsSecrets: Bool
    ) throws -> T {
        try RequestBody(ByteBuffer(bytes: body)).decode(type, extractingSecrets: containsSecrets)
    }

    /// The values of the secret members of `body` as the routes take them out (``SecretFieldScanner``), or nil when
    /// the scanner refuses the body.
    package static func secretValues(in body: [UInt8]) -> [[UInt8]]? {
        var copy = body
        return copy.withUnsafeMutableBytes { bytes in
            guard let secrets = try? SecretFieldScanner.extract(bytes) else { return nil }
            return secrets.values.map { secret in secret.withUnsafeBytes { Array($0) } }
        }
    }

    /// The body of the problem a route answers for `error`, as a client receives it.
    package static func problemBody(for error: any Error, logger: Logger) -> [UInt8] {
        let response = ErrorResponse.response(for: error, requestID: "fuzz", logger: logger)
        return response.body.map { Array($0.readableBytesView) } ?? []
    }

    /// Decodes `body` as `POST …/enable` does (empty or `{}`).
    package static func decodeEmptyBody(_ body: [UInt8]) throws {
        _ = try Self.decodeBody(body, as: EmptyRequest.self, containsSecrets: false)
    }

    /// Runs the broker's background work (change feed, revoker, access trail) until cancelled.
    package func runBroker() async {
        await self.broker.run()
    }

    /// Closes the HTTP clients.
    package func shutdown() async {
        await shutDown(personio: self.personio, proxy: self.proxy, logger: self.logger)
        try? await self.httpClient.shutdown()
    }
}
