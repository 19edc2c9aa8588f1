import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

/// `/v1/connections/{id}/proxy/{path}` on the app socket against the Personio stand-in: the vault adds the
/// credentials (an access token, or a recruiting key with its company id), keeps the caller under the API base, and
/// answers its own failures as problem+json.
@Suite("Proxy end to end", .offCooperativePool, .timeLimit(.minutes(2)))
struct ProxyEndToEndTests {
    static let clientID = "fake-client-id-proxy"
    static let secret = "fake-secret-proxy-0001"
    static let recruitingKey = "fake-recruiting-key-proxy-0001"

    static func proxy(_ id: String, _ path: String) -> String { "/v1/connections/\(id)/proxy\(path)" }

    // MARK: - Recruiting

    @Test("a recruiting key is never handed out, but the proxy sends it with the company id")
    func recruiting() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addRecruiting("jobs", key: Self.recruitingKey, companyID: "123")

            let cli = try await fixture.ctl(["token", "jobs"])
            #expect(cli.status == 1, "\(cli)")
            #expect(cli.stderr.contains("token_not_exportable"), "\(cli)")
            let token = try await fixture.app(Routes.token("jobs"))
            #expect(token.status == 409, "\(token.raw)")
            #expect(token.problem?.code == .tokenNotExportable)
            #expect(!(cli.stdout + cli.stderr + token.raw).contains(Self.recruitingKey))

