import NIOHTTP1
import PersonioClient
import PersonioStandIn
import Testing

@Suite struct RevokeTests {
    @Test func v2RevokeMarksTheTokenRevoked() async throws {
        try await withFixture { fixture in
            let credentials = fixture.credentials(.v2, appID: Fake.appID)
            let token = try await fixture.client.exchange(credentials)
            let persons = fixture.standIn.baseURL + "/v2/persons"
            let authorization = ("Authorization", "Bearer \(token.accessToken)")
            #expect(try await send(.GET, persons, headers: [authorization]).status == 200)

            try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
            #expect(fixture.standIn.isRevoked(token: token.accessToken))
            #expect(!fixture.standIn.isValid(token: token.accessToken))
            #expect(try await send(.GET, persons, headers: [authorization]).status == 401)

            let request = try #require(fixture.standIn.lastRequest(.v2Revoke))
            #expect(request.bodyKind == .form)
            #expect(request.bodyFields == ["token": token.accessToken])
            #expect(request.header("X-Personio-App-ID") == Fake.appID)

            // The next exchange gets a fresh token.
            let next = try await fixture.client.exchange(credentials)
            #expect(next.accessToken != token.accessToken)
        }
    }

    @Test func v1HasNoRevocationSoNothingIsSent() async throws {
        try await withFixture { fixture in
            let credentials = fixture.credentials(.v1)
            let token = try await fixture.client.exchange(credentials)
            try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
            #expect(fixture.standIn.calls(.v2Revoke) == 0)
            #expect(!fixture.standIn.isRevoked(token: token.accessToken))
        }
    }

    @Test func revokeFailuresAreMapped() async throws {
        try await withFixture { fixture in
            fixture.standIn.setFailure(.tooManyRequests(retryAfter: 3), on: [.v2Revoke])
            do throws(PersonioAuthError) {
                try await fixture.client.revoke(token: "papi-fake", api: .v2, baseURL: fixture.standIn.baseURL)
                Issue.record("revoke succeeded against a failing upstream")
            } catch {
                #expect(error.code == .unavailable)
                #expect(error.retryAfter == .seconds(3))
            }
        }
    }

    /// The vault's revoker relies on both: a failure injected for N calls ends by itself, and revoking a token that
    /// is already revoked (a revocation whose success the vault could not record) succeeds again.
    @Test func failuresForNCallsThenARepeatableRevocation() async throws {
        try await withFixture { fixture in
            let credentials = fixture.credentials(.v2)
            let token = try await fixture.client.exchange(credentials)
            fixture.standIn.setFailure(.status(503), times: 2, on: [.v2Revoke])
            for _ in 0..<2 {
                await #expect(throws: PersonioAuthError(.unavailable, "")) {
                    try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
                }
                #expect(fixture.standIn.isValid(token: token.accessToken))
            }
            try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
            #expect(!fixture.standIn.isValid(token: token.accessToken))
            try await fixture.client.revoke(token: token.accessToken, credentials: credentials)
            #expect(fixture.standIn.calls(.v2Revoke) == 4)
        }
    }

    @Test func anEmptyTokenIsAnInvalidRequest() async throws {
        try await withFixture { fixture in
            await #expect(throws: PersonioAuthError(.invalidRequest, "")) {
                try await fixture.client.revoke(token: "", api: .v2, baseURL: fixture.standIn.baseURL)
            }
            #expect(fixture.standIn.totalCalls == 0)
        }
    }
}
