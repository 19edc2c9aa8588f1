import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Grant rules enforced by the built daemon (issue 12, items 3–5), as a local program sees them on the app socket:
/// proxy allow-lists matched on the normalized path, proxy-only rules, budgets that keep a looping caller from
/// spending a recruiting connection's Personio limit for the others, and the access trail an admin reads with
/// `connvaultctl audit`.
@Suite(
    "Grant enforcement end to end",
    .offCooperativePool,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the other caller")
)
struct GrantEnforcementEndToEndTests {
    static let otherUID: UInt32 = 65534

    static func proxy(_ id: String, _ path: String) -> String { "/v1/connections/\(id)/proxy\(path)" }

    /// Replaces `id`'s grants with `json` on the admin socket.
    static func setGrants(_ fixture: BrokerFixture, _ id: String, _ json: String) async throws {
        let response = try await fixture.admin("PUT", "/v1/connections/\(id)/grants", body: json)
        guard response.status == 200 else { throw TestSupportError("grants for \(id): \(response.raw)") }
    }

    /// Resource requests the stand-in received (known paths or not).
    static func upstream(_ fixture: BrokerFixture) -> Int {
        fixture.standIn.requests().filter { $0.endpoint == .resource || $0.endpoint == .unknown }.count
    }

    /// The trail's rows of `action` for `id`, waiting (bounded) for at least `count`.
    static func rows(
        _ fixture: BrokerFixture,
        _ id: String,
        _ action: String,
        count: Int
    ) async throws -> [AuditEntry] {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let rows = try await fixture.ctlJSON(AuditList.self, ["audit", id, "--limit", "1000"]).entries
                .filter { $0.action == action }
            if rows.count >= count || ContinuousClock.now > deadline { return rows }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    // MARK: - Allow-lists and proxy-only rules

    /// Each spelling a caller might try against `GET /v2/persons` and `GET /v2/persons/*`, and the answer: 0 for
    /// "forwarded" (the stand-in answers what it knows, 404 for the rest).
    static let spellings: [(method: String, path: String, status: Int)] = [
        ("GET", "/v2/persons", 200),
        ("GET", "/v2/persons?limit=1", 200),
        ("GET", "/v2/%70ersons", 0),
        ("GET", "/v2/persons/%31", 0),
        ("GET", "/v2/persons/1;x", 0),
        ("GET", "/v2/compensations", 403),
        ("GET", "/V2/Persons", 403),
        ("GET", "/v2/PERSONS", 403),
        ("GET", "/v2/persons;x=1", 403),
        ("GET", "/v2/persons%3Bx=1", 403),
        ("POST", "/v2/persons", 403),
        ("DELETE", "/v2/persons/1", 403),
        ("GET", "/v2/persons/", 400),
        ("GET", "/v2/persons%2F1", 400),
        ("GET", "/v2/persons/%2e%2e/compensations", 400),
        ("GET", "/v2/%2570ersons", 400),
    ]

    @Test("a proxy-only rule with an allow-list: 409 for the token, 403 not_allowed outside the list, nothing upstream")
    func allowListAndProxyOnly() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "acme",
                clientID: "fake-client-rules",
                secret: "fake-secret-rules-0001",
                allowUID: nil
            )
            try await Self.setGrants(
                fixture,
                "acme",
                #"{"rules":[{"uid":0,"proxy":["GET /v2/persons","GET /v2/persons/*"],"token":false},"#
                    + #"{"uid":65534,"proxy":["GET /v2/someone-elses-pattern"],"rate_per_minute":7}]}"#
            )
            let cold = try await fixture.app(Routes.token("acme"))
            #expect(cold.status == 409 && cold.problem?.code == .tokenNotExportable, "\(cold.raw)")

