import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

#if canImport(Glibc)
import Glibc
#endif

/// Scopes per rule (issue 12, item 2) through the built daemon: a caller whose rule narrows the connection's scope
/// gets a token requested with that scope, which Personio (the stand-in, honouring scopes as Personio does) refuses
/// for a resource outside it, directly and through the proxy; a caller of the wide rule is served with a token of
/// its own; a disconnect after a restart revokes both.
@Suite(
    "Scoped tokens end to end",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the other caller")
)
struct ScopedTokenEndToEndTests {
    static let otherUID: UInt32 = 65534
    static let persons = "personio:persons:read"
    static let webhooks = "personio:webhooks:read"
    static let clientID = "fake-client-scoped-e2e"
    static let secret = "fake-secret-scoped-e2e-0001"

    /// `acme` with scope setting persons and webhooks read; the tests (root) narrowed to webhooks read by a rule,
    /// the other uid on the connection's own scope.
    static func setUp(_ fixture: BrokerFixture) async throws {
        // The other uid must reach the app socket.
        fixture.daemon.openToOtherUIDs()
        try await fixture.addV2(
            "acme",
            clientID: Self.clientID,
            secret: Self.secret,
            allowUID: nil,
            options: ["--scope", "\(Self.persons) \(Self.webhooks)"]
        )
        let grants = #"{"uids":[\#(Self.otherUID)],"rules":[{"uid":0,"scope":"\#(Self.webhooks)"}]}"#
        let response = try await fixture.admin("PUT", "/v1/connections/acme/grants", body: grants)
        guard response.status == 200 else { throw TestSupportError("grants: \(response.raw)") }
    }

    /// The status the stand-in answers `GET path` with for `token`, as an app calling Personio directly.
    static func status(_ fixture: BrokerFixture, _ path: String, token: String) async throws -> Int {
        var request = URLRequest(url: URL(string: fixture.baseURL + path)!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 10
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    /// The other uid's caller: one `GET` per target on the app socket, answering the statuses.
    static func other(_ fixture: BrokerFixture, _ targets: [String]) async throws -> [Int] {
        try await Scripts.statuses(socket: fixture.daemon.appSocket, uid: Self.otherUID, targets)
    }

    @Test(
        "a narrowed rule's token is refused outside its scope (403), directly and through the proxy; the wide one works"
    )
    func narrowedTokenRefusedOutsideItsScope() async throws {
        try await BrokerFixture.run { fixture in
            try await Self.setUp(fixture)

            let answer = try await fixture.app("/v1/connections/acme/token")
            #expect(answer.status == 200, "\(answer.raw)")
            let narrowed = try answer.decode(TokenResponse.self)
            #expect(narrowed.scope == Self.webhooks)
            #expect(fixture.standIn.lastRequest(.v2Token)?.bodyFields["scope"] == Self.webhooks)
            // Personio refuses it for persons, accepts it for webhooks.
            #expect(try await Self.status(fixture, "/v2/persons", token: narrowed.accessToken) == 403)
            #expect(try await Self.status(fixture, "/v2/webhooks", token: narrowed.accessToken) == 200)

            // Through the proxy: the same token is injected, and refused the same way.
            let proxiedPersons = try await fixture.app("/v1/connections/acme/proxy/v2/persons")
            #expect(proxiedPersons.status == 403, "\(proxiedPersons.raw)")
            #expect(proxiedPersons.content.contains("Insufficient access scope"))
            #expect(try await fixture.app("/v1/connections/acme/proxy/v2/webhooks").status == 200)
            #expect(fixture.standIn.calls(.v2Token) == 1, "the proxy used the cached token of the rule's scope")

            // The wide rule's caller gets a token of the connection's scope, which reads persons.
            let statuses = try await Self.other(
                fixture,
                [
                    "/v1/connections/acme/token", "/v1/connections/acme/proxy/v2/persons",
                    "/v1/connections/acme/proxy/v2/webhooks",
                ]
            )
            #expect(statuses == [200, 200, 200])
            #expect(fixture.standIn.calls(.v2Token) == 2, "one exchange per scope")
            let wide = try #require(fixture.standIn.issuedTokens.first { $0 != narrowed.accessToken })
            #expect(try await Self.status(fixture, "/v2/persons", token: wide) == 200)
            #expect(
                Set(fixture.standIn.requests(.v2Token).map { $0.bodyFields["scope"] })
                    == [Self.webhooks, "\(Self.persons) \(Self.webhooks)"]
            )
            let resources = fixture.standIn.requests(.resource).filter { $0.path == "/v2/persons" }
            #expect(resources.contains { $0.header("Authorization") == "Bearer \(wide)" })

            // The trail says which program got which scope.
            let deadline = ContinuousClock.now + .seconds(10)
            var issued: [AuditEntry] = []
            while issued.count < 2, ContinuousClock.now < deadline {
                issued = try await fixture.ctlJSON(AuditList.self, ["audit", "acme", "--limit", "1000"]).entries
                    .filter { $0.action == "token.issued" }
                if issued.count < 2 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(issued.contains { $0.detail.contains("uid 0") && $0.detail.hasSuffix("scope \(Self.webhooks)") })
            #expect(
                issued.contains {
                    $0.detail.contains("uid \(Self.otherUID)")
                        && $0.detail.hasSuffix("scope \(Self.persons) \(Self.webhooks)")
                },
                "\(issued.map(\.detail))"
            )
        }
    }

    @Test("a disconnect after a restart revokes the tokens of both scopes at Personio")
    func disconnectRevokesBothScopesAfterARestart() async throws {
        try await BrokerFixture.run { fixture in
            try await Self.setUp(fixture)
            let answer = try await fixture.app("/v1/connections/acme/token")
            let narrowed = try answer.decode(TokenResponse.self).accessToken
            #expect(try await Self.other(fixture, ["/v1/connections/acme/token"]) == [200])
            let tokens = fixture.standIn.issuedTokens
            #expect(Set(tokens).count == 2 && tokens.contains(narrowed))
            #expect(tokens.allSatisfy { fixture.standIn.isValid(token: $0) })

            try await Blocking.run { [daemon = fixture.daemon] in
                daemon.stop(signal: SIGTERM)
                try daemon.start()
            }
            let result = try await fixture.ctl(["disconnect", "acme", "--yes"])
            #expect(result.status == 0, "\(result)")
            let deadline = ContinuousClock.now + .seconds(15)
            while !tokens.allSatisfy({ fixture.standIn.isRevoked(token: $0) }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(tokens.allSatisfy { fixture.standIn.isRevoked(token: $0) }, "a scope's token still works")
            for token in tokens {
                #expect(try await Self.status(fixture, "/v2/webhooks", token: token) == 401)
            }
        }
    }
}