            let response = try await fixture.app(Self.proxy("jobs", "/v1/recruiting/applications"))
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.mediaType == "application/json")
            let body = try #require(
                try JSONSerialization.jsonObject(with: Data(response.content.utf8)) as? [String: Any],
                "\(response.raw)"
            )
            #expect(body["success"] as? Bool == true)
            #expect((body["auth"] as? [String: Any])?["company_id"] as? String == "123")
            let seen = try #require(fixture.standIn.lastRequest(.resource), "the stand-in saw no resource request")
            #expect(seen.method == "GET")
            #expect(seen.path == "/v1/recruiting/applications")
            #expect(seen.header("Authorization") == "Bearer \(Self.recruitingKey)")
            #expect(seen.header("X-Company-Id") == "123")
            #expect(!response.raw.contains(Self.recruitingKey), "the key came back: \(response.raw)")
            #expect(fixture.standIn.calls(.v2Token) == 0 && fixture.standIn.calls(.v1Auth) == 0)
        }
    }

    // MARK: - v2

    @Test("the proxy forwards to Personio with the vault's bearer token and headers")
    func v2Persons() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: Self.clientID,
                secret: Self.secret,
                options: ["--app-id", "ACME_SYNC"]
            )

            // The caller's own Authorization is replaced, not forwarded.
            let response = try await fixture.app(
                Self.proxy("acme", "/v2/persons?limit=10"),
                headers: [("Authorization", "Bearer fake-caller-token")]
            )
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.mediaType == "application/json")
            let body = try #require(
                try JSONSerialization.jsonObject(with: Data(response.content.utf8)) as? [String: Any],
                "\(response.raw)"
            )
            let persons = try #require(body["_data"] as? [[String: Any]], "\(response.content)")
            #expect(persons.first?["first_name"] as? String == "Fake")
            let auth = body["auth"] as? [String: Any]
            #expect(auth?["kind"] as? String == "access_token")
            #expect(auth?["app_id"] as? String == "ACME_SYNC")

            let issued = try #require(fixture.standIn.issuedTokens.last)
            let seen = try #require(fixture.standIn.lastRequest(.resource))
            #expect(seen.path == "/v2/persons")
            #expect(seen.query == "limit=10")
            #expect(seen.header("Authorization") == "Bearer \(issued)")
            #expect(seen.header("X-Personio-App-ID") == "ACME_SYNC")
            #expect(!response.raw.contains(issued), "the access token came back through the proxy")
            #expect(!response.raw.contains(Self.secret))

            // A second request reuses the cached token.
            let second = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(second.status == 200, "\(second.raw)")
            #expect(fixture.standIn.calls(.v2Token) == 1)
            #expect(fixture.standIn.calls(.resource) == 2)

            // A disabled connection proxies nothing.
            #expect(try await fixture.ctl(["disable", "acme"]).status == 0)
            let disabled = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(disabled.status == 409, "\(disabled.raw)")
            #expect(disabled.problem?.code == .connectionDisabled)
            #expect(fixture.standIn.calls(.resource) == 2)
        }
    }

    /// Request targets whose `{path}` would leave the API base: dot segments (plain, encoded, double-encoded),
    /// absolute URLs, network-path references, encoded slashes.
    static let escapingTargets = [
        "/v1/connections/acme/proxy/../../../v1/connections",
        "/v1/connections/acme/proxy/v2/../../v2/persons",
        "/v1/connections/acme/proxy/./v2/persons",
        "/v1/connections/acme/proxy/%2e%2e/v2/persons",
        "/v1/connections/acme/proxy/%2E%2E/%2E%2E/v1/connections",
        "/v1/connections/acme/proxy/v2/%2e%2e/%2e%2e/v1/auth",
        "/v1/connections/acme/proxy/%252e%252e/v2/persons",
        "/v1/connections/acme/proxy/http://evil.invalid/v2/persons",
        "/v1/connections/acme/proxy/https:%2F%2Fevil.invalid/v2/persons",
        "/v1/connections/acme/proxy//evil.invalid/v2/persons",
        "/v1/connections/acme/proxy/%2F%2Fevil.invalid/v2/persons",
        "/v1/connections/acme/proxy/v2%2Fpersons",
    ]

    @Test("paths that leave the API base are refused with 400 and never sent")
    func escapingPaths() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let accepted = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(accepted.status == 200, "\(accepted.raw)")
            let before = (fixture.standIn.calls(.unknown), fixture.standIn.totalCalls)

            for target in Self.escapingTargets {
                let response = try await fixture.app(target)
                #expect(response.status == 400, "\(target) → \(response.raw)")
                #expect(response.mediaType == "application/problem+json", "\(target) → \(response.head)")
            }
            let sent = fixture.standIn.totalCalls - before.1
            #expect(
                sent == 0,
                "escaping paths were sent upstream: \(fixture.standIn.requests().suffix(sent).map(\.path))"
            )
            #expect(fixture.standIn.calls(.unknown) == before.0)
        }
    }

    // MARK: - Failures

    @Test("Personio's server errors become the vault's 502/503 problem+json; its other answers pass as they are")
    func upstreamServerError() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let issued = try await fixture.ctl(["token", "acme"]).stdout.trimmingCharacters(in: .newlines)

            fixture.standIn.setFailure(.status(500), on: [.resource])
            let failed = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(failed.status == 502, "\(failed.raw)")
            #expect(failed.mediaType == "application/problem+json", "\(failed.head)")
            #expect(failed.problem?.code == .upstreamError, "\(failed.content)")
            #expect(
                !failed.content.contains("personio_trace_id"),
                "Personio's error body was relayed: \(failed.content)"
            )

            fixture.standIn.setFailure(.status(503), on: [.resource])
            let unavailable = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(unavailable.status == 503, "\(unavailable.raw)")
            #expect(unavailable.problem?.code == .upstreamUnavailable)
            #expect(unavailable.header("Retry-After").flatMap { Int($0) } != nil, "\(unavailable.head)")

            // Personio's own refusals are its answer to the caller: status, body and Retry-After come back.
            fixture.standIn.setFailure(.tooManyRequests(retryAfter: 7), on: [.resource])
            let limited = try await fixture.app(Self.proxy("acme", "/v2/persons"))
            #expect(limited.status == 429, "\(limited.raw)")
            #expect(limited.header("Retry-After") == "7", "\(limited.head)")
            #expect(limited.content.contains("personio_trace_id"), "\(limited.content)")

            #expect(fixture.standIn.calls(.resource) == 3)
            #expect(fixture.standIn.calls(.v2Token) == 1)
            for response in [failed, unavailable, limited] {
                #expect(!response.raw.contains(issued) && !response.raw.contains(Self.secret), "\(response.raw)")
            }
        }
    }

    @Test("a Personio that never answers ends in 503 upstream_unavailable within the proxy's time-out")
    func upstreamHangs() async throws {
        try await BrokerFixture.run(daemonArguments: ["--dev", "--log-level", "debug", "--proxy-timeout", "3"]) {
            fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            fixture.standIn.setFailure(.hang, on: [.resource])

            // `--proxy-timeout 3`: the proxy waits 3 s for Personio's response head (30 s by default).
            let start = ContinuousClock.now
            let response = try await fixture.app(Self.proxy("acme", "/v2/persons"), timeout: .seconds(60))
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(2900), "answered after \(elapsed), before the time-out")
            #expect(response.status == 503, "after \(elapsed): \(response.raw)")
            #expect(response.mediaType == "application/problem+json", "\(response.head)")
            #expect(response.problem?.code == .upstreamUnavailable, "\(response.content)")
            #expect(response.header("Retry-After").flatMap { Int($0) } != nil, "\(response.head)")
            #expect(elapsed < .seconds(25), "the proxy waited \(elapsed), as if the flag were ignored")
            #expect(fixture.standIn.calls(.resource) == 1)
            // The daemon still answers.
            let health = try await fixture.app(Routes.health)
            #expect(health.status == 200)
        }
    }
}
