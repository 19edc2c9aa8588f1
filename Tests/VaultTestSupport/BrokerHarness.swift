import PersonioClient
import PersonioStandIn
import TestSupport
import Testing
import TokenBroker
import VaultAPI
import VaultCore

/// A vault on a real SQLite file, the Personio stand-in over real HTTP on 127.0.0.1, and a token broker over both:
/// the set-up the in-process broker suites share. Each suite registers its clients and creates its connections in
/// `prepare`, and keeps its own helpers in a small wrapper.
public struct BrokerHarness: Sendable {
    public let fixture: VaultFixture
    public let vault: Vault
    public let standIn: PersonioStandIn
    public let auth: PersonioAuthClient
    public let broker: TokenBroker

    /// Runs `body` with a fresh stand-in, vault and broker; shuts all three down afterwards, whether `body` returns or
    /// throws.
    ///
    /// - Parameters:
    ///   - policy: The broker's refresh policy per provider.
    ///   - clock: The broker's clock (a manual one runs a test in virtual time).
    ///   - running: Whether the broker's `run()` (refresh loop, revoker) goes on in a task while `body` runs.
    ///   - prepare: Registers clients with the stand-in and creates connections, before `body` and before `run()`.
    ///   - body: The test.
    /// - Throws: What starting, `prepare` or `body` throws.
    public static func with(
        policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
        clock: any BrokerClock = SystemBrokerClock(),
        running: Bool = false,
        prepare: (BrokerHarness) async throws -> Void = { _ in },
        _ body: (BrokerHarness) async throws -> Void
    ) async throws {
        let standIn = try await PersonioStandIn.start()
        do {
            try await VaultFixture.with { fixture, vault in
                let auth = PersonioAuthClient(logger: fixture.logs.logger(), timeout: TimeScale.scaled(.seconds(30)))
                let broker = TokenBroker(
                    vault: vault,
                    auth: auth,
                    logger: fixture.logs.logger(),
                    policy: policy,
                    clock: clock
                )
                let harness = BrokerHarness(
                    fixture: fixture,
                    vault: vault,
                    standIn: standIn,
                    auth: auth,
                    broker: broker
                )
                do {
                    try await prepare(harness)
                    if running {
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask { await broker.run() }
                            defer { group.cancelAll() }
                            try await body(harness)
                        }
                    } else {
                        try await body(harness)
                    }
                } catch {
                    try? await auth.shutdown()
                    throw error
                }
                try await auth.shutdown()
            }
        } catch {
            try? await standIn.shutdown()
            throw error
        }
        try await standIn.shutdown()
    }

    /// The code of the ``VaultError`` that `body` throws, or nil when it throws none (another error is recorded as an
    /// issue).
    public static func code(_ body: () async throws -> Void) async -> VaultError.Code? {
        do {
            try await body()
            return nil
        } catch let error as VaultError {
            return error.code
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }
}
