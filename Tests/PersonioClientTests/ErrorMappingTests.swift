import PersonioClient
import PersonioStandIn
import TestSupport
import Testing

@Suite struct ErrorMappingTests {
    @Test(arguments: PersonioStandIn.RejectionCode.allCases)
    func v2RejectionsMeanCredentialsRejected(code: PersonioStandIn.RejectionCode) async throws {
        try await withFixture { fixture in
            fixture.standIn.setRejectionCode(code)
            let error = try #require(
                await fixture.exchangeError(fixture.credentials(.v2, clientSecret: "fake-wrong-secret"))
            )
            #expect(error.code == .credentialsRejected)
            #expect(error.httpStatus == 400)
            #expect(error.personioError == code.rawValue)
            #expect(error.retryAfter == nil)
        }
    }

    @Test func anUnknownV2ClientIsRejected() async throws {
        try await withFixture { fixture in
            let error = await fixture.exchangeError(fixture.credentials(.v2, clientID: "fake-client-id-unknown"))
            #expect(error?.code == .credentialsRejected)
            #expect(error?.personioError == "invalid_client")
        }
    }

    @Test func v1WrongCredentialsAreRejected() async throws {
        try await withFixture { fixture in
            let error = try #require(
                await fixture.exchangeError(fixture.credentials(.v1, clientSecret: "fake-wrong-secret"))
            )
            #expect(error.code == .credentialsRejected)
            #expect(error.httpStatus == 401)
            #expect(error.message.contains("Wrong credentials"))
        }
    }

    @Test func aClientRegisteredForV2OnlyIsRejectedByV1() async throws {
        try await withFixture { fixture in
            fixture.standIn.register(clientID: "fake-client-id-v2", clientSecret: "fake-secret-v2", api: .v2)
            let error = await fixture.exchangeError(
                fixture.credentials(.v1, clientID: "fake-client-id-v2", clientSecret: "fake-secret-v2")
            )
            #expect(error?.code == .credentialsRejected)
        }
    }

    @Test func anUnknownScopeIsAnInvalidRequest() async throws {
        try await withFixture { fixture in
            let error = try #require(
                await fixture.exchangeError(fixture.credentials(.v2, scope: "personio:imaginary:read"))
            )
            #expect(error.code == .invalidRequest)
            #expect(error.httpStatus == 400)
            #expect(error.personioError == "invalid_scope")
        }
    }

    /// One injected upstream behaviour and what the client must make of it.
    struct FailureCase: Sendable, CustomTestStringConvertible {
        var failure: PersonioStandIn.Failure
        var api: PersonioAPI
        var code: PersonioAuthError.Code
        var status: Int?
        var retryAfter: Duration?

        var testDescription: String { "\(self.failure) on \(self.api) → \(self.code)" }
    }

    static let failureCases: [FailureCase] = [
        FailureCase(failure: .status(500), api: .v2, code: .unavailable, status: 500),
        FailureCase(failure: .status(503), api: .v1, code: .unavailable, status: 503),
        FailureCase(failure: .status(502), api: .v2, code: .unavailable, status: 502),
        FailureCase(failure: .status(404), api: .v2, code: .invalidRequest, status: 404),
        FailureCase(failure: .status(403), api: .v1, code: .invalidRequest, status: 403),
        FailureCase(failure: .status(202), api: .v2, code: .invalidResponse, status: 202),
        FailureCase(
            failure: .tooManyRequests(retryAfter: 7),
            api: .v2,
            code: .unavailable,
            status: 429,
            retryAfter: .seconds(7)
        ),
        FailureCase(
            failure: .tooManyRequests(retryAfter: 30),
            api: .v1,
            code: .unavailable,
            status: 429,
            retryAfter: .seconds(30)
        ),
        FailureCase(failure: .tooManyRequests(retryAfter: nil), api: .v2, code: .unavailable, status: 429),
        FailureCase(failure: .malformedJSON, api: .v2, code: .invalidResponse, status: 200),
        FailureCase(failure: .malformedJSON, api: .v1, code: .invalidResponse, status: 200),
        FailureCase(failure: .oversizedBody(bytes: 100_000), api: .v2, code: .invalidResponse),
        FailureCase(failure: .closeConnection, api: .v2, code: .unavailable),
    ]

    @Test(arguments: Self.failureCases)
    func upstreamFailuresAreMapped(_ failureCase: FailureCase) async throws {
        try await withFixture { fixture in
            fixture.standIn.setFailure(failureCase.failure)
            let error = try #require(await fixture.exchangeError(fixture.credentials(failureCase.api)))
            #expect(error.code == failureCase.code)
            #expect(error.httpStatus == failureCase.status)
            #expect(error.retryAfter == failureCase.retryAfter)
        }
    }

    @Test func aHangingUpstreamTimesOut() async throws {
        try await withFixture(timeout: .milliseconds(300)) { fixture in
            fixture.standIn.setFailure(.hang)
            let started = ContinuousClock.now
            let error = try #require(await fixture.exchangeError(fixture.credentials(.v2)))
            let elapsed = ContinuousClock.now - started
            #expect(error.code == .unavailable)
            #expect(error.httpStatus == nil)
            // Well under the stand-in's hang (forever) and the test's patience; a busy machine answers late.
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(10))
        }
    }

    @Test func latencyBeyondTheTimeoutIsUnavailable() async throws {
        try await withFixture(timeout: .milliseconds(300)) { fixture in
            fixture.standIn.setLatency(.seconds(5))
            let error = await fixture.exchangeError(fixture.credentials(.v1))
            #expect(error?.code == .unavailable)
        }
    }

    @Test func aRefusedConnectionIsUnavailable() async throws {
        let standIn = try await PersonioStandIn.start()
        let baseURL = standIn.baseURL
        try await standIn.shutdown()
        // A refusal is an answer of its own, not a wait for the time-out: it must come well before the time-out
        // (half of it; a bound in milliseconds fails on a loaded machine without saying anything about the client).
        let timeout = TimeScale.scaled(.seconds(20))
        try await withFixture(timeout: timeout) { fixture in
            var credentials = fixture.credentials(.v2)
            credentials.baseURL = baseURL
            let started = ContinuousClock.now
            let error = try #require(await fixture.exchangeError(credentials))
            #expect(error.code == .unavailable)
            #expect(ContinuousClock.now - started < timeout / 2)
        }
    }

    @Test func failuresCanBeLimitedToTheNextCalls() async throws {
        try await withFixture { fixture in
            fixture.standIn.setFailure(.status(500), times: 2)
            #expect(await fixture.exchangeError(fixture.credentials(.v2))?.code == .unavailable)
            #expect(await fixture.exchangeError(fixture.credentials(.v2))?.code == .unavailable)
            #expect(await fixture.exchangeError(fixture.credentials(.v2)) == nil)
            #expect(fixture.standIn.calls(.v2Token) == 3)
        }
    }

    @Test func theRateLimitSurfacesAsUnavailableWithRetryAfter() async throws {
        try await withFixture { fixture in
            fixture.standIn.setRateLimit(2)
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            _ = try await fixture.client.exchange(fixture.credentials(.v2))
            let error = try #require(await fixture.exchangeError(fixture.credentials(.v2)))
            #expect(error.code == .unavailable)
            #expect(error.httpStatus == 429)
            let retryAfter = try #require(error.retryAfter)
            #expect(retryAfter > .zero && retryAfter <= .seconds(60))
        }
    }

    /// A configuration that cannot work fails before anything is sent.
    struct BadConfiguration: Sendable, CustomTestStringConvertible {
        var name: String
        var apply: @Sendable (inout PersonioCredentials) -> Void

        var testDescription: String { self.name }
    }

    static let badConfigurations: [BadConfiguration] = [
        BadConfiguration(name: "ftp base URL") { $0.baseURL = "ftp://127.0.0.1:1" },
        BadConfiguration(name: "base URL without scheme") { $0.baseURL = "api.personio.de" },
        BadConfiguration(name: "base URL with query") { $0.baseURL += "/?client_secret=x" },
        BadConfiguration(name: "base URL with space") { $0.baseURL += " x" },
        BadConfiguration(name: "app id with CR LF") { $0.appID = "APP\r\nX-Injected: 1" },
        BadConfiguration(name: "empty partner id") { $0.partnerID = "" },
        BadConfiguration(name: "empty client secret") { $0.clientSecret = secret("") },
        BadConfiguration(name: "client id with a newline") { $0.clientID = secret("fake-id\n") },
        BadConfiguration(name: "scope with a newline") { $0.scope = "personio:persons:read\n" },
    ]

    @Test(arguments: Self.badConfigurations)
    func badConfigurationIsAnInvalidRequestWithoutACall(_ configuration: BadConfiguration) async throws {
        try await withFixture { fixture in
            var credentials = fixture.credentials(.v2)
            configuration.apply(&credentials)
            let error = await fixture.exchangeError(credentials)
            #expect(error?.code == .invalidRequest)
            #expect(fixture.standIn.totalCalls == 0)
        }
    }

    @Test func errorsCompareByCodeAndDescribeThemselves() {
        let error = PersonioAuthError(
            .unavailable,
            "Personio's rate limit was reached",
            httpStatus: 429,
            personioError: "temporarily_unavailable",
            retryAfter: .seconds(5)
        )
        #expect(error == PersonioAuthError(.unavailable, "something else"))
        #expect(error != PersonioAuthError(.invalidResponse, "Personio's rate limit was reached"))
        #expect(
            error.description
                == "unavailable: Personio's rate limit was reached (HTTP 429, temporarily_unavailable, retry after 5 s)"
        )
    }
}
