import VaultAPI

/// `async` overloads of every ``AppClient`` call. Each runs the blocking call on a dispatch queue, off Swift's
/// cooperative pool, and ends early with `CancellationError` when the task is cancelled.
extension AppClient {
    private func offPool<T: Sendable>(_ body: @escaping @Sendable (AppClient) throws -> T) async throws -> T {
        try await BlockingCall.run { flag in
            var client = self
            client.transport.cancellation = flag
            return try body(client)
        }
    }

    public func connections() async throws -> AppConnectionList {
        try await self.offPool { try $0.connections() }
    }

    /// The one call a Swift app needs: a token for `id`, valid for at least `minTTL` seconds when given.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - minTTL: The least lifetime the token must still have.
    /// - Throws: `VaultClientError` (see the blocking overload), or `CancellationError`.
    public func token(_ id: String, minTTL: Int? = nil) async throws -> TokenResponse {
        try await self.offPool { try $0.token(id, minTTL: minTTL) }
    }

    public func health() async throws -> HealthView {
        try await self.offPool { try $0.health() }
    }
}
