import Foundation
import NIOHTTP1
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing

/// The stand-in's own behaviour, checked with raw requests that the vault's client would never send.
@Suite struct StandInTests {
    @Test func itListensOnLoopbackOnly() async throws {
        try await PersonioStandIn.withStandIn { standIn in
            #expect(standIn.baseURL == "http://127.0.0.1:\(standIn.port)")
            #expect(standIn.port > 0)
        }
    }

    @Test func v2TokenAnswersInPersoniosShape() async throws {
        try await withFixture { fixture in
            let response = try await send(
                .POST,
                fixture.standIn.baseURL + "/v2/auth/token",
                headers: [formContentType],
                body: formBody()
            )
            #expect(response.status == 200)
            let json = try #require(response.json)
            #expect((json["access_token"] as? String)?.hasPrefix("papi-") == true)
            #expect(json["token_type"] as? String == "Bearer")
            #expect(json["expires_in"] as? Int == 86_400)
            #expect(json["scope"] as? String == PersonioStandIn.defaultScopes.joined(separator: " "))
            #expect(json.keys.contains("refresh_token") && json["refresh_token"] is NSNull)
        }
    }

    struct BadTokenRequest: Sendable, CustomTestStringConvertible {
        var name: String
        var contentType: (String, String)
        var body: String
        var error: String

        var testDescription: String { self.name }
    }

    static let badTokenRequests: [BadTokenRequest] = [
        BadTokenRequest(
            name: "JSON body",
            contentType: jsonContentType,
            body:
                #"{"grant_type":"client_credentials","client_id":"fake-client-id-1","client_secret":"fake-secret-1"}"#,
            error: "invalid_request"
        ),
        BadTokenRequest(
            name: "password grant",
            contentType: formContentType,
            body: formBody(grantType: "password"),
            error: "unsupported_grant_type"
        ),
        BadTokenRequest(
            name: "no grant type",
            contentType: formContentType,
            body: "client_id=fake-client-id-1&client_secret=fake-secret-1",
            error: "invalid_request"
        ),
        BadTokenRequest(
            name: "no secret",
            contentType: formContentType,
            body: "grant_type=client_credentials&client_id=fake-client-id-1",
            error: "invalid_request"
        ),
        BadTokenRequest(
            name: "wrong secret",
            contentType: formContentType,
            body: formBody(clientSecret: "fake-wrong"),
            error: "invalid_client"
        ),
        BadTokenRequest(
            name: "unknown scope",
            contentType: formContentType,
            body: formBody() + "&scope=personio:imaginary:read",
            error: "invalid_scope"
        ),
        BadTokenRequest(
            name: "bad percent escape",
            contentType: formContentType,
            body: formBody() + "&scope=%zz",
            error: "invalid_request"
        ),
    ]

    @Test(arguments: Self.badTokenRequests)
    func v2TokenRefusesWhatPersonioRefuses(_ bad: BadTokenRequest) async throws {
        try await withFixture { fixture in
            let response = try await send(
                .POST,
                fixture.standIn.baseURL + "/v2/auth/token",
                headers: [bad.contentType],
                body: bad.body
            )
            #expect(response.status == 400)
            #expect(response.headers.first(name: "Content-Type") == "application/problem+json")
            let json = try #require(response.json)
            #expect(json["error"] as? String == bad.error)
            for key in ["error_description", "error_uri", "timestamp", "trace_id", "meta"] {
                #expect(json[key] != nil, "missing \(key)")
            }
            #expect(fixture.standIn.issuedTokens.isEmpty)
        }
    }

    @Test func v1RefusesCredentialsInTheQueryString() async throws {
        try await withFixture { fixture in
            let url = fixture.standIn.baseURL + "/v1/auth?client_id=\(Fake.clientID)&client_secret=\(Fake.clientSecret)"
            let response = try await send(.POST, url)
            #expect(response.status == 403)
            let json = try #require(response.json)
            #expect(json["success"] as? Bool == false)
            #expect(fixture.standIn.lastRequest(.v1Auth)?.queryFields["client_secret"] == Fake.clientSecret)
            #expect(fixture.standIn.issuedTokens.isEmpty)
        }
    }

