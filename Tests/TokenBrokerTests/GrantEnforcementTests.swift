import Foundation
import Logging
import NIOCore
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

@testable import TokenBroker

/// Grant rules enforced by the broker (issue 12, items 3–5): `token: false`, proxy allow-lists, budgets, the
/// recruiting limit, and the access trail, against the Personio stand-in over real HTTP with a real vault.
@Suite("Grant enforcement", .timeLimit(.minutes(2)))
struct GrantEnforcementTests {
    static let python = Caller(
        uid: 1000,
        gid: 1000,
        pid: 70,
        comm: "python3",
        groups: [1000],
        unit: "hr-export.service",
        exe: "/usr/bin/python3.12"
    )
    static let other = Caller(uid: 2000, gid: 2000, pid: 71, comm: "report", groups: [2000], exe: "/usr/bin/report")
    static let stranger = Caller(uid: 3000, gid: 3000, pid: 72, comm: "stranger")
    static let recruitingKey = "fake-recruiting-key-rules-0123456789"

    @dynamicMemberLookup
    struct Setup {
        let harness: BrokerHarness

        subscript<Value>(dynamicMember member: KeyPath<BrokerHarness, Value>) -> Value { self.harness[keyPath: member] }

        /// `acme` (v2) and `hiring` (recruiting), both granted by `grants`; the broker's `run()` going.
        static func with(_ grants: Grants, _ body: (Setup) async throws -> Void) async throws {
            try await BrokerHarness.with(running: true) { harness in
                let standIn = harness.standIn
                standIn.register(clientID: "fake-client-rules", clientSecret: "fake-secret-rules")
                standIn.registerRecruitingKey(GrantEnforcementTests.recruitingKey, companyID: "777")
                _ = try await harness.vault.create(
                    CreateConnectionRequest(
                        id: "acme",
                        provider: .personioV2,
                        settings: ConnectionSettings(apiBaseURL: standIn.baseURL),
                        secrets: secrets([.clientID: "fake-client-rules", .clientSecret: "fake-secret-rules"]),
                        grants: grants
                    ),
                    by: admin
                )
                _ = try await harness.vault.create(
                    CreateConnectionRequest(
                        id: "hiring",
                        provider: .personioRecruiting,
                        settings: ConnectionSettings(apiBaseURL: standIn.baseURL, companyID: "777"),
                        secrets: secrets([.recruitingToken: GrantEnforcementTests.recruitingKey]),
                        grants: grants
                    ),
                    by: admin
                )
            } _: { harness in
                try await body(Setup(harness: harness))
            }
        }

        func get(_ id: String, _ path: String, as caller: Caller, method: String = "GET") async throws -> Int {
            try await self.broker.proxy(id, request: ProxyRequest(method: method, path: path), for: caller).status
        }

        /// Resource requests the stand-in received (known paths or not).
        var upstream: Int {
            self.standIn.requests().filter { $0.endpoint == .resource || $0.endpoint == .unknown }.count
        }

        func audit(_ action: String) async throws -> [AuditEntry] {
            try await self.vault.audit(connection: nil, since: nil, limit: 1000).filter { $0.action == action }
        }

        /// Waits (bounded) until the trail holds `count` rows of `action`, and returns them.
        func rows(_ action: String, count: Int) async throws -> [AuditEntry] {
            let deadline = ContinuousClock.now + .seconds(5)
            while true {
                let rows = try await self.audit(action)
                if rows.count >= count || ContinuousClock.now > deadline { return rows }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    // MARK: - token: false

    @Test("a proxy-only rule never gets the token (409 token_not_exportable, cached path too) but may proxy")
    func proxyOnly() async throws {
        try await Setup.with(Grants(rules: [GrantRule(unit: "hr-export.service", token: false)])) { setup in
            #expect(try await setup.get("acme", "/v2/persons", as: Self.python) == 200)
            // The token is cached now: the fast path must refuse it as well.
            guard case .refused(let error) = setup.broker.cachedResponse("acme", for: Self.python, minTTL: 0) else {
                Issue.record("the cached path handed a proxy-only caller something")
                return
            }
            #expect(error.code == .tokenNotExportable)
            #expect(
                await BrokerHarness.code { _ = try await setup.broker.token("acme", for: Self.python, minTTL: 0) }
                    == .tokenNotExportable
            )
            let views = try await setup.broker.connections(for: Self.python)
            #expect(views.first { $0.id == "acme" }?.tokenExportable == false)
            #expect(views.first { $0.id == "acme" }?.rule == AppRuleView(token: false))
            let refused = try await setup.rows("proxy.refused", count: 1)
            #expect(refused.count == 1, "two refusals within 10 s are one row")
            #expect(refused.first?.outcome == "token_not_exportable")
            #expect(refused.first?.detail.contains("exe /usr/bin/python3.12") == true)
        }
    }

    // MARK: - Allow-lists

    @Test("a proxied request outside the rule's patterns is 403 not_allowed before anything goes upstream")
    func allowList() async throws {
        let rule = GrantRule(uid: 1000, proxy: ["GET /v2/persons", "GET /v2/persons/*"])
        try await Setup.with(Grants(uids: [2000], rules: [rule])) { setup in
            // Cold: refused before a token is even fetched.
            #expect(
                await BrokerHarness.code { _ = try await setup.get("acme", "/v2/compensations", as: Self.python) }
                    == .notAllowed
            )
            #expect(setup.standIn.calls(.v2Token) == 0)
            #expect(setup.upstream == 0)

            let plain = try await setup.get("acme", "/v2/persons", as: Self.python)
            let encoded = try await setup.get("acme", "/v2/%70ersons/1", as: Self.python)
            // The stand-in knows `/v2/persons` only: 404 for the other is its answer, so the request was sent.
            #expect(plain == 200 && encoded == 404)
            let sent = setup.upstream
            for (method, path) in [
                ("GET", "/v2/compensations"), ("GET", "/V2/Persons"), ("GET", "/v2/persons;x=1"),
                ("POST", "/v2/persons"), ("GET", "/v2/persons%3Bx"),
            ] {
                #expect(
                    await BrokerHarness.code { _ = try await setup.get("acme", path, as: Self.python, method: method) }
                        == .notAllowed,
                    "\(method) \(path)"
                )
            }
            #expect(setup.upstream == sent, "nothing refused reached Personio")
            // Each caller is shown its own rule, nothing of the others'.
            let mine = try await setup.broker.connections(for: Self.python).first { $0.id == "acme" }
            #expect(mine?.rule == AppRuleView(proxy: ["GET /v2/persons", "GET /v2/persons/*"]))
            let theirs = try await setup.broker.connections(for: Self.other).first { $0.id == "acme" }
            #expect(theirs?.rule == AppRuleView())
            #expect(try await setup.broker.connections(for: Self.stranger).isEmpty)
            // Another caller's rule has no list.
            let unlisted = try await setup.get("acme", "/v2/compensations", as: Self.other)
            #expect(unlisted == 404, "forwarded, and answered by the stand-in")
        }
    }

