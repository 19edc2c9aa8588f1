import VaultAPI

/// `connvaultctl`'s client for the admin socket. Each call blocks until the answer or the time-out. Bodies carrying
/// secrets (create, edit, reset) are serialised here and zeroed after sending.
struct AdminClient {
    let transport: DaemonTransport

    var socketPath: String { self.transport.socketPath }

    /// - Parameters:
    ///   - socketPath: The admin socket; nil resolves `CONNVAULT_ADMIN_SOCKET`, then `/run/connvault/admin.sock`.
    ///   - timeout: The limit for each request, connect to last byte.
    ///   - environment: The environment for resolving the path; nil reads the process environment.
    init(socketPath: String? = nil, timeout: Duration = .seconds(30), environment: [String: String]? = nil) {
        let path = SocketKind.admin.resolvePath(socketPath, environment: environment)
        self.transport = DaemonTransport(socketPath: path, kind: .admin, timeout: timeout)
    }

    // MARK: - Connections

    func createConnection(_ request: CreateConnectionRequest) throws -> ConnectionView {
        let body = try DaemonTransport.encoded { try SecretRequestBody.create(request) }
        return try self.transport.callWithSecrets(.createConnection, Endpoint.createConnection.path(), body: body)
    }

    func connections() throws -> ConnectionList {
        try self.transport.call(.listConnections, Endpoint.listConnections.path())
    }

    func connection(_ id: String) throws -> ConnectionView {
        try self.transport.call(.showConnection, Endpoint.showConnection.path(id))
    }

    func editConnection(_ id: String, _ request: EditConnectionRequest) throws -> ConnectionView {
        let body = try DaemonTransport.encoded { try SecretRequestBody.edit(request) }
        return try self.transport.callWithSecrets(.editConnection, Endpoint.editConnection.path(id), body: body)
    }

    func disable(_ id: String, reason: String? = nil) throws -> ConnectionView {
        let body = try DaemonTransport.encoded { try SecretRequestBody.encodePlain(DisableRequest(reason: reason)) }
        return try self.transport.call(.disable, Endpoint.disable.path(id), json: body)
    }

    func enable(_ id: String) throws -> ConnectionView {
        try self.transport.call(.enable, Endpoint.enable.path(id))
    }

    func reset(_ id: String, secrets: ResetRequest) throws -> ConnectionView {
        let body = try DaemonTransport.encoded { try SecretRequestBody.reset(secrets) }
        return try self.transport.callWithSecrets(.reset, Endpoint.reset.path(id), body: body)
    }

    func verify(_ id: String) throws -> VerifyResult {
        try self.transport.call(.verify, Endpoint.verify.path(id))
    }

    func disconnect(_ id: String) throws {
        try self.transport.callWithoutContent(.disconnect, Endpoint.disconnect.path(id))
    }

    func setGrants(_ id: String, _ grants: Grants) throws -> ConnectionView {
        let body = try DaemonTransport.encoded { try SecretRequestBody.encodePlain(grants) }
        return try self.transport.call(.setGrants, Endpoint.setGrants.path(id), json: body)
    }

    // MARK: - Vault

    func rotateKey() throws -> KeyRotationResult {
        try self.transport.call(.rotateKey, Endpoint.rotateKey.path())
    }

    func audit(connection: String? = nil, since: AuditSince? = nil, limit: Int? = nil) throws -> AuditList {
        let target = Endpoint.audit.target(
            query: [("connection", connection), ("since", since?.text), ("limit", limit.map(String.init))]
        )
        return try self.transport.call(.audit, target)
    }

    func verifyAudit() throws -> AuditVerification {
        try self.transport.call(.auditVerify, Endpoint.auditVerify.path())
    }

    func status() throws -> StatusView {
        try self.transport.call(.status, Endpoint.status.path())
    }
}
