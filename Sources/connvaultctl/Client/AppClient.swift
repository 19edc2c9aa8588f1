import VaultAPI

/// `connvaultctl`'s client for the app socket: `token`.
struct AppClient {
    let transport: DaemonTransport

    var socketPath: String { self.transport.socketPath }

    /// - Parameters:
    ///   - socketPath: The app socket; nil resolves `CONNVAULT_APP_SOCKET`, then `/run/connvault/app.sock`.
    ///   - timeout: The limit for each request, connect to last byte.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketKind.app.resolvePath(socketPath, environment: environment)
        self.transport = DaemonTransport(socketPath: path, kind: .app, timeout: timeout)
    }

    /// `GET /v1/connections`: the connections this caller is granted (metadata only).
    func connections() throws -> AppConnectionList {
        try self.transport.call(.appConnections, Endpoint.appConnections.path())
    }

    /// `GET /v1/connections/{id}/token`: a bearer token for `id`, valid for at least `minTTL` seconds when given.
    func token(_ id: String, minTTL: Int? = nil) throws -> TokenResponse {
        try self.transport.call(.token, Endpoint.token.target(id, query: [("min_ttl", minTTL.map(String.init))]))
    }

    /// `GET /v1/health`.
    func health() throws -> HealthView {
        try self.transport.call(.appHealth, Endpoint.appHealth.path())
    }
}