    // MARK: - Budgets

    @Test("rate_per_minute: proxied requests and token misses spend it, cached answers do not; others are served")
    func budget() async throws {
        let rules = [GrantRule(uid: 1000, ratePerMinute: 3)]
        try await Setup.with(Grants(uids: [2000], rules: rules)) { setup in
            // A token miss spends one, then cached answers are free.
            _ = try await setup.broker.token("acme", for: Self.python, minTTL: 0)
            for _ in 0..<20 {
                guard case .token = setup.broker.cachedResponse("acme", for: Self.python, minTTL: 0) else {
                    Issue.record("a cached answer was refused")
                    return
                }
            }
            #expect(try await setup.get("acme", "/v2/persons", as: Self.python) == 200)
            #expect(try await setup.get("acme", "/v2/persons", as: Self.python) == 200)
            do {
                _ = try await setup.get("acme", "/v2/persons", as: Self.python)
                Issue.record("the budget let a fourth request through")
            } catch let error as VaultError {
                #expect(error.code == .rateLimited)
                #expect((error.retryAfter ?? 0) >= 1)
            }
            #expect(try await setup.get("acme", "/v2/persons", as: Self.other) == 200, "the other caller is served")
        }
    }

    @Test(
        "a recruiting connection sends at most 20 requests per 60 s; a looping caller's budget leaves room for others"
    )
    func recruitingLimit() async throws {
        try await Setup.with(Grants(uids: [2000], rules: [GrantRule(uid: 1000, ratePerMinute: 5)])) { setup in
            var served = 0
            var limited = 0
            for _ in 0..<30 {
                let outcome = await BrokerHarness.code {
                    _ = try await setup.get("hiring", "/v1/recruiting/applications", as: Self.python)
                }
                if outcome == nil { served += 1 } else if outcome == .rateLimited { limited += 1 }
            }
            #expect(served == 5 && limited == 25)
            for _ in 0..<15 {
                let status = try await setup.get("hiring", "/v1/recruiting/applications", as: Self.other)
                #expect(status == 200)
            }
            #expect(
                await BrokerHarness.code {
                    _ = try await setup.get("hiring", "/v1/recruiting/applications", as: Self.other)
                }
                    == .rateLimited
            )
            #expect(setup.standIn.calls(.resource) == 20, "Personio saw exactly its limit")
        }
    }

    // MARK: - Access trail

    @Test("token.issued once per identity and token; refusals coalesced into one row plus a count")
    func accessTrail() async throws {
        let rules = [GrantRule(uid: 1000, proxy: ["GET /v2/persons"])]
        try await Setup.with(Grants(uids: [2000], rules: rules)) { setup in
            _ = try await setup.broker.token("acme", for: Self.python, minTTL: 0)
            for _ in 0..<10 { _ = setup.broker.cachedResponse("acme", for: Self.python, minTTL: 0) }
            var otherUnit = Self.python
            otherUnit.unit = "other.service"
            _ = setup.broker.cachedResponse("acme", for: otherUnit, minTTL: 0)
            _ = setup.broker.cachedResponse("acme", for: Self.other, minTTL: 0)
            let issued = try await setup.rows("token.issued", count: 3)
            #expect(issued.count == 3)
            #expect(Set(issued.map(\.actor.uid)) == [1000, 2000])
            #expect(issued.contains { $0.detail.contains("unit other.service") })
            #expect(issued.allSatisfy { $0.connection == "acme" })

            for _ in 0..<50 {
                #expect(
                    await BrokerHarness.code { _ = try await setup.get("acme", "/v2/secret-stuff", as: Self.python) }
                        == .notAllowed
                )
            }
            let first = try await setup.rows("proxy.refused", count: 1)
            #expect(first.count == 1)
            #expect(first.first?.outcome == "not_allowed")
            #expect(first.first?.detail.contains("GET /v2/secret-stuff") == true)
            setup.broker.trail.flush(at: setup.broker.now + .seconds(11))
            let all = try await setup.rows("proxy.refused", count: 2)
            #expect(all.count == 2)
            #expect(all.last?.detail.hasPrefix("49 more request(s)") == true)
            #expect(try await setup.vault.verifyAudit().intact)
        }
    }
}
