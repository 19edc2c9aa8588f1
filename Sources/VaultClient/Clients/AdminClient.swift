import AsyncHTTPClient
import NIOCore
import VaultAPI

/// A client for the daemon's admin socket (DESIGN §7), for Swift programs and tests (`connvaultctl` has a blocking
/// client of its own).
///
/// Calls are `async` and hold no thread while they wait; cancelling the awaiting task ends a call at once with
/// `CancellationError`. Before a request is written on a new connection, the client checks who serves the socket
/// (``VaultClientError/Code/untrustedServer`` otherwise). Bodies carrying secrets (create, edit, reset) are
/// serialised by the client itself and zeroed after sending. A client made with `init` needs no shutting down;
/// ``withClient(socketPath:timeout:environment:eventLoopGroup:_:)`` runs on an event loop group of the caller's.
public struct AdminClient: Sendable {
    let transport: VaultTransport

    /// The socket this client talks to.
    public var socketPath: String { self.transport.socketPath }

    /// A client for the admin socket.
    ///
    /// - Parameters:
    ///   - socketPath: The admin socket; nil resolves `CONNVAULT_ADMIN_SOCKET`, then `/run/connvault/admin.sock`.
    ///   - timeout: The limit for each request, connect to last byte. 30 s by default.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    public init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketPath.resolve(socketPath, kind: .admin, environment: environment)
        self.init(path: path, timeout: timeout, httpClient: VaultHTTPClients.shared(kind: .admin, socketPath: path))
    }

    init(path: String, timeout: Duration, httpClient: HTTPClient) {
        self.init(transport: VaultTransport(socketPath: path, kind: .admin, timeout: timeout, httpClient: httpClient))
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
        _ body: (AdminClient) async throws -> Result
    ) async throws -> Result {
        try await VaultTransport.with(
            kind: .admin,
            socketPath: socketPath,
            timeout: timeout,
            environment: environment,
            eventLoopGroup: eventLoopGroup,
            isolation: isolation
        ) { transport in
            try await body(AdminClient(transport: transport))
        }
    }

    // MARK: - Connections

    /// `POST /v1/connections`: creates a connection; the answer is its masked view.
    ///
    /// - Throws: `VaultClientError`; `.problem` with `already_exists`, `invalid_setting`, `missing_secret`, ….
    public func createConnection(_ request: CreateConnectionRequest) async throws -> ConnectionView {
        let body = try Self.encoded { try SecretRequestBody.create(request) }
        return try await self.transport.callWithSecrets(.createConnection, Endpoint.createConnection.path(), body: body)
    }

    /// `GET /v1/connections`: every connection, masked.
    public func connections() async throws -> ConnectionList {
        try await self.transport.call(.listConnections, Endpoint.listConnections.path())
    }

    /// `GET /v1/connections/{id}`.
    ///
    /// - Throws: `VaultClientError` `.problem` with `not_found` for an unknown id.
    public func connection(_ id: String) async throws -> ConnectionView {
        try await self.transport.call(.showConnection, Endpoint.showConnection.path(id))
    }

    /// `PATCH /v1/connections/{id}`: changes settings, secrets and/or grants; writes a new, re-encrypted revision.
    public func editConnection(_ id: String, _ request: EditConnectionRequest) async throws -> ConnectionView {
        let body = try Self.encoded { try SecretRequestBody.edit(request) }
        return try await self.transport.callWithSecrets(.editConnection, Endpoint.editConnection.path(id), body: body)
    }

    /// `POST /v1/connections/{id}/disable`: tokens are refused until ``enable(_:)``.
    public func disable(_ id: String, reason: String? = nil) async throws -> ConnectionView {
        let body = try Self.encoded { try SecretRequestBody.encodePlain(DisableRequest(reason: reason)) }
        return try await self.transport.call(.disable, Endpoint.disable.path(id), json: body)
    }

    /// `POST /v1/connections/{id}/enable`.
    public func enable(_ id: String) async throws -> ConnectionView {
        try await self.transport.call(.enable, Endpoint.enable.path(id))
    }

    /// `POST /v1/connections/{id}/reset`: replaces the credentials (members absent from `secrets` are kept), bumps the
    /// revision and returns the connection to `active`.
    public func reset(_ id: String, secrets: ResetRequest) async throws -> ConnectionView {
        let body = try Self.encoded { try SecretRequestBody.reset(secrets) }
        return try await self.transport.callWithSecrets(.reset, Endpoint.reset.path(id), body: body)
    }

    /// `POST /v1/connections/{id}/verify`: asks Personio for a token with the stored credentials.
    public func verify(_ id: String) async throws -> VerifyResult {
        try await self.transport.call(.verify, Endpoint.verify.path(id))
    }

    /// `DELETE /v1/connections/{id}`: deletes the connection and crypto-shreds its secrets. Permanent.
    public func disconnect(_ id: String) async throws {
        try await self.transport.callWithoutContent(.disconnect, Endpoint.disconnect.path(id))
    }

    /// `PUT /v1/connections/{id}/grants`: replaces the grants.
    public func setGrants(_ id: String, _ grants: Grants) async throws -> ConnectionView {
        let body = try Self.encoded { try SecretRequestBody.encodePlain(grants) }
        return try await self.transport.call(.setGrants, Endpoint.setGrants.path(id), json: body)
    }

    // MARK: - Vault

    /// `POST /v1/keys/rotate`: a new master key; every data key re-wrapped in one transaction.
    public func rotateKey() async throws -> KeyRotationResult {
        try await self.transport.call(.rotateKey, Endpoint.rotateKey.path())
    }

    /// `GET /v1/audit`: audit entries, optionally for one connection, after sequence number `since`, at most `limit`.
    public func audit(connection: String? = nil, since: Int64? = nil, limit: Int? = nil) async throws -> AuditList {
        let target = Endpoint.audit.target(
            query: [("connection", connection), ("since", since.map(String.init)), ("limit", limit.map(String.init))]
        )
        return try await self.transport.call(.audit, target)
    }

    /// `GET /v1/audit/verify`: checks the audit trail's hash chain.
    public func verifyAudit() async throws -> AuditVerification {
        try await self.transport.call(.auditVerify, Endpoint.auditVerify.path())
    }

    /// `GET /v1/status`.
    public func status() async throws -> StatusView {
        try await self.transport.call(.status, Endpoint.status.path())
    }

    // MARK: - Bodies

    /// Runs an encoder of ``SecretRequestBody``, its failure as `.invalidRequest`.
    private static func encoded(_ encode: () throws -> [UInt8]) throws -> [UInt8] {
        do {
            return try encode()
        } catch let error as SecretRequestBody.EncodingError {
            throw VaultClientError(.invalidRequest, error.message)
        }
    }
}
