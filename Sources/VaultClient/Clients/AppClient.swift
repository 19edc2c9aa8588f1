import VaultAPI

/// A client for the daemon's app socket (DESIGN §7): the API local programs use to get short-lived tokens.
///
/// ```swift
/// let token = try await AppClient().token("acme", minTTL: 60)
/// request.headers = token.headers   // Authorization: Bearer …, X-Personio-App-ID, …
/// ```
///
/// Each method is a blocking call that throws `VaultClientError`, with an `async` overload (see
/// `AppClient+Async.swift`). To reuse one kept-alive socket across calls, create a ``Connection`` and pass it to
/// ``init(connection:)``.
public struct AppClient: Sendable {
    var transport: VaultTransport

    /// The socket this client talks to.
    public var socketPath: String { self.transport.socketPath }

    /// A client that opens one connection per request.
    ///
    /// - Parameters:
    ///   - socketPath: The app socket; nil resolves `CONNVAULT_APP_SOCKET`, then `/run/connvault/app.sock`.
    ///   - timeout: The limit for each request, connect to last byte. 30 s by default.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    public init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketPath.resolve(socketPath, kind: .app, environment: environment)
        self.transport = VaultTransport(socketPath: path, kind: .app, timeout: timeout, connection: nil)
    }

    /// A client that sends every request over `connection`, kept alive between requests.
    public init(connection: Connection) {
        self.transport = VaultTransport(
            socketPath: connection.socketPath,
            kind: .app,
            timeout: connection.timeout,
            connection: connection
        )
    }

    /// `GET /v1/connections`: the connections this caller is granted (metadata only).
    public func connections() throws -> AppConnectionList {
        try self.transport.call("GET", Routes.connections)
    }

    /// `GET /v1/connections/{id}/token`: a bearer token for `id`, valid for at least `minTTL` seconds when given.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - minTTL: The least lifetime the token must still have; the daemon refreshes early to honour it.
    /// - Throws: `VaultClientError`; `.problem` with `forbidden` (unknown or not granted), `connection_disabled`,
    ///   `connection_needs_reset`, `token_not_exportable`, `upstream_rejected`, `upstream_unavailable`.
    public func token(_ id: String, minTTL: Int? = nil) throws -> TokenResponse {
        let target = PathComponent.target(
            Routes.token(PathComponent.encode(id)),
            query: [("min_ttl", minTTL.map(String.init))]
        )
        return try self.transport.call("GET", target)
    }

    /// `GET /v1/health`.
    public func health() throws -> HealthView {
        try self.transport.call("GET", Routes.health)
    }
}