    @Test func v1AcceptsAFormBodyAndEchoesTheTokenInAHeader() async throws {
        try await withFixture { fixture in
            let response = try await send(
                .POST,
                fixture.standIn.baseURL + "/v1/auth",
                headers: [formContentType],
                body: "client_id=\(Fake.clientID)&client_secret=\(Fake.clientSecret)"
            )
            #expect(response.status == 200)
            let json = try #require(response.json)
            #expect(json["success"] as? Bool == true)
            let token = try #require((json["data"] as? [String: Any])?["token"] as? String)
            #expect(response.headers.first(name: "Authorization") == "Bearer \(token)")
        }
    }

    @Test func v1WrongCredentialsAnswer401InPersoniosShape() async throws {
        try await withFixture { fixture in
            let response = try await send(
                .POST,
                fixture.standIn.baseURL + "/v1/auth",
                headers: [jsonContentType],
                body: #"{"client_id":"fake-client-id-1","client_secret":"fake-wrong"}"#
            )
            #expect(response.status == 401)
            let json = try #require(response.json)
            #expect(json["success"] as? Bool == false)
            let error = try #require(json["error"] as? [String: Any])
            #expect(error["code"] as? Int == 0)
            #expect(error["message"] is String)
        }
    }

    @Test func theRateLimitAnswers429PerClient() async throws {
        try await withFixture { fixture in
            fixture.standIn.register(clientID: "fake-client-id-2", clientSecret: "fake-secret-2")
            fixture.standIn.setRateLimit(3)
            let url = fixture.standIn.baseURL + "/v2/auth/token"
            for _ in 0..<3 {
                #expect(try await send(.POST, url, headers: [formContentType], body: formBody()).status == 200)
            }
            let limited = try await send(.POST, url, headers: [formContentType], body: formBody())
            #expect(limited.status == 429)
            let retryAfter = try #require(limited.headers.first(name: "Retry-After").flatMap { Int($0) })
            #expect(retryAfter >= 1 && retryAfter <= 60)
            let other = try await send(
                .POST,
                url,
                headers: [formContentType],
                body: formBody(clientID: "fake-client-id-2", clientSecret: "fake-secret-2")
            )
            #expect(other.status == 200)
            #expect(fixture.standIn.calls(.v2Token) == 5)

            fixture.standIn.setRateLimit(nil)
            #expect(try await send(.POST, url, headers: [formContentType], body: formBody()).status == 200)
        }
    }

    @Test func theRateLimitWindowSlides() async throws {
        try await withFixture { fixture in
            // A window no busy machine outlasts between the first two calls; the stand-in's clock then moves past
            // it, so the third call is outside without waiting.
            fixture.standIn.setRateLimit(1, window: .seconds(600))
            _ = try await fixture.client.exchange(fixture.credentials(.v1))
            #expect(await fixture.exchangeError(fixture.credentials(.v1))?.httpStatus == 429)
            fixture.standIn.advanceClock(by: .seconds(601))
            #expect(await fixture.exchangeError(fixture.credentials(.v1)) == nil)
        }
    }

    @Test func tokensExpireAfterTheirLifetime() async throws {
        try await withFixture { fixture in
            // A lifetime no busy machine outlasts, passed on the stand-in's clock.
            fixture.standIn.setTokenLifetime(seconds: 600)
            let first = try await fixture.client.exchange(fixture.credentials(.v2))
            #expect(first.expiresIn == 600)
            #expect(fixture.standIn.isValid(token: first.accessToken))
            fixture.standIn.advanceClock(by: .seconds(601))
            #expect(!fixture.standIn.isValid(token: first.accessToken))
            let second = try await fixture.client.exchange(fixture.credentials(.v2))
            #expect(second.accessToken != first.accessToken)
        }
    }

    @Test func aSecretChangeOrRemovalInvalidatesCredentialsAndTokens() async throws {
        try await withFixture { fixture in
            let token = try await fixture.client.exchange(fixture.credentials(.v2))
            fixture.standIn.changeSecret(clientID: Fake.clientID, newSecret: "fake-secret-rotated")
            #expect(fixture.standIn.isRevoked(token: token.accessToken))
            #expect(await fixture.exchangeError(fixture.credentials(.v2))?.code == .credentialsRejected)
            let rotated = try await fixture.client.exchange(
                fixture.credentials(.v2, clientSecret: "fake-secret-rotated")
            )

            fixture.standIn.remove(clientID: Fake.clientID)
            #expect(!fixture.standIn.isValid(token: rotated.accessToken))
            let error = await fixture.exchangeError(fixture.credentials(.v1, clientSecret: "fake-secret-rotated"))
            #expect(error?.code == .credentialsRejected)
        }
    }

