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
    enum Setup {
        /// `with` for one policy for every provider.
        static func with(
            provider: Provider = .personioV2,
            policy: RefreshPolicy,
            clock: any BrokerClock = SystemBrokerClock(),
            _ body: (BrokerHarness) async throws -> Void
        ) async throws {
            try await Self.with(provider: provider, policy: { _ in policy }, clock: clock, body)
        }

        /// - Parameter clock: the broker's clock; a ``ManualClock`` runs the test in virtual time (the revoker and
        ///   the refresh loop then move only when the test advances it).
        static func with(
            provider: Provider = .personioV2,
            policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
            clock: any BrokerClock = SystemBrokerClock(),
            _ body: (BrokerHarness) async throws -> Void
        ) async throws {
            try await BrokerHarness.with(policy: policy, clock: clock) { harness in
                harness.standIn.register(clientID: "fake-client-acme", clientSecret: "fake-secret-acme")
                _ = try await harness.vault.create(
                    CreateConnectionRequest(
                        id: "acme",
                        provider: provider,
                        settings: ConnectionSettings(apiBaseURL: harness.standIn.baseURL, appID: "ACME_APP"),
                        secrets: secrets([.clientID: "fake-client-acme", .clientSecret: "fake-secret-acme"]),
                        grants: Grants(uids: [1000])
                    ),
                    by: admin
                )
            } _: { harness in
                try await body(harness)
            }
        }
    }

    static func body(_ prepared: PreparedTokenResponse, at now: ContinuousClock.Instant = .now) throws -> TokenResponse
    {
        try VaultJSON.decoder().decode(TokenResponse.self, from: Data(prepared.body(at: now)))
    }

    /// Waits until the refresh loop and the revoker of a broker on `clock` sleep again, that is, until they have done
    /// everything the last `advance` made due.
    static func settled(_ clock: ManualClock) async throws {
        try await waitUntil("the broker's loops asleep on the clock") { clock.sleepers == 2 }
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
        // A long first back-off; virtual time, so the machine's speed cannot end it during the test. The doubling and
        // the cap are checked as values in TokenStateTests.
        var policy = RefreshPolicy()
        policy.initialBackoff = .seconds(60)
        let clock = ManualClock()
        try await Setup.with(policy: policy, clock: clock) { setup in
            setup.standIn.setFailure(.status(500))
            for attempt in 0..<200 {
                do {
                    _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                    Issue.record("attempt \(attempt) got a token from a failing Personio")
                } catch let error as VaultError {
                    #expect(error.code == .upstreamUnavailable)
                    #expect(error.retryAfter == 60)
                }
            }
            // The first attempt called Personio; the other 199 were answered from the back-off.
            #expect(setup.standIn.calls(.v2Token) == 1)
            clock.advance(by: .milliseconds(59_500))
            let late = await #expect(throws: VaultError.self) {
                try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            }
            #expect(late?.retryAfter == 1)
            #expect(setup.standIn.calls(.v2Token) == 1)
            clock.advance(by: .milliseconds(500))
            setup.standIn.setFailure(.none)
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            #expect(setup.standIn.calls(.v2Token) == 2)
        }
    }

    @Test(
        "a hard limit keeps upstream calls at Personio's limit (150 a minute for v2, 60 for v1) with no back-off",
        arguments: [Provider.personioV2, .personioV1]
    )
    func callLimit(provider: Provider) async throws {
        var policy = RefreshPolicy.forProvider(provider)
        policy.initialBackoff = .milliseconds(1)
        policy.maximumBackoff = .milliseconds(1)
        let limit = provider == .personioV1 ? 60 : 150
        let endpoint: PersonioStandIn.Endpoint = provider == .personioV1 ? .v1Auth : .v2Token
        let clock = ManualClock()
        try await Setup.with(provider: provider, policy: policy, clock: clock) { setup in
            setup.standIn.setFailure(.status(503))
            // One attempt per virtual millisecond: every back-off has ended at each, and all of them fall within the
            // minute the limit counts over.
            for _ in 0..<(limit + 200) {
                _ = try? await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                clock.advance(by: .milliseconds(1))
            }
            #expect(setup.standIn.calls(endpoint) == limit)
            // The call after the limit is refused with the time until the oldest call leaves the window.
            let refused = await #expect(throws: VaultError.self) {
                try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            }
            #expect(refused?.message.contains("local rate limit") == true)
            #expect(refused?.retryAfter == 60)
            // A verify is an exchange too: refused by the same limit, without calling Personio.
            let verify = try await setup.broker.verify("acme", by: admin)
            #expect(verify.failure?.code == .upstreamUnavailable)
            #expect(setup.standIn.calls(endpoint) == limit)
            // Once the window has moved past the first call, one more may go.
            clock.advance(by: .seconds(60))
            _ = try? await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            #expect(setup.standIn.calls(endpoint) == limit + 1)
        }
    }

    @Test("verify calls count toward the limit: token calls after them are refused")
    func verifyCounts() async throws {
        var policy = RefreshPolicy()
        policy.callLimit = 3
        let clock = ManualClock()
        try await Setup.with(policy: policy, clock: clock) { setup in
            // An entry exists (a token was asked for once), and three verifies spend the rest of the budget.
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            #expect(try await setup.broker.verify("acme", by: admin).ok)
            #expect(try await setup.broker.verify("acme", by: admin).ok)
            let third = try await setup.broker.verify("acme", by: admin)
            #expect(third.failure?.code == .upstreamUnavailable)
            #expect(setup.standIn.calls(.v2Token) == 3)
            // The cached token is still served; once the window has moved on, a verify goes to Personio again.
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            clock.advance(by: .seconds(60))
            #expect(try await setup.broker.verify("acme", by: admin).ok)
            #expect(setup.standIn.calls(.v2Token) == 4)
        }
    }

    @Test("tokens are refreshed ahead of expiry, about two thirds into their lifetime")
    func refreshAhead() async throws {
        var policy = RefreshPolicy()
        policy.jitterFraction = 0
        let clock = ManualClock()
        try await Setup.with(policy: policy, clock: clock) { setup in
            // 6 s: refreshed 4 s after the call started, in virtual time.
            setup.standIn.setTokenLifetime(seconds: 6)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await setup.broker.run() }
                _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                try await Self.settled(clock)
                clock.advance(by: .milliseconds(3900))
                try await Self.settled(clock)
                #expect(setup.standIn.calls(.v2Token) == 1, "refreshed before the refresh point")
                // The loop looks every 500 ms: the next look after the refresh point refreshes.
                clock.advance(by: .milliseconds(500))
                try await Self.settled(clock)
                #expect(setup.standIn.calls(.v2Token) == 2, "not refreshed after the refresh point")
                // Personio answered with the same token (stable per credential pair): no further call until it expires.
                clock.advance(by: .milliseconds(1500))
                try await Self.settled(clock)
                #expect(setup.standIn.calls(.v2Token) == 2)
                group.cancelAll()
            }
        }
    }

    @Test("an expired token is not served: the next request fetches a new one")
    func expiry() async throws {
        let clock = ManualClock()
        try await Setup.with(policy: RefreshPolicy(), clock: clock) { setup in
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            clock.advance(by: .seconds(86_399))
            guard case .token = setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0, at: clock.now) else {
                Issue.record("a token with a second left was not served from the cache")
                return
            }
            #expect(setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 2, at: clock.now) == nil)
            clock.advance(by: .seconds(2))
            #expect(setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0, at: clock.now) == nil)
            _ = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
            #expect(setup.standIn.calls(.v2Token) == 2)
        }
    }

    @Test("a still-valid token keeps being served while Personio fails")
    func servesCachedWhileFailing() async throws {
        var policy = RefreshPolicy()
        policy.jitterFraction = 0
        policy.refreshFraction = 0.01
        let clock = ManualClock()
        try await Setup.with(policy: policy, clock: clock) { setup in
            setup.standIn.setTokenLifetime(seconds: 100)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await setup.broker.run() }
                let first = try Self.body(try await setup.broker.token("acme", for: Self.caller, minTTL: 0))
                setup.standIn.setFailure(.status(500))
                // The refresh point (1 s) passes and the refresh fails; callers keep getting the valid token.
                try await Self.settled(clock)
                clock.advance(by: .seconds(1))
                try await Self.settled(clock)
                #expect(setup.standIn.calls(.v2Token) == 2)
                for _ in 0..<20 {
                    let prepared = try await setup.broker.token("acme", for: Self.caller, minTTL: 0)
                    let served = try Self.body(prepared, at: clock.now)
                    #expect(served.accessToken == first.accessToken)
                    #expect((98...99).contains(served.expiresIn))
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
