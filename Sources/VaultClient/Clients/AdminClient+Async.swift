import VaultAPI

/// `async` overloads of every ``AdminClient`` call. Each runs the blocking call on a dispatch queue, off Swift's
/// cooperative pool, and ends early with `CancellationError` when the task is cancelled.
extension AdminClient {
    private func offPool<T: Sendable>(_ body: @escaping @Sendable (AdminClient) throws -> T) async throws -> T {
        try await BlockingCall.run { flag in
            var client = self
            client.transport.cancellation = flag
            return try body(client)
        }
    }

    public func createConnection(_ request: CreateConnectionRequest) async throws -> ConnectionView {
        try await self.offPool { try $0.createConnection(request) }
    }

    public func connections() async throws -> ConnectionList {
        try await self.offPool { try $0.connections() }
    }

    public func connection(_ id: String) async throws -> ConnectionView {
        try await self.offPool { try $0.connection(id) }
    }

    public func editConnection(_ id: String, _ request: EditConnectionRequest) async throws -> ConnectionView {
        try await self.offPool { try $0.editConnection(id, request) }
    }

    public func disable(_ id: String, reason: String? = nil) async throws -> ConnectionView {
        try await self.offPool { try $0.disable(id, reason: reason) }
    }

    public func enable(_ id: String) async throws -> ConnectionView {
        try await self.offPool { try $0.enable(id) }
    }

    public func reset(_ id: String, secrets: ResetRequest) async throws -> ConnectionView {
        try await self.offPool { try $0.reset(id, secrets: secrets) }
    }

    public func verify(_ id: String) async throws -> VerifyResult {
        try await self.offPool { try $0.verify(id) }
    }

    public func disconnect(_ id: String) async throws {
        try await self.offPool { try $0.disconnect(id) }
    }

    public func setGrants(_ id: String, _ grants: Grants) async throws -> ConnectionView {
        try await self.offPool { try $0.setGrants(id, grants) }
    }

    public func rotateKey() async throws -> KeyRotationResult {
        try await self.offPool { try $0.rotateKey() }
    }

    public func audit(connection: String? = nil, since: Int64? = nil, limit: Int? = nil) async throws -> AuditList {
        try await self.offPool { try $0.audit(connection: connection, since: since, limit: limit) }
    }

    public func verifyAudit() async throws -> AuditVerification {
        try await self.offPool { try $0.verifyAudit() }
    }

    public func status() async throws -> StatusView {
        try await self.offPool { try $0.status() }
    }
}
