import Foundation
import Logging
import PersonioClient
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultTestSupport

@testable import TokenBroker

/// Scopes per rule (issue 12, item 2; DESIGN §10): the token handed to callers of a rule with `scope` is requested
/// with that scope, cached per revision and scope, with one exchange in flight per (connection, scope), against the
/// Personio stand-in over real HTTP (which gives a token exactly the scopes asked for and refuses it elsewhere).
@Suite("Scoped tokens", .timeLimit(.minutes(2)))
struct ScopedTokenTests {
    static let persons = "personio:persons:read"
    static let webhooks = "personio:webhooks:read"
    /// Rule 0: persons only. Rule 1: webhooks only. Rule 2: both, spelled the other way round (the connection's
    /// own set). uid 3000: `uids`, the connection's own scope.
    static let reader = Caller(uid: 1000, gid: 1000, pid: 80, comm: "reader")
    static let hooks = Caller(uid: 2000, gid: 2000, pid: 81, comm: "hooks")
    static let wide = Caller(uid: 3000, gid: 3000, pid: 82, comm: "wide")
    static let reversed = Caller(uid: 4000, gid: 4000, pid: 83, comm: "reversed")
    static let clientID = "fake-client-scopes"
    static let secret = "fake-secret-scopes"

    static let grants = Grants(
        uids: [3000],
        rules: [
            GrantRule(uid: 1000, scope: Self.persons),
            GrantRule(uid: 2000, scope: Self.webhooks),
            GrantRule(uid: 4000, scope: "\(Self.webhooks) \(Self.persons)"),
        ]
    )

    @dynamicMemberLookup
    struct Setup {
        let harness: BrokerHarness

        subscript<Value>(dynamicMember member: KeyPath<BrokerHarness, Value>) -> Value { self.harness[keyPath: member] }

        /// Connection `acme` (v2, scope setting persons and webhooks read) granted by ``ScopedTokenTests/grants``;
        /// the stand-in's client has `clientScopes`.
        static func with(
            clientScopes: [String] = PersonioStandIn.defaultScopes,
            policy: RefreshPolicy = RefreshPolicy(),
            running: Bool = true,
            _ body: (Setup) async throws -> Void
        ) async throws {
            let everyProvider: @Sendable (Provider) -> RefreshPolicy = { _ in policy }
            try await BrokerHarness.with(policy: everyProvider, running: running) { harness in
                harness.standIn.register(
                    clientID: ScopedTokenTests.clientID,
                    clientSecret: ScopedTokenTests.secret,
                    scopes: clientScopes
                )
                _ = try await harness.vault.create(
                    CreateConnectionRequest(
                        id: "acme",
                        provider: .personioV2,
                        settings: ConnectionSettings(
                            apiBaseURL: harness.standIn.baseURL,
                            scope: "\(ScopedTokenTests.persons) \(ScopedTokenTests.webhooks)"
                        ),
                        secrets: secrets([
                            .clientID: ScopedTokenTests.clientID, .clientSecret: ScopedTokenTests.secret,
                        ]),
                        grants: ScopedTokenTests.grants
                    ),
                    by: admin
                )
            } _: { harness in
                try await body(Setup(harness: harness))
            }
        }

        func token(_ caller: Caller) async throws -> TokenResponse {
            let prepared = try await self.broker.token("acme", for: caller, minTTL: 0)
            return try VaultJSON.decoder().decode(TokenResponse.self, from: Data(prepared.body(at: .now)))
        }

        /// What the stand-in answers `path` with for `token`, asked directly (outside the vault).
        func status(_ path: String, token: String) async throws -> Int {
            let response = try await self.broker.proxyClient.forward(
                ProxyRequest(method: "GET", path: path),
                baseURL: self.standIn.baseURL,
                authorization: .bearer(token),
                appID: nil,
                partnerID: nil,
                timeout: TimeScale.scaled(.seconds(30))
            )
            _ = try await response.body.collect(upTo: 1 << 20)
            return response.status
        }

        func proxied(_ path: String, as caller: Caller) async throws -> Int {
            try await self.broker.proxy("acme", request: ProxyRequest(method: "GET", path: path), for: caller).status
        }

        /// The `scope` fields of the token exchanges the stand-in received.
        var requestedScopes: [String?] {
            self.standIn.requests(.v2Token).map { $0.bodyFields["scope"] }
        }
    }

    // MARK: - Tokens per scope

