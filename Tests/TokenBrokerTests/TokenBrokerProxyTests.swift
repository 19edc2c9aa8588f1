import Foundation
import Logging
import NIOCore
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing
import TokenBroker
import VaultAPI
import VaultCore
import VaultTestSupport

/// The broker's proxy route against the Personio stand-in over real HTTP on 127.0.0.1, with a real vault.
@Suite("Token broker proxy", .timeLimit(.minutes(2)))
struct TokenBrokerProxyTests {
    static let caller = Caller(uid: 1000, gid: 1000, pid: 77, comm: "app", groups: [1000], unit: "payroll.service")
    static let unitCaller = Caller(uid: 3000, gid: 3000, pid: 79, comm: "report", unit: "reports.service")
    static let stranger = Caller(uid: 2000, gid: 2000, pid: 78, comm: "other")
    static let recruitingKey = "fake-recruiting-key-hiring-0123456789"
    static let companyID = "12345"

    /// A vault pointing at a fresh stand-in with these connections, all granted to uid 1000:
    /// `acme` (v2), `legacy` (v1), `hiring` (recruiting), `paused` (v2, disabled), `paused-hiring` (recruiting,
    /// disabled), `broken` (v2, needs_reset), `reports` (v2, granted to the unit `reports.service` only).
    @dynamicMemberLookup
    struct Setup {
        let harness: BrokerHarness

        subscript<Value>(dynamicMember member: KeyPath<BrokerHarness, Value>) -> Value { self.harness[keyPath: member] }

        static func with(
            policy: @escaping @Sendable (Provider) -> RefreshPolicy = RefreshPolicy.forProvider,
            _ body: (Setup) async throws -> Void
        ) async throws {
            try await BrokerHarness.with(policy: policy) { harness in
                harness.standIn.register(clientID: "fake-client-acme", clientSecret: "fake-secret-acme")
                harness.standIn.registerRecruitingKey(
                    TokenBrokerProxyTests.recruitingKey,
                    companyID: TokenBrokerProxyTests.companyID
                )
                try await Setup(harness: harness).createConnections()
            } _: { harness in
                try await body(Setup(harness: harness))
            }
        }

        private func createConnections() async throws {
            let granted = Grants(uids: [1000])
            let settings = ConnectionSettings(apiBaseURL: self.standIn.baseURL, appID: "ACME_APP")
            let clientSecrets = secrets([.clientID: "fake-client-acme", .clientSecret: "fake-secret-acme"])
            for (id, provider, grants) in [
                ("acme", Provider.personioV2, granted), ("legacy", .personioV1, granted),
                ("paused", .personioV2, granted),
                ("broken", .personioV2, granted), ("reports", .personioV2, Grants(units: ["reports.service"])),
            ] {
                _ = try await self.vault.create(
                    CreateConnectionRequest(
                        id: id,
                        provider: provider,
                        settings: settings,
                        secrets: clientSecrets,
                        grants: grants
                    ),
                    by: admin
                )
            }
            for id in ["hiring", "paused-hiring"] {
                _ = try await self.vault.create(
                    CreateConnectionRequest(
                        id: id,
                        provider: .personioRecruiting,
                        settings: ConnectionSettings(
                            apiBaseURL: self.standIn.baseURL,
                            companyID: TokenBrokerProxyTests.companyID
                        ),
                        secrets: secrets([.recruitingToken: TokenBrokerProxyTests.recruitingKey]),
                        grants: granted
                    ),
                    by: admin
                )
            }
            _ = try await self.vault.disable("paused", reason: "test", by: admin)
            _ = try await self.vault.disable("paused-hiring", reason: "test", by: admin)
            let broken = try await self.vault.view("broken")
            try await self.vault.markNeedsReset("broken", revision: Int64(broken.revision), error: "test")
        }

        /// GET `path` through the proxy as `caller`, with the whole body.
        func get(
            _ id: String,
            _ path: String,
            as caller: Caller = TokenBrokerProxyTests.caller,
            timeout: Duration = TimeScale.scaled(.seconds(30))
        ) async throws -> (status: Int, body: [String: Any]) {
            let response = try await self.broker.proxy(
                id,
                request: ProxyRequest(method: "GET", path: path),
                for: caller,
                timeout: timeout
            )
            let body = try await response.body.collect(upTo: 1 << 20)
            let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            return (response.status, json ?? [:])
        }

