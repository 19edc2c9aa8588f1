import Foundation
import Logging
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing
import TokenBroker
import VaultAPI
import VaultCore
import VaultTestSupport

/// The broker against the Personio stand-in over real HTTP on 127.0.0.1, with a real vault on a real SQLite file.
@Suite("Token broker", .timeLimit(.minutes(2)))
struct TokenBrokerTests {
    static let caller = Caller(uid: 1000, gid: 1000, pid: 77, comm: "app", groups: [1000], unit: "payroll.service")
    static let stranger = Caller(uid: 2000, gid: 2000, pid: 78, comm: "other")

    /// A vault with one granted v2 connection `acme` pointing at a fresh stand-in, and a broker over both.
    struct Setup {
        let fixture: VaultFixture
        let vault: Vault
        let standIn: PersonioStandIn
        let auth: PersonioAuthClient
        let broker: TokenBroker

        /// `with` for one policy for every provider.
        static func with(
            provider: Provider = .personioV2,
            policy: RefreshPolicy,
            _ body: (Setup) async throws -> Void
        ) async throws {
            try await Self.with(provider: provider, policy: { _ in policy }, body)
        }

        static func with(
            provider: Provider = .personioV2,
            policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
            _ body: (Setup) async throws -> Void
        ) async throws {
            let standIn = try await PersonioStandIn.start(threads: 2)
            standIn.register(clientID: "fake-client-acme", clientSecret: "fake-secret-acme")
            try await VaultFixture.with { fixture, vault in
                let auth = PersonioAuthClient(logger: fixture.logs.logger(), timeout: .seconds(2))
                let broker = TokenBroker(vault: vault, auth: auth, logger: fixture.logs.logger(), policy: policy)
                _ = try await vault.create(
                    CreateConnectionRequest(
                        id: "acme",
                        provider: provider,
                        settings: ConnectionSettings(apiBaseURL: standIn.baseURL, appID: "ACME_APP"),
                        secrets: secrets([.clientID: "fake-client-acme", .clientSecret: "fake-secret-acme"]),
                        grants: Grants(uids: [1000])
                    ),
                    by: admin
                )
                let setup = Setup(fixture: fixture, vault: vault, standIn: standIn, auth: auth, broker: broker)
                try await shuttingDown(auth, standIn) { try await body(setup) }
            }
            try await standIn.shutdown()
        }
    }

    static func body(_ prepared: PreparedTokenResponse) throws -> TokenResponse {
        try VaultJSON.decoder().decode(TokenResponse.self, from: Data(prepared.body(at: .now)))
    }