    @Test func protectedResourcesCheckTheBearerToken() async throws {
        try await withFixture { fixture in
            let base = fixture.standIn.baseURL
            let v2 = try await fixture.client.exchange(fixture.credentials(.v2))
            let v1 = try await fixture.client.exchange(fixture.credentials(.v1))

            let anonymous = try await send(.GET, base + "/v2/persons")
            #expect(anonymous.status == 401)
            let errors = try #require(anonymous.json?["errors"] as? [[String: Any]])
            #expect(errors.first?["title"] as? String == "Unauthorized")
            #expect(anonymous.json?["personio_trace_id"] is String)

            let persons = try await send(
                .GET,
                base + "/v2/persons",
                headers: [("Authorization", "Bearer \(v2.accessToken)"), ("X-Personio-App-ID", Fake.appID)]
            )
            #expect(persons.status == 200)
            let auth = try #require(persons.json?["auth"] as? [String: Any])
            #expect(auth["api"] as? String == "v2")
            #expect(auth["app_id"] as? String == Fake.appID)
            #expect(!persons.body.contains(Fake.clientSecret))

            let employees = try await send(
                .GET,
                base + "/v1/company/employees",
                headers: [("Authorization", "Bearer \(v1.accessToken)")]
            )
            #expect(employees.status == 200)
            #expect(employees.json?["success"] as? Bool == true)

            let forged = try await send(
                .GET,
                base + "/v1/company/employees",
                headers: [("Authorization", "Bearer papi-forged")]
            )
            #expect(forged.status == 401)
            #expect(forged.json?["success"] as? Bool == false)
            #expect(fixture.standIn.calls(.resource) == 4)
        }
    }

    @Test func aTokenWithoutThePersonsScopeGets403() async throws {
        try await withFixture { fixture in
            let token = try await fixture.client.exchange(fixture.credentials(.v2, scope: "personio:webhooks:read"))
            let response = try await send(
                .GET,
                fixture.standIn.baseURL + "/v2/persons",
                headers: [("Authorization", "Bearer \(token.accessToken)")]
            )
            #expect(response.status == 403)
            let errors = try #require(response.json?["errors"] as? [[String: Any]])
            #expect(errors.first?["title"] as? String == "Insufficient access scope")
        }
    }

    @Test func aTokenHoldsExactlyTheScopesAskedForAndEachResourceChecksItsOwn() async throws {
        try await withFixture { fixture in
            let base = fixture.standIn.baseURL
            func status(_ method: HTTPMethod, _ path: String, _ token: IssuedToken) async throws -> Int {
                try await send(method, base + path, headers: [("Authorization", "Bearer \(token.accessToken)")]).status
            }
            let hooks = try await fixture.client.exchange(
                fixture.credentials(.v2, scope: "personio:webhooks:read personio:webhooks:read")
            )
            #expect(hooks.scope == "personio:webhooks:read")
            #expect(try await status(.GET, "/v2/webhooks", hooks) == 200)
            #expect(try await status(.GET, "/v2/webhooks/7", hooks) == 200)
            #expect(try await status(.GET, "/v2/persons", hooks) == 403)
            #expect(try await status(.GET, "/v2/persons/1", hooks) == 403)
            #expect(try await status(.POST, "/v2/webhooks", hooks) == 403, "write is not included in read")

            let persons = try await fixture.client.exchange(
                fixture.credentials(.v2, scope: "personio:persons:write personio:persons:read")
            )
            #expect(persons.scope == "personio:persons:write personio:persons:read")
            #expect(persons.accessToken != hooks.accessToken)
            #expect(try await status(.GET, "/v2/persons/1", persons) == 200)
            #expect(try await status(.PATCH, "/v2/persons/1", persons) == 200)
            #expect(try await status(.GET, "/v2/webhooks", persons) == 403)
            // The same set in another order is the same token, as Personio keeps one per credential pair and scopes.
            let again = try await fixture.client.exchange(
                fixture.credentials(.v2, scope: "personio:persons:read personio:persons:write")
            )
            #expect(again.accessToken == persons.accessToken)

            let readOnly = try await fixture.client.exchange(fixture.credentials(.v2, scope: "personio:persons:read"))
            #expect(try await status(.DELETE, "/v2/persons/1", readOnly) == 403)
            let forbidden = try await send(
                .DELETE,
                base + "/v2/persons/1",
                headers: [("Authorization", "Bearer \(readOnly.accessToken)")]
            )
            let errors = try #require(forbidden.json?["errors"] as? [[String: Any]])
            #expect(errors.first?["detail"] as? String == "personio:persons:write is required")
        }
    }

