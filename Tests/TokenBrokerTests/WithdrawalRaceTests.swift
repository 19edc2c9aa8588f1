import Foundation
import Logging
import PersonioClient
import PersonioStandIn
import Synchronization
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

@testable import TokenBroker

/// A withdrawal (disable, then enable) that commits in the window between a token call's record of its token and
/// the call's end in its entry, for slot 0 and a rule's slot: the call is stopped there by the broker's test hook,
/// so the window is hit every time instead of by chance under load.
@Suite("Withdrawal during a token call", .timeLimit(.minutes(2)))
struct WithdrawalRaceTests {
    static let clientID = "fake-client-withdrawal"
    static let secret = "fake-secret-withdrawal"
    static let connectionScope = "personio:persons:read personio:webhooks:read"
    static let own = Caller(uid: 1000, gid: 1000, pid: 90, comm: "own", groups: [1000])
    static let scoped = Caller(uid: 2000, gid: 2000, pid: 91, comm: "scoped", groups: [2000])
    /// Granted nothing: its request is refused, after it has loaded the connection's entry.
    static let stranger = Caller(uid: 5000, gid: 5000, pid: 92, comm: "stranger", groups: [5000])
    static let grants = Grants(uids: [1000], rules: [GrantRule(uid: 2000, scope: "personio:persons:read")])

    /// A one-shot stop: the first caller of ``pass()`` waits there until ``open()``; later callers pass at once.
    final class Stop: Sendable {
        private let armed = Atomic<Bool>(true)
        private let reached = AsyncStream<Void>.makeStream()
        private let opened = AsyncStream<Void>.makeStream()

        func pass() async {
            guard self.armed.exchange(false, ordering: .acquiringAndReleasing) else { return }
            self.reached.continuation.yield()
            for await _ in self.opened.stream { return }
        }

        /// Waits until a caller has reached the stop, at most `timeout`; false if none did.
        func waitReached(timeout: Duration) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await _ in self.reached.stream { return true }
                    return false
                }
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                self.reached.continuation.finish()
                return first
            }
        }

        func open() {
            self.armed.store(false, ordering: .releasing)
            self.opened.continuation.yield()
            self.opened.continuation.finish()
        }
    }

    static func token(_ broker: TokenBroker, for caller: Caller) async throws -> String {
        let prepared = try await broker.token("acme", for: caller, minTTL: 0)
        return try VaultJSON.decoder().decode(TokenResponse.self, from: Data(prepared.body(at: .now))).accessToken
    }

    @Test(
        "a disable and an enable after the token was recorded: the entry loaded since does not keep it",
        arguments: [WithdrawalRaceTests.own, WithdrawalRaceTests.scoped]
    )
    func withdrawnAfterTheRecord(_ caller: Caller) async throws {
        let standIn = try await PersonioStandIn.start()
        standIn.register(clientID: Self.clientID, clientSecret: Self.secret)
        let auth = PersonioAuthClient(
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
            timeout: TimeScale.scaled(.seconds(30))
        )
        try await shuttingDown(auth, standIn) {
            try await VaultFixture.with { fixture, vault in
                _ = try await vault.create(
                    CreateConnectionRequest(
                        id: "acme",
                        provider: .personioV2,
                        settings: ConnectionSettings(apiBaseURL: standIn.baseURL, scope: Self.connectionScope),
                        secrets: secrets([.clientID: Self.clientID, .clientSecret: Self.secret]),
                        grants: Self.grants
                    ),
                    by: admin
                )
                // No background work: the withdrawn token's revocation waits, so a token handed out again is seen.
                let broker = TokenBroker(vault: vault, auth: auth, logger: fixture.logs.logger())
                let stop = Stop()
                broker.setCallEndingHook { await stop.pass() }
                defer { stop.open() }

                async let first: String? = try? await Self.token(broker, for: caller)
                // The call has its token, recorded as issued; it has not ended in its entry yet.
                try #require(await stop.waitReached(timeout: TimeScale.scaled(.seconds(30))))
                let obtained = try #require(standIn.issuedTokens.first)
                _ = try await vault.disable("acme", reason: nil, by: admin)
                _ = try await vault.enable("acme", by: admin)
                // An entry loaded after the enable, with no call of its own under way.
                await #expect(throws: VaultError.self) { _ = try await Self.token(broker, for: Self.stranger) }
                stop.open()

                #expect(await first != obtained, "the token of the disabled state was handed out")
                let next = try await Self.token(broker, for: caller)
                #expect(next != obtained, "the token of the disabled state was cached and handed out again")
                #expect(standIn.isValid(token: next))
                #expect(!standIn.isValid(token: obtained), "the withdrawn token was not revoked first")
            }
        }
        try await standIn.shutdown()
    }
}
