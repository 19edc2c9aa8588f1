import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

/// The token broker behind the app socket, driven like a user would from a shell: the built `connvaultd --dev`, the
/// built `connvaultctl`, and a Personio stand-in on 127.0.0.1 that every connection points at.
///
/// The tests run as root; the app socket serves a connection only to the uids, groups and units its grants name,
/// so every connection here grants uid 0 unless a test says otherwise.
@Suite("Token broker end to end", .offCooperativePool, .timeLimit(.minutes(2)))
struct TokenEndToEndTests {
    static let clientID = "fake-client-id-acme"
    static let secret = "fake-secret-acme-0001"
    static let newSecret = "fake-secret-acme-0002"

    // MARK: - Tokens

    @Test("connvaultctl token prints the stand-in's token, --json the whole answer, and the token is cached")
    func tokenFromTheCLI() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: Self.clientID,
                secret: Self.secret,
                options: ["--app-id", "ACME_SYNC"]
            )

            let plain = try await fixture.ctl(["token", "acme"])
            #expect(plain.status == 0, "\(plain)")
            let issued = try #require(fixture.standIn.issuedTokens.last, "the stand-in issued no token:\n\(plain)")
            #expect(plain.stdout == issued + "\n")
            #expect(plain.stderr.isEmpty, "\(plain)")
            #expect(fixture.standIn.calls(.v2Token) == 1)

            let json = try await fixture.ctlJSON(TokenResponse.self, ["token", "acme"])
            #expect(json.connection == "acme")
            #expect(json.tokenType == "Bearer")
            #expect(json.accessToken == issued)
            #expect(json.expiresIn > 0 && json.expiresIn <= 86_400, "\(json.expiresIn)")
            #expect(Self.epochSeconds(json.expiresAt) != nil, "expires_at \(json.expiresAt)")
            if let expiresAt = Self.epochSeconds(json.expiresAt) {
                let expected = Date.now.timeIntervalSince1970 + Double(json.expiresIn)
                #expect(abs(expiresAt - expected) < 120, "expires_at \(json.expiresAt) vs expires_in \(json.expiresIn)")
            }
            #expect(json.scope == PersonioStandIn.defaultScopes.joined(separator: " "))
            #expect(json.apiBaseURL == fixture.baseURL)
            #expect(json.headers["Authorization"] == "Bearer \(issued)")
            #expect(json.headers["X-Personio-App-ID"] == "ACME_SYNC")
            #expect(json.headers["X-Personio-Partner-ID"] == nil)

            // The stand-in saw a form body with the credentials and the app id header.
            let exchange = try #require(fixture.standIn.lastRequest(.v2Token))
            #expect(exchange.bodyKind == .form)
            #expect(exchange.bodyFields["grant_type"] == "client_credentials")
            #expect(exchange.bodyFields["client_id"] == Self.clientID)
            #expect(exchange.query == nil)
            #expect(exchange.header("X-Personio-App-ID") == "ACME_SYNC")

            // Straight from the app socket: the same token, as JSON, still from the cache.
            let raw = try await fixture.app(Routes.token("acme"))
            #expect(raw.status == 200, "\(raw.raw)")
            #expect(raw.mediaType == "application/json")
            #expect(try raw.decode(TokenResponse.self).accessToken == issued)
            #expect(fixture.standIn.calls(.v2Token) == 1, "a cached token must not be fetched again")
        }
    }

    @Test("min_ttl passes through the CLI and the app socket")
    func minTTL() async throws {
        try await BrokerFixture.run { fixture in
            fixture.standIn.setTokenLifetime(seconds: 3_600)
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)

            let cli = try await fixture.ctlJSON(TokenResponse.self, ["token", "acme", "--min-ttl", "600"])
            #expect(cli.expiresIn >= 600 && cli.expiresIn <= 3_600, "\(cli.expiresIn)")
            let raw = try await fixture.app(Routes.token("acme") + "?min_ttl=1800")
            #expect(raw.status == 200, "\(raw.raw)")
            #expect(try raw.decode(TokenResponse.self).accessToken == cli.accessToken)
            // Within the lifetime and asked again at once: the same token, no second upstream call.
            #expect(fixture.standIn.calls(.v2Token) == 1)

            let bad = try await fixture.app(Routes.token("acme") + "?min_ttl=soon")
            #expect(bad.status == 400, "\(bad.raw)")
            #expect(bad.mediaType == "application/problem+json")
            let usage = try await fixture.ctl(["token", "acme", "--min-ttl", "-1"])
            #expect(usage.status == 2, "\(usage)")

            // Personio's tokens live less than asked for: the answer says so in expires_in (as the README tells).
            fixture.standIn.setTokenLifetime(seconds: 200)
            try await fixture.addV2("short", clientID: "fake-client-id-short", secret: "fake-secret-short-0001")
            let short = try await fixture.ctlJSON(TokenResponse.self, ["token", "short", "--min-ttl", "300"])
            #expect(short.expiresIn <= 200, "\(short.expiresIn)")
        }
    }

    // MARK: - Listing and authorization

    @Test("GET /v1/connections lists only the caller's connections, as metadata without secrets")
    func listOnlyGranted() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: Self.clientID,
                secret: Self.secret,
                options: ["--scope", "personio:persons:read"]
            )
            try await fixture.addV2(
                "other",
                clientID: "fake-client-id-other",
                secret: "fake-secret-other-0001",
                allowUID: 4242
            )
            try await fixture.addRecruiting("jobs", key: "fake-recruiting-key-list", companyID: "123")

            let response = try await fixture.app(Routes.connections)
            #expect(response.status == 200, "\(response.raw)")
            let list = try response.decode(AppConnectionList.self)
            #expect(list.connections.map(\.id).sorted() == ["acme", "jobs"])
            let acme = try #require(list.connections.first { $0.id == "acme" })
            #expect(acme.provider == .personioV2)
            #expect(acme.state == .active)
            #expect(acme.apiBaseURL == fixture.baseURL)
            #expect(acme.scope == "personio:persons:read")
            #expect(acme.tokenExportable)
            let jobs = try #require(list.connections.first { $0.id == "jobs" })
            #expect(jobs.provider == .personioRecruiting)
            #expect(!jobs.tokenExportable)
            for needle in [
                Self.secret, "fake-secret-other-0001", "fake-recruiting-key-list", Self.clientID, "fingerprint",
                "secrets",
            ] {
                #expect(!response.raw.contains(needle), "\(needle) in \(response.raw)")
            }
            // Listing makes no upstream call.
            #expect(fixture.standIn.totalCalls == 0)
        }
    }

    @Test("an unknown connection and one not granted answer the same 403")
    func unknownLooksLikeNotGranted() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "other",
                clientID: "fake-client-id-other",
                secret: "fake-secret-other-0001",
                allowUID: 4242
            )

            let notGranted = try await fixture.app(Routes.token("other"))
            let unknown = try await fixture.app(Routes.token("nope"))
            #expect(notGranted.status == 403, "\(notGranted.raw)")
            #expect(unknown.status == 403, "\(unknown.raw)")
            #expect(notGranted.mediaType == "application/problem+json")
            #expect(notGranted.problem?.code == .forbidden)
            #expect(notGranted.content == unknown.content, "\(notGranted.content)\nvs\n\(unknown.content)")
            #expect(!notGranted.content.contains("other"), "the refusal names the connection: \(notGranted.content)")

            let proxyNotGranted = try await fixture.app("/v1/connections/other/proxy/v2/persons")
            let proxyUnknown = try await fixture.app("/v1/connections/nope/proxy/v2/persons")
            #expect(proxyNotGranted.status == 403, "\(proxyNotGranted.raw)")
            #expect(proxyNotGranted.content == proxyUnknown.content)
            #expect(fixture.standIn.totalCalls == 0, "a refused caller must not cause an upstream call")

            let cli = try await fixture.ctl(["token", "nope"])
            #expect(cli.status == 1, "\(cli)")
            #expect(cli.stderr.contains("forbidden"), "\(cli)")
            #expect(cli.stdout.isEmpty)
        }
    }

    @Test(
        "another uid gets 403 forbidden for a connection granted to root",
        .enabled(if: getuid() == 0, "needs root for setpriv")
    )
    func otherUIDForbidden() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            // Let uid 65534 reach the 0666 app socket through the file system: only the grants can refuse it now.
            chmod(fixture.daemon.directory.path, 0o755)
            chmod(fixture.daemon.stateDirectory, 0o755)

            func asNobody(_ arguments: [String]) async throws -> CommandResult {
                try await Blocking.run { [environment = fixture.daemon.clientEnvironment] in
                    try Command.run(
                        "/usr/bin/setpriv",
                        ["--reuid", "65534", "--regid", "65534", "--clear-groups", Binaries.control] + arguments,
                        environment: environment
                    )
                }
            }
            let refused = try await asNobody(["token", "acme"])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.stderr.contains("forbidden"), "\(refused)")
            #expect(refused.stdout.isEmpty, "\(refused)")
            let unknown = try await asNobody(["token", "nope"])
            #expect(unknown.status == 1, "\(unknown)")
            #expect(unknown.stderr.contains("forbidden"), "\(unknown)")
            #expect(fixture.standIn.calls(.v2Token) == 0)

            // Granting the uid opens the door.
            let granted = try await fixture.ctl(["grant", "acme", "--allow-uid", "65534"])
            #expect(granted.status == 0, "\(granted)")
            let allowed = try await asNobody(["token", "acme"])
            #expect(allowed.status == 0, "\(allowed)")
            #expect(allowed.stdout == (fixture.standIn.issuedTokens.last ?? "-") + "\n")
        }
    }

    // MARK: - Lifecycle

    @Test("disable refuses tokens and revokes the issued one upstream; enable restores them")
    func disableAndEnable() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let first = try await fixture.ctl(["token", "acme"])
            #expect(first.status == 0, "\(first)")
            let token = first.stdout.trimmingCharacters(in: .newlines)

            let disabled = try await fixture.ctl(["disable", "acme", "--reason", "audit week"])
            #expect(disabled.status == 0, "\(disabled)")
            let refused = try await fixture.ctl(["token", "acme"])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.stderr.contains("connection_disabled"), "\(refused)")
            #expect(refused.stdout.isEmpty)
            let raw = try await fixture.app(Routes.token("acme"))
            #expect(raw.status == 409, "\(raw.raw)")
            #expect(raw.problem?.code == .connectionDisabled)
            #expect(!raw.raw.contains(token))
            #expect(
                await Self.eventually { fixture.standIn.isRevoked(token: token) },
                "the cached token was not revoked upstream"
            )

            let enabled = try await fixture.ctl(["enable", "acme"])
            #expect(enabled.status == 0, "\(enabled)")
            let again = try await fixture.ctl(["token", "acme"])
            #expect(again.status == 0, "\(again)")
            let renewed = again.stdout.trimmingCharacters(in: .newlines)
            #expect(renewed != token, "a revoked token was handed out again")
            #expect(fixture.standIn.isValid(token: renewed))
        }
    }

    @Test("credentials Personio rejects: 502, then needs_reset (shown, counted, audited, 409) until reset")
    func rejectedCredentials() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let first = try await fixture.ctl(["token", "acme"])
            #expect(first.status == 0, "\(first)")

            // Reset on Personio's side; the edit drops the vault's cached token, so the next request asks upstream.
            fixture.standIn.changeSecret(clientID: Self.clientID, newSecret: Self.newSecret)
            let edited = try await fixture.ctl(["edit", "acme", "--app-id", "ACME_SYNC"])
            #expect(edited.status == 0, "\(edited)")

            let rejected = try await fixture.app(Routes.token("acme"))
            #expect(rejected.status == 502, "\(rejected.raw)")
            #expect(rejected.mediaType == "application/problem+json")
            #expect(rejected.problem?.code == .upstreamRejected)
            #expect(!rejected.raw.contains(Self.secret) && !rejected.raw.contains(Self.newSecret))

            let shown = try await fixture.ctlJSON(ConnectionView.self, ["show", "acme"])
            #expect(shown.state == .needsReset)
            #expect(shown.lastError?.isEmpty == false, "no last_error: \(shown)")
            #expect(shown.lastError.map { !$0.contains(Self.secret) } ?? true)
            let status = try await fixture.ctlJSON(StatusView.self, ["status"])
            #expect(status.needsReset == ["acme"])
            let audit = try await fixture.ctlJSON(AuditList.self, ["audit", "acme", "--limit", "1000"])
            #expect(
                audit.entries.contains { $0.action == "connection.needs_reset" && $0.connection == "acme" },
                "\(audit.entries.map(\.action))"
            )

            let calls = fixture.standIn.calls(.v2Token)
            let refused = try await fixture.app(Routes.token("acme"))
            #expect(refused.status == 409, "\(refused.raw)")
            #expect(refused.problem?.code == .connectionNeedsReset)
            let cli = try await fixture.ctl(["token", "acme"])
            #expect(cli.status == 1, "\(cli)")
            #expect(cli.stderr.contains("connection_needs_reset"), "\(cli)")
            #expect(fixture.standIn.calls(.v2Token) == calls, "a connection in needs_reset must not call Personio")

            let reset = try await fixture.ctl(["reset", "acme", "--secret-stdin"], stdin: "\(Self.newSecret)\n")
            #expect(reset.status == 0, "\(reset)")
            let again = try await fixture.ctl(["token", "acme"])
            #expect(again.status == 0, "\(again)")
            #expect(fixture.standIn.isValid(token: again.stdout.trimmingCharacters(in: .newlines)))
            let after = try await fixture.ctlJSON(ConnectionView.self, ["show", "acme"])
            #expect(after.state == .active)
        }
    }

    // MARK: - Personio failing

    @Test("Personio failing: 503 upstream_unavailable with Retry-After, and no hammering")
    func upstreamUnavailable() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            fixture.standIn.setFailure(.status(500))

            let began = ContinuousClock.now
            let first = try await fixture.app(Routes.token("acme"))
            #expect(first.status == 503, "\(first.raw)")
            #expect(first.mediaType == "application/problem+json")
            #expect(first.problem?.code == .upstreamUnavailable)
            let retryAfter = try #require(
                first.header("Retry-After").flatMap { Int($0) },
                "no Retry-After: \(first.head)"
            )
            #expect(retryAfter >= 1 && retryAfter <= 120)

            // 100 requests, however long they take (about 2 s on an idle machine, many more seconds in a loaded whole
            // run, where a loop bounded by 2 s made too few requests to prove anything): Personio sees no more calls
            // than the back-off lets through in the time they took (on an idle machine: one more).
            var statuses: [Int: Int] = [:]
            for _ in 0..<100 {
                let response = try await fixture.app(Routes.token("acme"))
                statuses[response.status, default: 0] += 1
                if response.status == 503 { #expect(response.header("Retry-After") != nil) }
                try await Task.sleep(for: .milliseconds(15))
            }
            #expect(statuses.keys.allSatisfy { $0 == 503 }, "\(statuses)")
            let allowed = Self.callsAllowedByBackoff(since: began)
            #expect(
                fixture.standIn.calls(.v2Token) <= allowed,
                "\(fixture.standIn.calls(.v2Token)) upstream calls in \(ContinuousClock.now - began), \(allowed) allowed"
            )
            let cli = try await fixture.ctl(["token", "acme"])
            #expect(cli.status == 1, "\(cli)")
            #expect(cli.stderr.contains("upstream_unavailable"), "\(cli)")

            // Personio is back: the vault recovers once its back-off has passed (the wait before the next call is
            // at most twice the time spent failing, plus the first second).
            fixture.standIn.setFailure(.none)
            let recovered = await Self.eventually(within: (ContinuousClock.now - began) * 2 + .seconds(10)) {
                (try? RawHTTP.exchange(socket: fixture.daemon.appSocket, Routes.token("acme")).status) == 200
            }
            #expect(recovered, "no token after Personio recovered")
            // The one call that succeeded, beyond what the back-off let through while failing.
            #expect(fixture.standIn.calls(.v2Token) <= Self.callsAllowedByBackoff(since: began) + 1)
        }
    }

    @Test("a token exchange that hangs ends in 503 after --token-timeout")
    func tokenTimeout() async throws {
        try await BrokerFixture.run(daemonArguments: ["--dev", "--log-level", "debug", "--token-timeout", "2"]) {
            fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            fixture.standIn.setFailure(.hang)
            let start = ContinuousClock.now
            let response = try await fixture.app(Routes.token("acme"), timeout: .seconds(30))
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 503, "after \(elapsed): \(response.raw)")
            #expect(response.problem?.code == .upstreamUnavailable, "\(response.content)")
            // 2 s, not the default 10 s.
            #expect(elapsed >= .milliseconds(1900) && elapsed < .seconds(8), "answered after \(elapsed)")
        }
    }

    // MARK: - Verify

    @Test("connvaultctl verify reports expiry and scope, or the rejection without a secret")
    func verify() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)

            let text = try await fixture.ctl(["verify", "acme"])
            #expect(text.status == 0, "\(text)")
            #expect(text.stdout.contains("scope"), "\(text)")
            #expect(text.stdout.contains("valid for") || text.stdout.contains("expires"), "\(text)")
            let json = try await fixture.ctlJSON(VerifyResult.self, ["verify", "acme"])
            #expect(json.connection == "acme")
            #expect(json.ok)
            #expect(json.error == nil)
            #expect(json.state == .active)
            #expect((json.expiresIn ?? 0) > 0 && (json.expiresIn ?? 0) <= 86_400)
            #expect(json.expiresAt != nil)
            #expect(json.scope == PersonioStandIn.defaultScopes.joined(separator: " "))
            #expect(fixture.standIn.calls(.v2Token) >= 1)

            fixture.standIn.changeSecret(clientID: Self.clientID, newSecret: Self.newSecret)
            let refused = try await fixture.ctl(["verify", "acme"])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.stderr.contains("upstream_rejected"), "\(refused)")
            let refusedJSON = try await fixture.ctl(["verify", "acme", "--json"])
            #expect(refusedJSON.status == 1, "\(refusedJSON)")
            let result = try VaultJSON.decoder().decode(VerifyResult.self, from: Data(refusedJSON.stdout.utf8))
            #expect(!result.ok)
            #expect(result.error?.code == .upstreamRejected)
            #expect(result.state == .needsReset)
            for output in [text, refused, refusedJSON] {
                for secret in [Self.secret, Self.newSecret] {
                    #expect(!(output.stdout + output.stderr).contains(secret), "\(secret) in \(output)")
                }
            }
            let audit = try await fixture.ctlJSON(AuditList.self, ["audit", "acme", "--limit", "1000"])
            #expect(
                audit.entries.filter { $0.action == "connection.verify" }.count == 4,
                "\(audit.entries.map(\.action))"
            )
        }
    }

    // MARK: - Helpers

    /// The most token calls a connection whose every call has failed since `began` can have made by now: the first
    /// at once, then one after each back-off wait (1 s, doubling up to 60 s: the broker's RefreshPolicy), each wait
    /// counted from the end of the call before it, so from `began` at the earliest.
    static func callsAllowedByBackoff(since began: ContinuousClock.Instant) -> Int {
        let elapsed = ContinuousClock.now - began
        var calls = 1
        var wait = Duration.seconds(1)
        var next = wait
        while next <= elapsed {
            calls += 1
            wait = min(wait * 2, .seconds(60))
            next += wait
        }
        return calls
    }

    /// Polls `condition` every 50 ms until it holds or `within` passes.
    static func eventually(
        within: Duration = .seconds(3),
        _ condition: @escaping @Sendable () -> Bool
    ) async -> Bool {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if (try? await Blocking.run(condition)) == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (try? await Blocking.run(condition)) == true
    }

    /// Seconds since 1970 of an RFC 3339 timestamp (with or without fractional seconds).
    static func epochSeconds(_ text: String) -> Double? {
        if let date = try? Date(text, strategy: .iso8601) { return date.timeIntervalSince1970 }
        let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        return (try? Date(text, strategy: fractional))?.timeIntervalSince1970
    }
}