        /// The access token the stand-in saw last.
        var lastBearer: String? {
            self.standIn.lastRequest(.resource)?.header("Authorization").map { String($0.dropFirst("Bearer ".count)) }
        }
    }

    // MARK: - Authorization

    struct AuthorizationCase: Sendable, CustomTestStringConvertible {
        var connection: String
        var caller: Caller
        /// nil: allowed.
        var refusal: VaultError.Code?
        var testDescription: String {
            "\(self.connection) as uid \(self.caller.uid) → \(self.refusal?.rawValue ?? "allowed")"
        }
    }

    static let authorizationCases: [AuthorizationCase] = [
        AuthorizationCase(connection: "acme", caller: Self.caller, refusal: nil),
        AuthorizationCase(connection: "legacy", caller: Self.caller, refusal: nil),
        AuthorizationCase(connection: "hiring", caller: Self.caller, refusal: nil),
        AuthorizationCase(connection: "reports", caller: Self.unitCaller, refusal: nil),
        AuthorizationCase(connection: "reports", caller: Self.caller, refusal: .forbidden),
        AuthorizationCase(connection: "acme", caller: Self.stranger, refusal: .forbidden),
        AuthorizationCase(connection: "hiring", caller: Self.stranger, refusal: .forbidden),
        AuthorizationCase(connection: "paused", caller: Self.stranger, refusal: .forbidden),
        AuthorizationCase(connection: "nosuch", caller: Self.caller, refusal: .forbidden),
        AuthorizationCase(connection: "Not An ID!", caller: Self.caller, refusal: .forbidden),
        AuthorizationCase(connection: "paused", caller: Self.caller, refusal: .connectionDisabled),
        AuthorizationCase(connection: "paused-hiring", caller: Self.caller, refusal: .connectionDisabled),
        AuthorizationCase(connection: "broken", caller: Self.caller, refusal: .connectionNeedsReset),
    ]

    @Test("proxy authorization is the token route's, recruiting included", arguments: Self.authorizationCases)
    func authorization(_ test: AuthorizationCase) async throws {
        try await Setup.with { setup in
            let refusal = await BrokerHarness.code {
                let target = try await setup.broker.proxyTarget(test.connection, for: test.caller)
                #expect(target.connection == test.connection)
                #expect(target.baseURL == setup.standIn.baseURL)
            }
            #expect(refusal == test.refusal)
            let proxied = await BrokerHarness.code {
                _ = try await setup.get(test.connection, "/v2/persons", as: test.caller)
            }
            #expect(proxied == test.refusal)
            if test.refusal != nil {
                #expect(setup.standIn.calls(.resource) == 0, "a refused caller reaches nothing upstream")
                #expect(setup.standIn.calls(.v2Token) + setup.standIn.calls(.v1Auth) == 0)
            }
        }
    }

