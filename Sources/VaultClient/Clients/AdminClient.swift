import VaultAPI

/// A client for the daemon's admin socket (DESIGN §7), as used by `connvaultctl`.
///
/// Each method is a blocking call that throws `VaultClientError`; ``AdminClient`` also has an `async` overload of
/// every method (see `AdminClient+Async.swift`). Bodies carrying secrets (create, edit, reset) are serialised by the
/// client itself and zeroed after sending.
public struct AdminClient: Sendable {
    var transport: VaultTransport

    /// The socket this client talks to.
    public var socketPath: String { self.transport.socketPath }

    /// A client that opens one connection per request.
    ///
    /// - Parameters:
    ///   - socketPath: The admin socket; nil resolves `CONNVAULT_ADMIN_SOCKET`, then `/run/connvault/admin.sock`.
    ///   - timeout: The limit for each request, connect to last byte. 30 s by default.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    public init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketPath.resolve(socketPath, kind: .admin, environment: environment)
        self.transport = VaultTransport(socketPath: path, kind: .admin, timeout: timeout, connection: nil)
    }

    /// A client that sends every request over `connection`, kept alive between requests.
    public init(connection: Connection) {
        self.transport = VaultTransport(
            socketPath: connection.socketPath,
            kind: .admin,
            timeout: connection.timeout,
            connection: connection
        )
    }

    // MARK: - Connections

    /// `POST /v1/connections`: creates a connection; the answer is its masked view.
    ///
    /// - Throws: `VaultClientError`; `.problem` with `already_exists`, `invalid_setting`, `missing_secret`, ….
    public func createConnection(_ request: CreateConnectionRequest) throws -> ConnectionView {
        try self.transport.callWithSecrets("POST", Routes.connections, body: try RequestBody.create(request))
    }

    /// `GET /v1/connections`: every connection, masked.
    public func connections() throws -> ConnectionList {
        try self.transport.call("GET", Routes.connections)
    }

    /// `GET /v1/connections/{id}`.
    ///
    /// - Throws: `VaultClientError` `.problem` with `not_found` for an unknown id.
    public func connection(_ id: String) throws -> ConnectionView {
        try self.transport.call("GET", Routes.connection(PathComponent.encode(id)))
    }

    /// `PATCH /v1/connections/{id}`: changes settings, secrets and/or grants; writes a new, re-encrypted revision.
    public func editConnection(_ id: String, _ request: EditConnectionRequest) throws -> ConnectionView {
        try self.transport.callWithSecrets(
            "PATCH",
            Routes.connection(PathComponent.encode(id)),
            body: try RequestBody.edit(request)
        )
    }

    /// `POST /v1/connections/{id}/disable`: tokens are refused until ``enable(_:)``.
    public func disable(_ id: String, reason: String? = nil) throws -> ConnectionView {
        let body = try RequestBody.encodePlain(DisableRequest(reason: reason))
        return try self.transport.call("POST", Routes.action(PathComponent.encode(id), "disable"), json: body)
    }

    /// `POST /v1/connections/{id}/enable`.
    public func enable(_ id: String) throws -> ConnectionView {
        try self.transport.call("POST", Routes.action(PathComponent.encode(id), "enable"))
    }

    /// `POST /v1/connections/{id}/reset`: replaces the credentials (members absent from `secrets` are kept), bumps the
    /// revision and returns the connection to `active`.
    public func reset(_ id: String, secrets: ResetRequest) throws -> ConnectionView {
        try self.transport.callWithSecrets(
            "POST",
            Routes.action(PathComponent.encode(id), "reset"),
            body: try RequestBody.reset(secrets)
        )
    }

    /// `POST /v1/connections/{id}/verify`: asks Personio for a token with the stored credentials.
    public func verify(_ id: String) throws -> VerifyResult {
        try self.transport.call("POST", Routes.action(PathComponent.encode(id), "verify"))
    }

    /// `DELETE /v1/connections/{id}`: deletes the connection and crypto-shreds its secrets. Permanent.
    public func disconnect(_ id: String) throws {
        try self.transport.callWithoutContent("DELETE", Routes.connection(PathComponent.encode(id)))
    }

    /// `PUT /v1/connections/{id}/grants`: replaces the grants.
    public func setGrants(_ id: String, _ grants: Grants) throws -> ConnectionView {
        let body = try RequestBody.encodePlain(grants)
        return try self.transport.call("PUT", Routes.action(PathComponent.encode(id), "grants"), json: body)
    }

    // MARK: - Vault

    /// `POST /v1/keys/rotate`: a new master key; every data key re-wrapped in one transaction.
    public func rotateKey() throws -> KeyRotationResult {
        try self.transport.call("POST", Routes.rotateKey)
    }

    /// `GET /v1/audit`: audit entries, optionally for one connection, after sequence number `since`, at most `limit`.
    public func audit(connection: String? = nil, since: Int64? = nil, limit: Int? = nil) throws -> AuditList {
        let target = PathComponent.target(
            Routes.audit,
            query: [("connection", connection), ("since", since.map(String.init)), ("limit", limit.map(String.init))]
        )
        return try self.transport.call("GET", target)
    }

    /// `GET /v1/audit/verify`: checks the audit trail's hash chain.
    public func verifyAudit() throws -> AuditVerification {
        try self.transport.call("GET", Routes.auditVerify)
    }

    /// `GET /v1/status`.
    public func status() throws -> StatusView {
        try self.transport.call("GET", Routes.status)
    }
}