    @Test("two rules with different scopes: one exchange per scope however many ask at once, each its own token")
    func oneExchangePerScope() async throws {
        try await Setup.with { setup in
            let answers = try await withThrowingTaskGroup(of: (UInt32, TokenResponse).self) { group in
                for _ in 0..<16 {
                    for caller in [Self.reader, Self.hooks] {
                        group.addTask { (caller.uid, try await setup.token(caller)) }
                    }
                }
                return try await group.reduce(into: [UInt32: [TokenResponse]]()) { $0[$1.0, default: []].append($1.1) }
            }
            #expect(setup.standIn.calls(.v2Token) == 2, "one exchange per (connection, scope)")
            #expect(Set(setup.requestedScopes) == [Self.persons, Self.webhooks])
            let reader = try #require(answers[1000])
            let hooks = try #require(answers[2000])
            #expect(Set(reader.map(\.accessToken)).count == 1 && Set(hooks.map(\.accessToken)).count == 1)
            #expect(reader[0].accessToken != hooks[0].accessToken)
            #expect(reader.allSatisfy { $0.scope == Self.persons })
            #expect(hooks.allSatisfy { $0.scope == Self.webhooks })

            // The connection's own scope is a third token; the same set spelled the other way round shares it.
            let wide = try await setup.token(Self.wide)
            let reversed = try await setup.token(Self.reversed)
            #expect(setup.standIn.calls(.v2Token) == 3)
            #expect(wide.accessToken == reversed.accessToken)
            #expect(wide.scope == "\(Self.persons) \(Self.webhooks)")
            #expect(setup.requestedScopes.last == "\(Self.persons) \(Self.webhooks)")

            // Cached per scope: the fast path answers each caller with its own rule's token, no exchange.
            for (caller, expected) in [(Self.reader, reader[0]), (Self.hooks, hooks[0]), (Self.reversed, wide)] {
                guard case .token(let prepared) = setup.broker.cachedResponse("acme", for: caller, minTTL: 0) else {
                    Issue.record("no cached answer for uid \(caller.uid)")
                    continue
                }
                #expect(try TokenBrokerTests.body(prepared).accessToken == expected.accessToken)
            }
            #expect(setup.standIn.calls(.v2Token) == 3)

            // The stand-in, like Personio, refuses a token outside its scope.
            #expect(try await setup.status("/v2/persons", token: hooks[0].accessToken) == 403)
            #expect(try await setup.status("/v2/webhooks", token: hooks[0].accessToken) == 200)
            #expect(try await setup.status("/v2/persons", token: reader[0].accessToken) == 200)
            #expect(try await setup.status("/v2/webhooks", token: reader[0].accessToken) == 403)

            // token.issued names each token's scope.
            let issued = try await Self.rows(setup.vault, "token.issued", count: 4)
            for (uid, scope) in [(1000, Self.persons), (2000, Self.webhooks)] {
                #expect(
                    issued.contains { $0.detail.contains("uid \(uid)") && $0.detail.hasSuffix("scope \(scope)") },
                    "\(issued.map(\.detail))"
                )
            }
        }
    }

    @Test("the proxy injects the token of the caller's rule: outside its scope Personio refuses it, 403")
    func proxyUsesTheRulesToken() async throws {
        try await Setup.with { (setup: Setup) async throws in
            #expect(try await setup.proxied("/v2/persons", as: Self.hooks) == 403)
            #expect(try await setup.proxied("/v2/webhooks", as: Self.hooks) == 200)
            #expect(try await setup.proxied("/v2/persons", as: Self.reader) == 200)
            #expect(try await setup.proxied("/v2/persons", as: Self.wide) == 200)
            #expect(try await setup.proxied("/v2/webhooks", as: Self.wide) == 200)
            // Cached now: the next ones take the slot's destination, with no further exchange.
            #expect(try await setup.proxied("/v2/persons", as: Self.hooks) == 403)
            #expect(try await setup.proxied("/v2/persons", as: Self.reader) == 200)
            #expect(setup.standIn.calls(.v2Token) == 3)
            let sent = setup.standIn.requests(.resource).map { $0.header("Authorization") ?? "" }
            #expect(Set(sent).count == 3, "three scopes, three tokens injected")
        }
    }

    @Test("refresh ahead of expiry is per scope: each slot's token refreshed by one call")
    func refreshPerScope() async throws {
        var policy = RefreshPolicy()
        policy.refreshFraction = 0
        policy.jitterFraction = 0
        try await Setup.with(policy: policy, running: false) { setup in
            _ = try await setup.token(Self.reader)
            _ = try await setup.token(Self.hooks)
            #expect(setup.standIn.calls(.v2Token) == 2)
            try await Task.sleep(for: .milliseconds(600))
            await setup.broker.refreshDue()
            #expect(setup.standIn.calls(.v2Token) == 4)
            #expect(
                Array(setup.requestedScopes.suffix(2)).sorted { ($0 ?? "") < ($1 ?? "") } == [
                    Self.persons, Self.webhooks,
                ]
            )
            // Personio handed back the same tokens: not due again until they expire.
            await setup.broker.refreshDue()
            #expect(setup.standIn.calls(.v2Token) == 4)
        }
    }

    @Test("a 401 to one scope's token drops that token only")
    func rejectedTokenDropsItsSlot() async throws {
        var policy = RefreshPolicy()
        policy.minimumRefetchInterval = .zero
        try await Setup.with(policy: policy) { setup in
            let reader = try await setup.token(Self.reader).accessToken
            let hooks = try await setup.token(Self.hooks).accessToken
            try await setup.auth.revoke(
                token: hooks,
                api: .v2,
                baseURL: setup.standIn.baseURL,
                appID: nil,
                partnerID: nil
            )
            #expect(try await setup.proxied("/v2/webhooks", as: Self.hooks) == 401)
            // The reader's token is still cached; the hooks caller's is gone and asked for again.
            guard case .token(let prepared) = setup.broker.cachedResponse("acme", for: Self.reader, minTTL: 0) else {
                Issue.record("the other scope's token was dropped too")
                return
            }
            #expect(try TokenBrokerTests.body(prepared).accessToken == reader)
            #expect(setup.broker.cachedResponse("acme", for: Self.hooks, minTTL: 0).map { _ in true } == nil)
            let fresh = try await setup.token(Self.hooks).accessToken
            #expect(fresh != hooks)
            #expect(setup.standIn.calls(.v2Token) == 3)
            #expect(try await setup.proxied("/v2/webhooks", as: Self.hooks) == 200)
        }
    }

    @Test("a grant change rebuilds the slots: a removed scope's token is no longer served, the others still are")
    func grantChangeRebuildsTheSlots() async throws {
        try await Setup.with { setup in
            let reader = try await setup.token(Self.reader).accessToken
            _ = try await setup.token(Self.hooks)
            // An exchange for the hooks caller is under way (Personio is slow) when its rule goes away.
            setup.standIn.setLatency(.milliseconds(300))
            _ = try await setup.vault.setGrants("acme", Grants(uids: [3000]), by: admin)
            let inFlight = Task { try await setup.token(Self.wide) }
            try await Task.sleep(for: .milliseconds(50))
            _ = try await setup.vault.setGrants(
                "acme",
                Grants(uids: [3000], rules: [GrantRule(uid: 1000, scope: Self.persons)]),
                by: admin
            )
            // It ends in an entry that is gone: served, or told to retry (as any call a change overtakes).
            do {
                _ = try await inFlight.value
            } catch let error as VaultError {
                #expect(error.code == .upstreamUnavailable && error.retryAfter == 1, "\(error)")
            }
            setup.standIn.setLatency(.zero)
            let code = await BrokerHarness.code { _ = try await setup.token(Self.hooks) }
            #expect(code == .forbidden)
            // The persons rule is served from a fresh slot: Personio hands back the same token.
            #expect(try await setup.token(Self.reader).accessToken == reader)
            #expect(try await setup.token(Self.reader).scope == Self.persons)
            #expect(try await setup.proxied("/v2/persons", as: Self.reader) == 200)
            #expect(try await setup.proxied("/v2/persons", as: Self.wide) == 200)
        }
    }

    // MARK: - Personio refuses a scope

    @Test("an unknown scope at Personio (400 invalid_scope) is upstream_rejected for that rule only, no needs_reset")
    func invalidScope() async throws {
        // The client at Personio lacks webhooks: the vault's grants cannot know (checked against the setting only).
        try await Setup.with(clientScopes: [Self.persons]) { setup in
            let error = await #expect(throws: VaultError.self) { _ = try await setup.token(Self.hooks) }
            #expect(error?.code == .upstreamRejected)
            #expect(error?.message.contains("invalid_scope") == true, "\(error.map { "\($0)" } ?? "")")
            #expect(try await setup.vault.snapshot("acme")?.state == .active)
            // The persons rule is still served, with a token of its own scope.
            let reader = try await setup.token(Self.reader)
            #expect(reader.scope == Self.persons)
            #expect(try await setup.proxied("/v2/persons", as: Self.reader) == 200)
        }
    }

    // MARK: - Revocation

    @Test(
        "a disconnect revokes every scope's token, also when they were handed out before a restart",
        arguments: [false, true]
    )
    func disconnectRevokesEveryScope(restart: Bool) async throws {
        try await Setup.with(running: false) { setup in
            let tokens = [
                try await setup.token(Self.reader).accessToken, try await setup.token(Self.hooks).accessToken,
                try await setup.token(Self.wide).accessToken,
            ]
            #expect(Set(tokens).count == 3 && tokens.allSatisfy { setup.standIn.isValid(token: $0) })
            let vault = restart ? try await setup.fixture.open() : setup.vault
            let broker =
                restart
                ? TokenBroker(vault: vault, auth: setup.auth, logger: setup.fixture.logs.logger()) : setup.broker
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await broker.run() }
                defer { group.cancelAll() }
                try await vault.disconnect("acme", by: admin)
                #expect(
                    await RevocationTests.eventually { tokens.allSatisfy { setup.standIn.isRevoked(token: $0) } },
                    "a scope's token is still valid at Personio"
                )
                #expect(await RevocationTests.eventually { try await vault.status().pendingRevocations.isEmpty })
            }
            #expect(setup.standIn.calls(.v2Revoke) >= 3)
        }
    }

    /// Waits (bounded) until the trail holds `count` rows of `action`, and returns them.
    static func rows(_ vault: Vault, _ action: String, count: Int) async throws -> [AuditEntry] {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            let rows = try await vault.audit(connection: nil, since: nil, limit: 1000).filter { $0.action == action }
            if rows.count >= count || ContinuousClock.now > deadline { return rows }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
