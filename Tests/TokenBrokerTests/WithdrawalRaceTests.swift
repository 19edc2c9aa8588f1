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

    /// Connection `acme` (v2, scope setting ``connectionScope``, ``grants``) on a fresh stand-in, and a broker without
    /// background work (a withdrawn token's revocation waits, so a token handed out again is seen).
    static func with(_ body: (PersonioStandIn, Vault, TokenBroker) async throws -> Void) async throws {
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
                try await body(standIn, vault, TokenBroker(vault: vault, auth: auth, logger: fixture.logs.logger()))
            }
        }
        try await standIn.shutdown()
    }

    /// Disables and enables `acme`, then loads its entry again without a call of its own (a refused caller).
    static func withdrawAndReload(_ vault: Vault, _ broker: TokenBroker) async throws {
        _ = try await vault.disable("acme", reason: nil, by: admin)
        _ = try await vault.enable("acme", by: admin)
        await #expect(throws: VaultError.self) { _ = try await Self.token(broker, for: Self.stranger) }
    }

    @Test(
        "a disable and an enable after the token was recorded: the entry loaded since does not keep it",
        arguments: [WithdrawalRaceTests.own, WithdrawalRaceTests.scoped]
    )
    func withdrawnAfterTheRecord(_ caller: Caller) async throws {
        try await Self.with { standIn, vault, broker in
            let stop = Stop()
            broker.setCallEndingHook { await stop.pass() }
            defer { stop.open() }

            async let first: String? = try? await Self.token(broker, for: caller)
            // The call has its token, recorded as issued; it has not ended in its entry yet.
            try #require(await stop.waitReached(timeout: TimeScale.scaled(.seconds(30))))
            let obtained = try #require(standIn.issuedTokens.first)
            try await Self.withdrawAndReload(vault, broker)
            stop.open()

            #expect(await first != obtained, "the token of the disabled state was handed out")
            let next = try await Self.token(broker, for: caller)
            #expect(next != obtained, "the token of the disabled state was cached and handed out again")
            #expect(standIn.isValid(token: next))
            #expect(!standIn.isValid(token: obtained), "the withdrawn token was not revoked first")
        }
    }

    @Test("a verify whose token a disable and an enable withdrew meanwhile does not leave it cached")
    func verifyWithdrawnAfterTheRecord() async throws {
        try await Self.with { standIn, vault, broker in
            // The entry a token request would be served from exists before the verify.
            await #expect(throws: VaultError.self) { _ = try await Self.token(broker, for: Self.stranger) }
            let stop = Stop()
            broker.setCallEndingHook { await stop.pass() }
            defer { stop.open() }

            async let verified = try await broker.verify("acme", by: admin)
            try #require(await stop.waitReached(timeout: TimeScale.scaled(.seconds(30))))
            let obtained = try #require(standIn.issuedTokens.first)
            try await Self.withdrawAndReload(vault, broker)
            stop.open()

            #expect(try await verified.ok)
            let next = try await Self.token(broker, for: Self.own)
            #expect(next != obtained, "the verify's token, withdrawn meanwhile, was cached and handed out")
            #expect(standIn.isValid(token: next))
            #expect(!standIn.isValid(token: obtained), "the withdrawn token was not revoked first")
        }
    }
}