    @Test("recruiting connections may be proxied, never handed out as tokens")
    func recruitingProxyNotToken() async throws {
        try await Setup.with { setup in
            #expect(
                await BrokerHarness.code { _ = try await setup.broker.token("hiring", for: Self.caller, minTTL: 0) }
                    == .tokenNotExportable
            )
            guard case .refused(let error) = setup.broker.cachedResponse("hiring", for: Self.caller, minTTL: 0) else {
                Issue.record("the token fast path did not refuse the recruiting connection")
                return
            }
            #expect(error.code == .tokenNotExportable)

            let target = try await setup.broker.proxyTarget("hiring", for: Self.caller)
            guard case .recruiting(_, let companyID) = target.authorization else {
                Issue.record("not a recruiting authorization: \(target)")
                return
            }
            #expect(companyID == Self.companyID)
            #expect(!"\(target)".contains(Self.recruitingKey))

            let (status, body) = try await setup.get("hiring", "/v1/recruiting/applications")
            #expect(status == 200)
            let auth = try #require(body["auth"] as? [String: Any])
            #expect(auth["kind"] as? String == "recruiting")
            #expect(auth["company_id"] as? String == Self.companyID)
            let recorded = try #require(setup.standIn.lastRequest(.resource))
            #expect(recorded.header("Authorization") == "Bearer \(Self.recruitingKey)")
            #expect(recorded.header("X-Company-Id") == Self.companyID)
            #expect(setup.standIn.calls(.v2Token) + setup.standIn.calls(.v1Auth) == 0)
            #expect(!setup.fixture.logs.lines.joined().contains(Self.recruitingKey))
        }
    }

    @Test("a recruiting connection disabled after its entry was cached is refused")
    func recruitingDisabledLater() async throws {
        try await Setup.with { setup in
            #expect(try await setup.get("hiring", "/v1/recruiting/applications").status == 200)
            _ = try await setup.vault.disable("hiring", reason: "test", by: admin)
            #expect(
                await BrokerHarness.code { _ = try await setup.get("hiring", "/v1/recruiting/applications") }
                    == .connectionDisabled
            )
            _ = try await setup.vault.enable("hiring", by: admin)
            #expect(try await setup.get("hiring", "/v1/recruiting/applications").status == 200)
        }
    }

    // MARK: - Access tokens

    @Test("v2 and v1 requests carry the broker's cached token and the settings' headers")
    func bearerFromCache() async throws {
        try await Setup.with { setup in
            let (status, body) = try await setup.get("acme", "/v2/persons")
            #expect(status == 200)
            let auth = try #require(body["auth"] as? [String: Any])
            #expect(auth["api"] as? String == "v2")
            #expect(auth["app_id"] as? String == "ACME_APP")
            _ = try await setup.get("acme", "/v2/persons")
            #expect(setup.standIn.calls(.v2Token) == 1, "the second request reused the cached token")
            let token = try VaultJSON.decoder().decode(
                TokenResponse.self,
                from: Data(try await setup.broker.token("acme", for: Self.caller, minTTL: 0).body(at: .now))
            )
            #expect(setup.lastBearer == token.accessToken)

            let (legacyStatus, legacyBody) = try await setup.get("legacy", "/v1/company/employees")
            #expect(legacyStatus == 200)
            #expect((legacyBody["auth"] as? [String: Any])?["api"] as? String == "v1")
            #expect(setup.standIn.calls(.v1Auth) == 1)
        }
    }

    @Test("a 401 to a cached token drops it, and the next request fetches a new one")
    func unauthorizedDropsToken() async throws {
        let policy: @Sendable (Provider) -> RefreshPolicy = { provider in
            var policy = RefreshPolicy.forProvider(provider)
            policy.minimumRefetchInterval = .zero
            return policy
        }
        try await Setup.with(policy: policy) { setup in
            #expect(try await setup.get("acme", "/v2/persons").status == 200)
            let first = try #require(setup.lastBearer)
            try await setup.auth.revoke(token: first, api: .v2, baseURL: setup.standIn.baseURL)

            let (status, body) = try await setup.get("acme", "/v2/persons")
            #expect(status == 401, "Personio's 401 is passed back as it is")
            #expect(body["errors"] != nil)
            #expect(setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0) == nil)

            #expect(try await setup.get("acme", "/v2/persons").status == 200)
            let second = try #require(setup.lastBearer)
            #expect(second != first)
            #expect(setup.standIn.calls(.v2Token) == 2)
        }
    }

    @Test("a 401 to a token fetched moments ago keeps it, so that a misbehaving upstream costs no token calls")
    func unauthorizedFreshTokenKept() async throws {
        try await Setup.with { setup in
            #expect(try await setup.get("acme", "/v2/persons").status == 200)
            let first = try #require(setup.lastBearer)
            try await setup.auth.revoke(token: first, api: .v2, baseURL: setup.standIn.baseURL)
            #expect(try await setup.get("acme", "/v2/persons").status == 401)
            #expect(try await setup.get("acme", "/v2/persons").status == 401)
            #expect(setup.broker.cachedResponse("acme", for: Self.caller, minTTL: 0) != nil)
            #expect(setup.standIn.calls(.v2Token) == 1)
        }
    }

    @Test("Personio's 5xx is an answer, not an error")
    func upstreamErrorsStreamBack() async throws {
        try await Setup.with { setup in
            setup.standIn.setFailure(.status(503), on: [.resource])
            let (status, body) = try await setup.get("acme", "/v2/persons")
            #expect(status == 503)
            #expect(body["errors"] != nil)
        }
    }

    // MARK: - Errors

    @Test("a hanging upstream is upstream_unavailable with Retry-After, and the key stays out of the error")
    func hangIsUnavailable() async throws {
        try await Setup.with { setup in
            setup.standIn.setFailure(.hang, on: [.resource])
            for id in ["acme", "hiring"] {
                do {
                    _ = try await setup.get(id, "/v1/recruiting/applications", timeout: .milliseconds(300))
                    Issue.record("no error for \(id)")
                } catch let error as VaultError {
                    #expect(error.code == .upstreamUnavailable)
                    #expect((error.retryAfter ?? 0) >= 1)
                    #expect(!"\(error)".contains(Self.recruitingKey))
                }
            }
            #expect(!setup.fixture.logs.lines.joined().contains(Self.recruitingKey))
        }
    }

    @Test("a proxy call whose task is cancelled first sends nothing to Personio and fails as cancelled")
    func cancelledFirstSendsNothing() async throws {
        try await Setup.with { setup in
            for id in ["acme", "hiring"] {
                let call = Task {
                    withUnsafeCurrentTask { $0?.cancel() }
                    return try await setup.broker.proxy(
                        id,
                        request: ProxyRequest(method: "POST", path: "/v1/recruiting/applications"),
                        for: Self.caller
                    )
                }
                do {
                    let answer = try await call.value
                    Issue.record("\(id): cancelled, and still answered \(answer.status)")
                } catch let error as VaultError {
                    // Cancelled on the event loop before the exchange began (the proxy's own check).
                    #expect(error.code == .upstreamUnavailable, "\(id): \(error)")
                } catch {
                    // Cancelled at the grant's store read: a cancellation, not a storage failure.
                    #expect(error is CancellationError, "\(id): \(error)")
                }
            }
            // A request that did go out would have arrived by now.
            try await Task.sleep(for: .milliseconds(300))
            #expect(setup.standIn.calls(.resource) == 0, "a cancelled call reached Personio")
            let failures = setup.fixture.logs.lines.filter { $0.contains("store read failed") }
            #expect(failures.isEmpty, "\(failures)")
        }
    }

    @Test("an unreachable base URL is upstream_unavailable")
    func unreachable() async throws {
        try await Setup.with { setup in
            var patch = SettingsPatch()
            patch.apiBaseURL = .set("http://127.0.0.1:1")
            // A new API base needs the secret again.
            let key = secrets([.recruitingToken: Self.recruitingKey])
            _ = try await setup.vault.edit("hiring", EditConnectionRequest(settings: patch, secrets: key), by: admin)
            #expect(
                await BrokerHarness.code { _ = try await setup.get("hiring", "/v1/recruiting/applications") }
                    == .upstreamUnavailable
            )
        }
    }

    static let badRequests: [(ProxyRequest, VaultError.Code)] = [
        (ProxyRequest(method: "TRACE", path: "/v2/persons"), .methodNotAllowed),
        (ProxyRequest(method: "GET", path: "/v2/../auth/token"), .badRequest),
        (ProxyRequest(method: "GET", path: "//evil.example/v2/persons"), .badRequest),
        (ProxyRequest(method: "GET", path: "/v2/persons", query: "a#b"), .badRequest),
        (ProxyRequest(method: "GET", path: "/v2/persons", headers: [("Accept", "a\r\nb")]), .badRequest),
    ]

    @Test("requests the proxy cannot send are refused before anything else", arguments: Self.badRequests)
    func badRequestsRefused(request: ProxyRequest, expected: VaultError.Code) async throws {
        try await Setup.with { setup in
            for (id, caller) in [("acme", Self.caller), ("hiring", Self.caller), ("nosuch", Self.stranger)] {
                let code = await BrokerHarness.code {
                    _ = try await setup.broker.proxy(id, request: request, for: caller)
                }
                #expect(code == expected)
            }
            #expect(setup.standIn.totalCalls == 0)
        }
    }
}