    @Test func recruitingNeedsTheKeyAndTheMatchingCompanyID() async throws {
        try await withFixture { fixture in
            fixture.standIn.registerRecruitingKey("fake-recruiting-key-1", companyID: "4242")
            let url = fixture.standIn.baseURL + "/v1/recruiting/applications"
            let key = ("Authorization", "Bearer fake-recruiting-key-1")
            let good = try await send(.GET, url, headers: [key, ("X-Company-Id", "4242")])
            #expect(good.status == 200)
            #expect((good.json?["auth"] as? [String: Any])?["company_id"] as? String == "4242")
            #expect(!good.body.contains("fake-recruiting-key-1"))
            #expect(try await send(.GET, url, headers: [key, ("X-Company-Id", "1")]).status == 403)
            #expect(try await send(.GET, url, headers: [key]).status == 403)
            let wrongKey = ("Authorization", "Bearer fake-recruiting-key-2")
            #expect(try await send(.GET, url, headers: [wrongKey, ("X-Company-Id", "4242")]).status == 401)
        }
    }

    @Test func everyCallIsCountedAndCountsReset() async throws {
        try await withFixture { fixture in
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            _ = try await fixture.client.exchange(fixture.credentials(.v1))
            let unknown = try await send(.GET, fixture.standIn.baseURL + "/v2/unknown")
            #expect(unknown.status == 404)
            let wrongMethod = try await send(.GET, fixture.standIn.baseURL + "/v2/auth/token")
            #expect(wrongMethod.status == 405)
            #expect(fixture.standIn.calls(.v2Token) == 2)
            #expect(fixture.standIn.calls(.v1Auth) == 1)
            #expect(fixture.standIn.calls(.unknown) == 1)
            #expect(fixture.standIn.totalCalls == 4)
            #expect(fixture.standIn.requests().count == 4)

            fixture.standIn.resetCounts()
            #expect(fixture.standIn.totalCalls == 0)
            #expect(fixture.standIn.lastRequest() == nil)
        }
    }

    @Test func shutdownReleasesHangingRequestsAndIsIdempotent() async throws {
        let standIn = try await PersonioStandIn.start()
        standIn.register(clientID: Fake.clientID, clientSecret: Fake.clientSecret)
        standIn.setFailure(.hang)
        let logs = LogCapture()
        // The client would give up after 120 s (scaled); the shutdown must release the request long before.
        let clientTimeout = TimeScale.scaled(.seconds(120))
        let client = PersonioAuthClient(logger: logs.logger(), timeout: clientTimeout)
        let credentials = PersonioCredentials(
            api: .v2,
            clientID: secret(Fake.clientID),
            clientSecret: secret(Fake.clientSecret),
            baseURL: standIn.baseURL
        )
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let error = await Self.exchangeError(client, credentials)
                #expect(error?.code == .unavailable)
            }
            let deadline = ContinuousClock.now + .seconds(20)
            while standIn.calls(.v2Token) == 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try #require(standIn.calls(.v2Token) == 1, "the hung request never reached the stand-in")
            let shutdownAt = ContinuousClock.now
            try await standIn.shutdown()
            try await group.waitForAll()
            // Released by the shutdown: the client's time-out could not have fired before `started` + 120 s, and
            // `started` is at most 20 s before the shutdown (a loaded run took 21-27 s from `started`, so a bound
            // from there was a race with the machine's speed).
            #expect(
                ContinuousClock.now - shutdownAt < clientTimeout / 2,
                "released by the client's time-out, not the shutdown"
            )
        }
        #expect(ContinuousClock.now - started < clientTimeout)
        try await standIn.shutdown()
        try await client.shutdown()
    }

    private static func exchangeError(
        _ client: PersonioAuthClient,
        _ credentials: PersonioCredentials
    ) async -> PersonioAuthError? {
        do {
            _ = try await client.exchange(credentials)
            return nil
        } catch {
            return error
        }
    }
}
