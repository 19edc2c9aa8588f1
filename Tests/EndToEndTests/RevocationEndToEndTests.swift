import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Revocation that holds (DESIGN §11), driven like an admin and an app would: the built `connvaultd --dev` and
/// `connvaultctl`, a Personio stand-in on 127.0.0.1, and the question every test ends with: does the token the app
/// got still work at Personio's resource endpoint?
// Serialized: each case starts a daemon two or three times; run side by side on a 2-core machine they would starve
// the timing-sensitive suites that run at the same time.
@Suite("Revocation end to end", .offCooperativePool, .serialized, .timeLimit(.minutes(3)))
struct RevocationEndToEndTests {
    static let clientID = "fake-client-id-acme"
    static let secret = "fake-secret-acme-0001"

    /// How the daemon that handed the token out goes away before the admin acts.
    enum Interruption: String, CaseIterable, Sendable {
        /// SIGTERM, and a fresh start (an upgrade, a reboot).
        case restart
        /// SIGKILL, and a fresh start (a crash).
        case kill
        /// `connvaultctl rotate-key`, then SIGTERM and a fresh start.
        case rotateKeyThenRestart = "rotate-key"
    }

    static let cases: [(String, Interruption)] = [
        ("disconnect", .restart), ("disable", .kill), ("reset", .rotateKeyThenRestart),
        ("disconnect", .kill), ("disable", .rotateKeyThenRestart), ("reset", .restart),
    ]

    // MARK: - Helpers

