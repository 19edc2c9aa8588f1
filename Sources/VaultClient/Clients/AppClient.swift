import AsyncHTTPClient
import NIOCore
import VaultAPI

/// A client for the daemon's app socket (DESIGN §7): the API local programs use to get short-lived tokens.
///
/// ```swift
/// let token = try await AppClient().token("acme", minTTL: 60)
/// request.headers = token.headers   // Authorization: Bearer …, X-Personio-App-ID, …
/// ```
///
/// Calls are `async` and hold no thread while they wait; cancelling the awaiting task ends a call at once with
/// `CancellationError`. A client made with ``init(socketPath:timeout:environment:)`` needs no shutting down (it
/// sends through a process-wide HTTP client); ``withClient(socketPath:timeout:environment:eventLoopGroup:_:)``
/// runs on an event loop group of the caller's.
public struct AppClient: Sendable {
    let transport: VaultTransport

    /// The socket this client talks to.
    public var socketPath: String { self.transport.socketPath }

    /// A client for the app socket.
    ///
    /// - Parameters:
    ///   - socketPath: The app socket; nil resolves `CONNVAULT_APP_SOCKET`, then `/run/connvault/app.sock`.
    ///   - timeout: The limit for each request, connect to last byte. 30 s by default.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    public init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketPath.resolve(socketPath, kind: .app, environment: environment)
        self.init(path: path, timeout: timeout, httpClient: VaultHTTPClients.shared(kind: .app, socketPath: path))
    }

    init(path: String, timeout: Duration, httpClient: HTTPClient) {
        self.init(transport: VaultTransport(socketPath: path, kind: .app, timeout: timeout, httpClient: httpClient))
    }

    init(transport: VaultTransport) {
        self.transport = transport
    }

    /// Runs `body` with a client whose connections live on `eventLoopGroup`, and shuts that client down when `body`
    /// returns or throws.
    ///
    /// - Parameters:
    ///   - socketPath: As for ``init(socketPath:timeout:environment:)``.
    ///   - eventLoopGroup: The group the client's connections run on.
    /// - Throws: What `body` throws, or the HTTP client's shutdown error.
    public static func withClient<Result>(
        socketPath: String? = nil,
        timeout: Duration = .seconds(30),
        environment: [String: String]? = nil,
        eventLoopGroup: any EventLoopGroup,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (AppClient) async throws -> Result
    ) async throws -> Result {
        try await VaultTransport.with(
            kind: .app,
            socketPath: socketPath,
            timeout: timeout,
            environment: environment,
            eventLoopGroup: eventLoopGroup,
            isolation: isolation
        ) { transport in
            try await body(AppClient(transport: transport))
        }
    }

    /// `GET /v1/connections`: the connections this caller is granted (metadata only).
    public func connections() async throws -> AppConnectionList {
        try await self.transport.call(.appConnections, Endpoint.appConnections.path())
    }

    /// `GET /v1/connections/{id}/token`: a bearer token for `id`, valid for at least `minTTL` seconds when given.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - minTTL: The least lifetime the token must still have; the daemon refreshes early to honour it.
    /// - Throws: `VaultClientError`; `.problem` with `forbidden` (unknown or not granted), `connection_disabled`,
    ///   `connection_needs_reset`, `token_not_exportable`, `upstream_rejected`, `upstream_unavailable`; or
    ///   `CancellationError`.
    public func token(_ id: String, minTTL: Int? = nil) async throws -> TokenResponse {
        let target = Endpoint.token.target(id, query: [("min_ttl", minTTL.map(String.init))])
        return try await self.transport.call(.token, target)
    }

    /// `GET /v1/health`.
    public func health() async throws -> HealthView {
        try await self.transport.call(.appHealth, Endpoint.appHealth.path())
    }
}
