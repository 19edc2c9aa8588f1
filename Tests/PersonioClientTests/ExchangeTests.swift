import AsyncHTTPClient
import Logging
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing

@Suite struct ExchangeTests {
    @Test func v2IssuesATokenFromAFormBodyWithTheConfiguredHeaders() async throws {
        try await withFixture { fixture in
            let before = ContinuousClock.now
            let token = try await fixture.client.exchange(
                fixture.credentials(.v2, appID: Fake.appID, partnerID: Fake.partnerID)
            )
            #expect(token.accessToken.hasPrefix("papi-"))
            #expect(token.tokenType == "Bearer")
            #expect(token.expiresIn == 86_400)
            #expect(token.scope == PersonioStandIn.defaultScopes.joined(separator: " "))
            #expect(token.issuedAt >= before && token.issuedAt <= .now)
            #expect(token.expiresAt == token.issuedAt + .seconds(86_400))
            #expect(fixture.standIn.isValid(token: token.accessToken))

            let request = try #require(fixture.standIn.lastRequest(.v2Token))
            #expect(request.method == "POST")
            #expect(request.path == "/v2/auth/token")
            #expect(request.query == nil)
            #expect(request.bodyKind == .form)
            #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
            #expect(request.header("Accept") == "application/json")
            // No connection of a token call goes back to the HTTP client's pool (see `PersonioAuthClient.post`).
            #expect(request.header("Connection") == "close")
            #expect(request.header("X-Personio-App-ID") == Fake.appID)
            #expect(request.header("X-Personio-Partner-ID") == Fake.partnerID)
            #expect(
                request.bodyFields == [
                    "grant_type": "client_credentials", "client_id": Fake.clientID, "client_secret": Fake.clientSecret,
                ]
            )
            #expect(fixture.standIn.calls(.v2Token) == 1)
        }
    }

    @Test func identificationHeadersAreLeftOutWhenNotConfigured() async throws {
        try await withFixture { fixture in
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            let request = try #require(fixture.standIn.lastRequest(.v2Token))
            #expect(request.header("X-Personio-App-ID") == nil)
            #expect(request.header("X-Personio-Partner-ID") == nil)
        }
    }

    @Test(arguments: ["personio:persons:read", "personio:persons:read personio:webhooks:read"])
    func scopeIsPassedThrough(scope: String) async throws {
        try await withFixture { fixture in
            let token = try await fixture.client.exchange(fixture.credentials(.v2, scope: scope))
            #expect(token.scope == scope)
            #expect(fixture.standIn.lastRequest(.v2Token)?.bodyFields["scope"] == scope)
        }
    }

    @Test func v1IssuesATokenFromAJSONBodyNeverTheQueryString() async throws {
        try await withFixture { fixture in
            let token = try await fixture.client.exchange(fixture.credentials(.v1, appID: Fake.appID))
            #expect(token.accessToken.hasPrefix("papi-"))
            #expect(token.tokenType == "Bearer")
            #expect(token.expiresIn == IssuedToken.defaultLifetimeSeconds)
            #expect(token.scope == nil)

            let request = try #require(fixture.standIn.lastRequest(.v1Auth))
            #expect(request.path == "/v1/auth")
            #expect(request.query == nil)
            #expect(request.queryFields.isEmpty)
            #expect(request.bodyKind == .json)
            #expect(request.header("Content-Type") == "application/json")
            #expect(request.header("X-Personio-App-ID") == Fake.appID)
            #expect(request.bodyFields == ["client_id": Fake.clientID, "client_secret": Fake.clientSecret])
        }
    }

    /// Bytes that need escaping in a form or a JSON string arrive intact.
    @Test(arguments: PersonioAPI.allCases)
    func awkwardSecretsAreEncodedCorrectly(api: PersonioAPI) async throws {
        try await withFixture { fixture in
            let awkward = "fake \"secret\" & = + % / \\ ~ é 🙂"
            fixture.standIn.register(clientID: "fake-client id+2", clientSecret: awkward)
            let token = try await fixture.client.exchange(
                fixture.credentials(api, clientID: "fake-client id+2", clientSecret: awkward)
            )
            #expect(fixture.standIn.isValid(token: token.accessToken))
            let endpoint: PersonioStandIn.Endpoint = api == .v1 ? .v1Auth : .v2Token
            #expect(fixture.standIn.lastRequest(endpoint)?.bodyFields["client_secret"] == awkward)
        }
    }

    /// Personio hands out the same token while it is valid; asking again does not lengthen its life.
    @Test func tokensAreStableWhileValid() async throws {
        try await withFixture { fixture in
            fixture.standIn.setTokenLifetime(seconds: 120)
            let first = try await fixture.client.exchange(fixture.credentials(.v2))
            let second = try await fixture.client.exchange(fixture.credentials(.v2))
            #expect(first.expiresIn == 120)
            #expect(second.accessToken == first.accessToken)
            #expect(second.expiresIn <= 120)
            #expect(fixture.standIn.issuedTokens == [first.accessToken])
        }
    }

    @Test func aBaseURLWithATrailingSlashWorks() async throws {
        try await withFixture { fixture in
            var credentials = fixture.credentials(.v2)
            credentials.baseURL += "/"
            _ = try await fixture.client.exchange(credentials)
            #expect(fixture.standIn.lastRequest(.v2Token)?.path == "/v2/auth/token")
        }
    }

    @Test func latencyWithinTheTimeoutIsWaitedOut() async throws {
        try await withFixture(timeout: .seconds(2)) { fixture in
            fixture.standIn.setLatency(.milliseconds(150))
            let started = ContinuousClock.now
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            #expect(ContinuousClock.now - started >= .milliseconds(150))
        }
    }

    @Test func logLinesCarryDottedMetadata() async throws {
        try await withFixture { fixture in
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            let issued = try #require(fixture.logs.entries.first { $0.message == "Personio issued an access token" })
            #expect(issued.metadata["personio.api"] == "v2")
            #expect(issued.metadata["personio.expires_in"] == "86400")
            #expect(issued.metadata["http.status"] == "200")
            #expect(issued.level == .debug)
        }
    }

    @Test func aClientOnACallerOwnedHTTPClientWorks() async throws {
        try await PersonioStandIn.withStandIn { standIn in
            standIn.register(clientID: Fake.clientID, clientSecret: Fake.clientSecret)
            let httpClient = HTTPClient(
                eventLoopGroupProvider: .singleton,
                configuration: PersonioAuthClient.httpClientConfiguration()
            )
            let logs = LogCapture()
            let client = PersonioAuthClient(httpClient: httpClient, logger: logs.logger())
            let credentials = PersonioCredentials(
                api: .v2,
                clientID: secret(Fake.clientID),
                clientSecret: secret(Fake.clientSecret),
                baseURL: standIn.baseURL
            )
            let token = try await client.exchange(credentials)
            #expect(standIn.isValid(token: token.accessToken))
            try await client.shutdown()  // leaves the caller's client alone
            _ = try await client.exchange(credentials)
            try await httpClient.shutdown()
        }
    }
}