    /// The status of `GET /v2/persons` at the stand-in with `token`, as an app would call Personio.
    static func resourceStatus(_ fixture: BrokerFixture, token: String) async throws -> Int {
        var request = URLRequest(url: URL(string: fixture.baseURL + "/v2/persons")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 10
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    static func eventually(
        within: Duration = .seconds(15),
        _ condition: @Sendable () async throws -> Bool
    ) async -> Bool {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (try? await condition()) == true
    }

    /// The daemon's log lines about revocations (the last 40), for a failure to say what the revoker did.
    static func revocationLines(_ fixture: BrokerFixture) -> String {
        fixture.daemon.log().split(separator: "\n").filter { $0.contains("revo") }.suffix(40).joined(separator: "\n")
    }

    static func restart(_ fixture: BrokerFixture, signal: Int32 = SIGTERM) async throws {
        try await Blocking.run { [daemon = fixture.daemon] in
            daemon.stop(signal: signal)
            try daemon.start()
        }
    }

    static func token(_ fixture: BrokerFixture, _ id: String = "acme") async throws -> String {
        let result = try await fixture.ctl(["token", id])
        guard result.status == 0 else { throw TestSupportError("connvaultctl token failed:\n\(result)") }
        return result.stdout.trimmingCharacters(in: .newlines)
    }

    static func actions(_ fixture: BrokerFixture) async throws -> [AuditEntry] {
        try await fixture.ctlJSON(AuditList.self, ["audit", "acme"]).entries
    }

    // MARK: - Tests

    @Test(
        "a token handed out before a restart, a SIGKILL or a rotate-key is refused by Personio after the admin acts",
        arguments: Self.cases
    )
    func revokedAcrossInterruptions(_ operation: String, _ interruption: Interruption) async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let token = try await Self.token(fixture)
            #expect(try await Self.resourceStatus(fixture, token: token) == 200)

            switch interruption {
            case .restart:
                try await Self.restart(fixture)
            case .kill:
                try await Self.restart(fixture, signal: SIGKILL)
            case .rotateKeyThenRestart:
                let rotated = try await fixture.ctl(["rotate-key"])
                #expect(rotated.status == 0, "\(rotated)")
                try await Self.restart(fixture)
            }

            let result: CommandResult
            switch operation {
            case "disconnect": result = try await fixture.ctl(["disconnect", "acme", "--yes"])
            case "disable": result = try await fixture.ctl(["disable", "acme"])
            default: result = try await fixture.ctl(["reset", "acme", "--secret-stdin"], stdin: "\(Self.secret)\n")
            }
            #expect(result.status == 0, "\(result)")
            let refused = await Self.eventually { try await Self.resourceStatus(fixture, token: token) == 401 }
            #expect(
                refused,
                """
                the app's token still works at Personio after \(interruption.rawValue) and \(operation); \
                revoke calls at the stand-in: \(fixture.standIn.calls(.v2Revoke)); the daemon's revocation lines:
                \(Self.revocationLines(fixture))
                """
            )
            #expect(await Self.eventually { try await Self.actions(fixture).contains { $0.action == "token.revoked" } })
            let status = try await fixture.ctlJSON(StatusView.self, ["status"])
            #expect(status.pendingRevocations.isEmpty)
            #expect(!fixture.daemon.log().contains(token), "the access token is in the daemon's log")
        }
    }

    @Test("a revocation Personio refuses is listed by status and show, survives a restart, and completes later")
    func pendingAcrossRestart() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let token = try await Self.token(fixture)
            fixture.standIn.setFailure(.status(503), on: [.v2Revoke])

            let disabled = try await fixture.ctl(["disable", "acme"])
            #expect(disabled.status == 0, "\(disabled)")
            #expect(
                await Self.eventually {
                    let status = try await fixture.ctlJSON(StatusView.self, ["status"])
                    return status.pendingRevocations.first.map { $0.connection == "acme" && $0.attempts >= 1 } ?? false
                },
                "status does not list the failing revocation"
            )
            let human = try await fixture.ctl(["status"])
            #expect(human.status == 0, "\(human)")
            #expect(human.stdout.contains("pending revocations"), "\(human.stdout)")
            #expect(human.stdout.contains("acme"), "\(human.stdout)")
            let shown = try await fixture.ctlJSON(ConnectionView.self, ["show", "acme"])
            #expect(shown.pendingRevocations == 1)
            let shownText = try await fixture.ctl(["show", "acme"])
            #expect(shownText.stdout.contains("pending revocations"), "\(shownText.stdout)")
            #expect(try await Self.resourceStatus(fixture, token: token) == 200, "Personio refused nothing yet")
            #expect(try await Self.actions(fixture).contains { $0.action == "token.revoke_failed" })
            // What the daemon keeps to revoke the token is sealed: no byte of the database files holds the token.
            for suffix in ["", "-wal", "-shm"] {
                let path = fixture.daemon.databasePath + suffix
                guard let bytes = FileManager.default.contents(atPath: path) else { continue }
                #expect(bytes.range(of: Data(token.utf8)) == nil, "the access token is in \(path) in plaintext")
            }

            // Personio recovers while the daemon is down; the next run finishes the job.
            try await Blocking.run { [daemon = fixture.daemon] in daemon.stop() }
            fixture.standIn.setFailure(.none, on: [.v2Revoke])
            try await Blocking.run { [daemon = fixture.daemon] in try daemon.start() }
            #expect(
                await Self.eventually { try await Self.resourceStatus(fixture, token: token) == 401 },
                "the revocation did not complete after the restart"
            )
            #expect(
                await Self.eventually {
                    try await fixture.ctlJSON(StatusView.self, ["status"]).pendingRevocations.isEmpty
                }
            )
            let entries = try await Self.actions(fixture)
            #expect(entries.filter { $0.action == "token.revoke_failed" }.count == 1)
            #expect(entries.filter { $0.action == "token.revoked" }.count == 1)
            #expect(!entries.contains { $0.detail.contains(token) })
        }
    }

    @Test("a v1 connection's disable, show and status say until when the v1 tokens handed out stay valid")
    func v1SaysUntilWhen() async throws {
        try await BrokerFixture.run { fixture in
            fixture.standIn.register(clientID: "fake-client-id-v1", clientSecret: "fake-secret-v1-0001", api: .v1)
            let added = try await fixture.ctl(
                [
                    "add", "legacy", "--provider", "personio-v1", "--client-id", "fake-client-id-v1",
                    "--api-base-url", fixture.baseURL, "--allow-uid", "0", "--secret-stdin",
                ],
                stdin: "fake-secret-v1-0001\n"
            )
            #expect(added.status == 0, "\(added)")
            let token = try await Self.token(fixture, "legacy")

            let disabled = try await fixture.ctl(["disable", "legacy"])
            #expect(disabled.status == 0, "\(disabled)")
            #expect(disabled.stdout.contains("v1 tokens already handed out stay valid until"), "\(disabled.stdout)")
            let shown = try await fixture.ctl(["show", "legacy"])
            #expect(shown.stdout.contains("v1 tokens already handed out stay valid until"), "\(shown.stdout)")
            let view = try await fixture.ctlJSON(ConnectionView.self, ["show", "legacy"])
            let until = try #require(view.tokensValidUntil)
            let seconds = try #require(try? Date(until, strategy: .iso8601)).timeIntervalSinceNow
            #expect((85_000...86_500).contains(seconds), "\(until)")
            let status = try await fixture.ctlJSON(StatusView.self, ["status"])
            #expect(status.tokensValidUntil["legacy"] == until)
            #expect(fixture.standIn.calls(.v2Revoke) == 0)
            #expect(fixture.standIn.isValid(token: token), "v1 has no revocation: the token stays valid, as said")

            // reset and disconnect say it too.
            let reset = try await fixture.ctl(["reset", "legacy", "--secret-stdin"], stdin: "fake-secret-v1-0001\n")
            #expect(reset.status == 0, "\(reset)")
            #expect(reset.stdout.contains("v1 tokens already handed out stay valid until"), "\(reset.stdout)")
            let disconnected = try await fixture.ctl(["disconnect", "legacy", "--yes"])
            #expect(disconnected.status == 0, "\(disconnected)")
            #expect(
                disconnected.stdout.contains("v1 tokens already handed out stay valid until \(until)"),
                "\(disconnected.stdout)"
            )
        }
    }
}
