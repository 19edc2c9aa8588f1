import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

/// Distinctive canary secrets (two client secrets and a recruiting key) put through the token broker and the proxy —
/// tokens, verify accepted and rejected, proxy answered and failing, a rejection by a careless upstream that echoes
/// the credentials, resets — appear in no CLI output, no app or admin response, no line of the daemon's trace log,
/// and no byte of the database, WAL or SHM files. The admin-only counterpart is `SecretLeakEndToEndTests`.
@Suite("Token broker canary end to end", .offCooperativePool, .timeLimit(.minutes(3)))
struct TokenEndToEndCanaryTests {
    static let clientSecret = "CANARY-broker-secret-6c1e94"
    static let resetSecret = "CANARY-broker-reset-0b7d23"
    static let recruitingKey = "CANARY-broker-recruit-e5a8f1"
    static let clientID = "fake-canary-client-id"

    @Test("canary secrets through tokens, verify and the proxy appear nowhere")
    func canary() async throws {
        try await BrokerFixture.run(daemonArguments: ["--dev", "--log-level", "trace"]) { fixture in
            let standIn = fixture.standIn
            var outputs: [(String, String)] = []
            func ctl(_ arguments: [String], stdin: String? = nil, expect status: Int32 = 0) async throws {
                let result = try await fixture.ctl(arguments, stdin: stdin)
                #expect(result.status == status, "\(arguments): \(result)")
                outputs.append(("connvaultctl \(arguments.joined(separator: " "))", result.stdout + result.stderr))
            }
            /// `status` nil: any answer (the proxy's failure statuses are checked in `ProxyEndToEndTests`).
            func app(_ target: String, expect status: Int?) async throws {
                let response = try await fixture.app(target)
                #expect(response.status == status ?? response.status, "\(target): \(response.raw)")
                #expect(response.status != 0, "\(target): no answer")
                outputs.append(("app \(target)", response.raw))
            }
            func admin(_ method: String, _ target: String) async throws {
                let response = try await fixture.admin(method, target)
                #expect(response.status / 100 == 2, "\(method) \(target): \(response.raw)")
                outputs.append(("admin \(method) \(target)", response.raw))
            }
            let token = Routes.token("canary")
            let persons = "/v1/connections/canary/proxy/v2/persons"
            let applications = "/v1/connections/jobs/proxy/v1/recruiting/applications"

            // add
            standIn.register(clientID: Self.clientID, clientSecret: Self.clientSecret, api: .v2)
            standIn.registerRecruitingKey(Self.recruitingKey, companyID: "4711")
            try await ctl(
                [
                    "add", "canary", "--provider", "personio-v2", "--client-id", Self.clientID,
                    "--api-base-url", fixture.baseURL, "--app-id", "LEAK_TEST", "--allow-uid", "0", "--secret-stdin",
                    "--json",
                ],
                stdin: "\(Self.clientSecret)\n"
            )
            try await ctl(
                [
                    "add", "jobs", "--provider", "personio-recruiting", "--company-id", "4711",
                    "--api-base-url", fixture.baseURL, "--allow-uid", "0", "--secret-stdin", "--json",
                ],
                stdin: "\(Self.recruitingKey)\n"
            )

            // tokens, listing, verify accepted
            try await ctl(["token", "canary"])
            try await ctl(["token", "canary", "--json"])
            try await app(token, expect: 200)
            try await app(Routes.connections, expect: 200)
            try await ctl(["verify", "canary"])
            try await ctl(["verify", "canary", "--json"])

            // proxy answered, then failing
            try await app(persons, expect: 200)
            try await app(applications, expect: 200)
            standIn.setFailure(.status(500), on: [.resource])
            try await app(persons, expect: nil)
            try await app(applications, expect: nil)
            standIn.setFailure(.closeConnection, on: [.resource])
            try await app(persons, expect: nil)
            try await app(applications, expect: nil)
            standIn.setFailure(.none)

            // recruiting keys have no token
            try await ctl(["token", "jobs"], expect: 1)
            try await app(Routes.token("jobs"), expect: 409)
            try await ctl(["verify", "jobs", "--json"], expect: 1)

            // a rejection that echoes the credentials, seen by verify: needs_reset, then a reset. Only on the token
            // endpoint: a revocation the broker sends in the background must not use up the injected failure.
            standIn.setFailure(.rejectEchoingCredentials, times: 1, on: [.v2Token])
            try await ctl(["verify", "canary"], expect: 1)
            try await app(token, expect: 409)
            standIn.changeSecret(clientID: Self.clientID, newSecret: Self.resetSecret)
            try await ctl(["reset", "canary", "--secret-stdin", "--json"], stdin: "\(Self.resetSecret)\n")
            try await ctl(["token", "canary", "--json"])

            // the same rejection seen by a token request (the edit drops the cached token), then a reset
            try await ctl(["edit", "canary", "--app-id", "LEAK_TEST_TWO", "--json"])
            standIn.setFailure(.rejectEchoingCredentials, times: 1, on: [.v2Token])
            try await app(token, expect: 502)
            try await ctl(["show", "canary", "--json"])
            try await ctl(["verify", "canary", "--json"])
            try await ctl(["reset", "canary", "--secret-stdin"], stdin: "\(Self.resetSecret)\n")
            try await app(token, expect: 200)
            try await app(persons, expect: 200)
            try await ctl(["verify", "canary"])

            // every admin view
            try await ctl(["show", "canary", "--json"])
            try await ctl(["show", "jobs"])
            try await ctl(["list", "--json"])
            try await ctl(["status", "--json"])
            try await ctl(["audit", "--json", "--limit", "1000"])
            try await ctl(["audit"])
            try await admin("GET", "/metrics")
            try await admin("GET", "/v1/connections")

            // The test did send the canaries upstream (else finding none proves nothing).
            let secretsSent = standIn.requests(.v2Token).compactMap { $0.bodyFields["client_secret"] }
            #expect(secretsSent.contains(Self.clientSecret) && secretsSent.contains(Self.resetSecret))
            #expect(
                standIn.requests(.resource).contains { $0.header("Authorization") == "Bearer \(Self.recruitingKey)" }
            )

            let stopped = try await Blocking.run { [daemon = fixture.daemon] in daemon.stop() }
            #expect(stopped == 0)

            var haystacks = outputs.map { ($0.0, Array($0.1.utf8)) }
            haystacks.append(("daemon log", Array(fixture.daemon.log().utf8)))
            #expect(fixture.daemon.log().utf8.count > 1000, "the trace log looks empty")
            for suffix in ["", "-wal", "-shm", "-journal"] {
                if let data = FileManager.default.contents(atPath: fixture.daemon.databasePath + suffix) {
                    haystacks.append(("vault.sqlite3\(suffix)", Array(data)))
                }
            }
            #expect(haystacks.count >= 30)
            // Access tokens are short-lived, but still bearer credentials: not for the log or the database either.
            for issued in standIn.issuedTokens {
                for (name, bytes) in haystacks where name == "daemon log" || name.hasPrefix("vault.sqlite3") {
                    #expect(
                        !SecretLeakEndToEndTests.contains(bytes, Array(issued.utf8)),
                        "an access token found in \(name)"
                    )
                }
            }
            for canary in [Self.clientSecret, Self.resetSecret, Self.recruitingKey] {
                let needle = Array(canary.utf8)
                for (name, bytes) in haystacks {
                    #expect(!SecretLeakEndToEndTests.contains(bytes, needle), "\(canary) found in \(name)")
                }
            }
        }
    }
}
