import PersonioClient
import PersonioStandIn

/// Runs `body`, then shuts `auth` down. If `body` throws, shuts down `auth` and `standIn` both (ignoring errors of
/// their own) before rethrowing; on success `standIn` is left to the caller.
func shuttingDown(
    _ auth: PersonioAuthClient,
    _ standIn: PersonioStandIn,
    after body: () async throws -> Void
) async throws {
    do {
        try await body()
    } catch {
        try? await auth.shutdown()
        try? await standIn.shutdown()
        throw error
    }
    try await auth.shutdown()
}