    @Test("64 concurrent cold requests make exactly one upstream call")
    func singleFlight() async throws {
        try await Setup.with { setup in
            setup.standIn.setLatency(.milliseconds(100))
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0)).accessToken
                    }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(tokens.count == 1)
            #expect(setup.standIn.calls(.v2Token) == 1)
        }
    }

    @Test("a cached token is served from memory with the fields and headers of DESIGN §7")
    func cachedResponse() async throws {
        try await Setup.with { setup in
            #expect(setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0) == nil)
            let first = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 60))
            guard case .token(let prepared) = setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 60) else {
                Issue.record("no cached answer")
                return
            }
            let second = try Self.body(prepared)
            #expect(second.accessToken == first.accessToken)
            #expect(second.tokenType == "Bearer")
            #expect(second.connection == "acme")
            #expect(second.apiBaseURL == setup.standIn.baseURL)
            #expect(second.headers["Authorization"] == "Bearer \(first.accessToken)")
            #expect(second.headers["X-Personio-App-ID"] == "ACME_APP")
            #expect((86_300...86_400).contains(second.expiresIn))
            #expect(setup.standIn.calls(.v2Token) == 1)
            #expect(setup.standIn.lastRequest(.v2Token)?.header("X-Personio-App-ID") == "ACME_APP")
        }
    }

    @Test("unknown and not-granted connections are refused alike; groups and units grant")
    func authorization() async throws {
        try await Setup.with { setup in
            await #expect(throws: VaultError(.forbidden, "")) {
                try await setup.broker.token("acme", for: Self.stranger, minTTL: 0)
            }
            await #expect(throws: VaultError(.forbidden, "")) {
                try await setup.broker.token("nope", for: Self.caller, minTTL: 0)
            }
            var unknown: VaultError?
            var denied: VaultError?
            do { _ = try await setup.broker.token("nope", for: Self.caller, minTTL: 0) } catch let error as VaultError {
                unknown = error
            }
            do { _ = try await setup.broker.token("acme", for: Self.stranger, minTTL: 0) } catch let error as VaultError
            { denied = error }
            #expect(unknown?.message == denied?.message)

            _ = try await setup.vault.setGrants("acme", Grants(units: ["payroll.service"]), by: admin)
            let unitCaller = Caller(uid: 3000, gid: 3000, pid: 1, comm: "x", unit: "payroll.service")
            _ = try await setup.broker.token("acme", for: unitCaller, minTTL: 0)
            let uidOnly = Caller(uid: 1000, gid: 1000, pid: 77, comm: "app", groups: [1000])
            await #expect(throws: VaultError(.forbidden, "")) {
                try await setup.broker.token("acme", for: uidOnly, minTTL: 0)
            }

            _ = try await setup.vault.setGrants("acme", Grants(groups: ["root"]), by: admin)
            let groupCaller = Caller(uid: 3001, gid: 3001, pid: 1, comm: "x", groups: [0])
            _ = try await setup.broker.token("acme", for: groupCaller, minTTL: 0)
            let apps = try await setup.broker.connections(for: groupCaller)
            #expect(apps.map(\.id) == ["acme"])
            #expect(try await setup.broker.connections(for: Self.stranger).isEmpty)
        }
    }

    @Test("disable refuses tokens and revokes the cached one upstream; enable serves again")
    func disableRevokes() async throws {
        try await Setup.with { setup in
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await setup.broker.run() }
                let token = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0)).accessToken
                _ = try await setup.vault.disable("acme", reason: "test", by: admin)
                await #expect(throws: VaultError(.connectionDisabled, "")) {
                    try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                }
                #expect(
                    setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0).map {
                        if case .refused = $0 { true } else { false }
                    } ?? true
                )
                try await Self.eventually { setup.standIn.isRevoked(token: token) }
                _ = try await setup.vault.enable("acme", by: admin)
                let fresh = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0)).accessToken
                #expect(fresh != token)
                group.cancelAll()
            }
        }
    }

    @Test(
        "rejected credentials move the connection to needs_reset until a reset",
        arguments: PersonioStandIn.RejectionCode.allCases
    )
    func rejection(_ code: PersonioStandIn.RejectionCode) async throws {
        try await Setup.with { setup in
            setup.standIn.setRejectionCode(code)
            setup.standIn.changeSecret(clientID: "fake-client-acme", newSecret: "fake-secret-rotated")
            await #expect(throws: VaultError(.upstreamRejected, "")) {
                try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            }
            let view = try await setup.vault.view("acme")
            #expect(view.state == .needsReset)
            #expect(view.lastError?.isEmpty == false)
            #expect(
                try await setup.vault.audit(connection: "acme", since: nil, limit: 100).contains {
                    $0.action == "connection.needs_reset"
                }
            )
            await #expect(throws: VaultError(.connectionNeedsReset, "")) {
                try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            }
            let calls = setup.standIn.calls(.v2Token)
            _ = try await setup.vault.reset("acme", secrets: secrets([.clientSecret: "fake-secret-rotated"]), by: admin)
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            #expect(setup.standIn.calls(.v2Token) == calls + 1)
        }
    }

    @Test("while Personio fails, callers get 503 with Retry-After and the broker backs off")
    func backoff() async throws {
        // A long first back-off, so that the machine's speed cannot end it during the test; the doubling and the cap
        // are checked as values in TokenStateTests.
        var policy = RefreshPolicy()
        policy.initialBackoff = .seconds(60)
        try await Setup.with(policy: policy) { setup in
            setup.standIn.setFailure(.status(500))
            for attempt in 0..<200 {
                do {
                    _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                    Issue.record("attempt \(attempt) got a token from a failing Personio")
                } catch let error as VaultError {
                    #expect(error.code == .upstreamUnavailable)
                    #expect((error.retryAfter ?? 0) >= 1)
                }
            }
            // The first attempt called Personio; the other 199 were answered from the back-off.
            #expect(setup.standIn.calls(.v2Token) == 1)
        }
    }

    @Test("a hard limit keeps upstream calls at Personio's 150 per minute even with no back-off")
    func callLimit() async throws {
        var policy = RefreshPolicy()
        policy.initialBackoff = .milliseconds(1)
        policy.maximumBackoff = .milliseconds(1)
        try await Setup.with(policy: policy) { setup in
            setup.standIn.setFailure(.status(503))
            // Ask until the limit is reached (how fast depends on the machine), then 200 times more: all within the
            // minute the limit counts over, so none of those may reach Personio.
            let deadline = ContinuousClock.now + .seconds(40)
            var attemptsAtLimit = 0
            while ContinuousClock.now < deadline && attemptsAtLimit < 200 {
                _ = try? await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                if setup.standIn.calls(.v2Token) >= 150 { attemptsAtLimit += 1 }
                try await Task.sleep(for: .milliseconds(1))
            }
            #expect(attemptsAtLimit == 200, "the limit was not reached within the deadline")
            #expect(setup.standIn.calls(.v2Token) == 150)
        }
    }

    @Test("tokens are refreshed ahead of expiry, about two thirds into their lifetime")
    func refreshAhead() async throws {
        var policy = RefreshPolicy()
        policy.jitterFraction = 0
        try await Setup.with(policy: policy) { setup in
            // 6 s: refreshed after 4 s, with 2 s of slack before expiry for a busy machine.
            setup.standIn.setTokenLifetime(seconds: 6)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await setup.broker.run() }
                let started = ContinuousClock.now
                _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                try await Self.eventually(timeout: .seconds(6)) { setup.standIn.calls(.v2Token) == 2 }
                let elapsed = ContinuousClock.now - started
                #expect(elapsed >= .milliseconds(3900) && elapsed < .seconds(6), "refreshed after \(elapsed)")
                // Personio answered with the same token (stable per credential pair): no further call until it expires.
                try await Task.sleep(for: .milliseconds(600))
                #expect(setup.standIn.calls(.v2Token) == 2)
                group.cancelAll()
            }
        }
    }

    @Test("a still-valid token keeps being served while Personio fails")
    func servesCachedWhileFailing() async throws {
        var policy = RefreshPolicy()
        policy.jitterFraction = 0
        policy.refreshFraction = 0.01
        try await Setup.with(policy: policy) { setup in
            setup.standIn.setTokenLifetime(seconds: 100)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await setup.broker.run() }
                let first = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0))
                setup.standIn.setFailure(.status(500))
                // The refresh point (1 s) passes and the refresh fails; callers keep getting the valid token.
                try await Self.eventually(timeout: .seconds(3)) { setup.standIn.calls(.v2Token) >= 2 }
                for _ in 0..<20 {
                    let served = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0))
                    #expect(served.accessToken == first.accessToken)
                    #expect(served.expiresIn >= 90)
                }
                group.cancelAll()
            }
        }
    }

    @Test("recruiting connections never export their key")
    func recruiting() async throws {
        try await Setup.with { setup in
            _ = try await setup.vault.create(
                CreateConnectionRequest(
                    id: "jobs",
                    provider: .personioRecruiting,
                    settings: ConnectionSettings(companyID: "123"),
                    secrets: secrets([.recruitingToken: "fake-recruiting-key"]),
                    grants: Grants(uids: [1000])
                ),
                by: admin
            )
            await #expect(throws: VaultError(.tokenNotExportable, "")) {
                try await setup.broker.token("jobs", for: Self.caller, minTTL: 0)
            }
            let verify = try await setup.broker.verify("jobs", by: admin)
            #expect(!verify.ok)
        }
    }

    @Test("verify reports expiry and scope, or Personio's error, and audits it")
    func verify() async throws {
        try await Setup.with { setup in
            let ok = try await setup.broker.verify("acme", by: admin)
            #expect(ok.ok)
            #expect(ok.expiresIn == 86_400)
            setup.standIn.changeSecret(clientID: "fake-client-acme", newSecret: "fake-secret-new")
            let failed = try await setup.broker.verify("acme", by: admin)
            #expect(!failed.ok)
            #expect(failed.failure?.code == .upstreamRejected)
            #expect(failed.state == .needsReset)
            let audit = try await setup.vault.audit(connection: "acme", since: nil, limit: 100).filter {
                $0.action == "connection.verify"
            }
            #expect(audit.map(\.outcome) == ["ok", "failed"])
            let encoded = String(describing: failed)
            #expect(!encoded.contains("fake-secret"))
            #expect(!setup.fixture.logs.entries.map(\.description).joined().contains("fake-secret-acme"))
        }
    }

    static func eventually(timeout: Duration = .seconds(3), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within \(timeout)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