            var sent = 0
            for spelling in Self.spellings {
                let response = try await fixture.app(Self.proxy("acme", spelling.path), method: spelling.method)
                if spelling.status == 0 {
                    #expect(response.status == 200 || response.status == 404, "\(spelling.path): \(response.raw)")
                } else {
                    #expect(response.status == spelling.status, "\(spelling.method) \(spelling.path): \(response.raw)")
                }
                if spelling.status == 403 { #expect(response.problem?.code == .notAllowed, "\(response.raw)") }
                if spelling.status == 200 || spelling.status == 0 { sent += 1 }
                #expect(Self.upstream(fixture) == sent, "\(spelling.method) \(spelling.path): wrong upstream count")
            }
            // The token is cached now: the cached path refuses it too.
            let warm = try await fixture.app(Routes.token("acme"))
            #expect(warm.status == 409 && warm.problem?.code == .tokenNotExportable, "\(warm.raw)")
            let cli = try await fixture.ctl(["token", "acme"])
            #expect(cli.status == 1 && cli.stderr.contains("token_not_exportable"), "\(cli)")

            // What the caller is shown: its rule, nothing else.
            let list = try await fixture.app("/v1/connections")
            let connections = try VaultJSON.decoder().decode(AppConnectionList.self, from: Data(list.content.utf8))
            let acme = try #require(connections.connections.first { $0.id == "acme" })
            #expect(!acme.tokenExportable)
            #expect(acme.rule == AppRuleView(proxy: ["GET /v2/persons", "GET /v2/persons/*"], token: false))
            #expect(!list.content.contains("someone-elses-pattern") && !list.content.contains("65534"), "\(list.raw)")

            // The trail: one row per reason for this caller (coalesced), with its identity.
            let refused = try await Self.rows(fixture, "acme", "proxy.refused", count: 2)
            #expect(Set(refused.map(\.outcome)) == ["not_allowed", "token_not_exportable"], "\(refused)")
            // 9 refusals; within 10 s they are one row per reason (and a row with the count once the window passed).
            #expect(refused.count <= 4, "a refused caller's repeats are counted, not written: \(refused)")
            #expect(refused.allSatisfy { $0.actor.uid == 0 && $0.detail.contains("uid 0") })
            #expect(try await fixture.ctlJSON(AuditVerification.self, ["audit", "--verify"]).intact)
        }
    }

    // MARK: - Budgets

    @Test("a looping caller spends its own budget, not the recruiting connection's Personio limit: the other is served")
    func loopingCaller() async throws {
        try await BrokerFixture.run { fixture in
            fixture.daemon.openToOtherUIDs()
            try await fixture.addRecruiting(
                "hiring",
                key: "fake-recruiting-key-rules-0001",
                companyID: "42",
                allowUID: nil
            )
            try await Self.setGrants(
                fixture,
                "hiring",
                #"{"rules":[{"uid":0,"rate_per_minute":5},{"uid":\#(Self.otherUID)}]}"#
            )
            var served = 0
            var limited: [RawHTTP.Response] = []
            for _ in 0..<20 {
                let response = try await fixture.app(Self.proxy("hiring", "/v1/recruiting/applications"))
                if response.status == 200 { served += 1 } else { limited.append(response) }
            }
            // 5 at once, and one more per 12 s: a slow machine may see the 6th.
            #expect((5...6).contains(served), "the budget of 5 per minute let \(served) through")
            #expect(
                limited.allSatisfy { $0.status == 429 && $0.problem?.code == .rateLimited },
                "\(limited.first?.raw ?? "")"
            )
            #expect(limited.allSatisfy { Int($0.header("Retry-After") ?? "") ?? 0 >= 1 }, "\(limited.first?.raw ?? "")")

            let other = try await Scripts.statuses(
                socket: fixture.daemon.appSocket,
                uid: Self.otherUID,
                Array(repeating: Self.proxy("hiring", "/v1/recruiting/applications"), count: 10)
            )
            #expect(other == Array(repeating: 200, count: 10), "the other caller got \(other) (0: no answer)")
            #expect(fixture.standIn.calls(.resource) == served + 10)
            let refused = try await Self.rows(fixture, "hiring", "proxy.refused", count: 1)
            // 14 or 15 refusals: one row, and one with the count once 10 s have passed.
            #expect(!refused.isEmpty && refused.count <= 2, "\(refused)")
            #expect(refused.allSatisfy { $0.outcome == "rate_limited" }, "\(refused)")
        }
    }

    // MARK: - token.issued

    @Test("token.issued once per caller identity and token, cached answers not written")
    func tokenIssued() async throws {
        try await BrokerFixture.run { fixture in
            fixture.daemon.openToOtherUIDs()
            try await fixture.addV2(
                "acme",
                clientID: "fake-client-issued",
                secret: "fake-secret-issued-01",
                allowUID: nil
            )
            try await Self.setGrants(fixture, "acme", #"{"uids":[0,\#(Self.otherUID)]}"#)
            for _ in 0..<20 {
                let response = try await fixture.app(Routes.token("acme"))
                #expect(response.status == 200, "\(response.raw)")
            }
            #expect(try await Self.rows(fixture, "acme", "token.issued", count: 1).count == 1)
            let other = try await Scripts.statuses(
                socket: fixture.daemon.appSocket,
                uid: Self.otherUID,
                Array(repeating: Routes.token("acme"), count: 3)
            )
            #expect(other == [200, 200, 200])
            let issued = try await Self.rows(fixture, "acme", "token.issued", count: 2)
            #expect(issued.count == 2, "\(issued)")
            #expect(issued.map(\.actor.uid).sorted() == [0, Self.otherUID])
            #expect(issued.contains { $0.detail.contains("exe /usr/bin/python3") }, "\(issued)")
            let metrics = try await fixture.admin("GET", "/metrics")
            #expect(
                metrics.content.contains(#"connvault_token_cache_hits_by_rule_total{connection="acme",rule="uids"}"#)
            )
        }
    }
}
