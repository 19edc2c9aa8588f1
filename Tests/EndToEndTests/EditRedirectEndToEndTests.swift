import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

/// An admin sees secrets only as fingerprints. Moving a connection's API base is moving where its secrets go, so it
/// needs the secrets again; and outside `--dev` a plain `http://` upstream needs `--allow-insecure-upstream`.
@Suite("Edits that redirect secrets, end to end", .offCooperativePool, .timeLimit(.minutes(3)))
struct EditRedirectEndToEndTests {
    static let clientID = "fake-client-id-redirect"
    static let secret = "CANARY-redirect-secret-0001"

    @Test("edit --api-base-url without the secrets: 400 secrets_required, nothing changes, verify stays home")
    func redirectWithoutSecrets() async throws {
        try await BrokerFixture.run { fixture in
            let before = try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let listener = try await PersonioStandIn.start()
            do {
                // The CLI, as an admin would try it.
                let cli = try await fixture.ctl(["edit", "acme", "--api-base-url", listener.baseURL])
                #expect(cli.status == 1, "\(cli)")
                #expect(cli.stderr.contains("secrets_required"), "\(cli)")
                #expect(cli.stderr.split(separator: "\n").count == 1, "one line: \(cli)")

                // The API, for each way of changing the destination: a new URL, and clearing it (the default is
                // another destination too).
                for settings in [#"{"api_base_url":"\#(listener.baseURL)"}"#, #"{"api_base_url":null}"#] {
                    let response = try await fixture.admin(
                        "PATCH",
                        "/v1/connections/acme",
                        body: #"{"settings":\#(settings)}"#
                    )
                    #expect(response.status == 400, "\(response.raw)")
                    #expect(response.problem?.code == .secretsRequired, "\(response.raw)")
                }
                // Half the credential is not enough either.
                let half = try await fixture.admin(
                    "PATCH",
                    "/v1/connections/acme",
                    body: #"{"settings":{"api_base_url":"\#(listener.baseURL)"},"secrets":{"client_secret":"x-1"}}"#
                )
                #expect(half.problem?.code == .secretsRequired, "\(half.raw)")

                let after = try await fixture.ctlJSON(ConnectionView.self, ["show", "acme"])
                #expect(after.revision == before.revision)
                #expect(after.settings.apiBaseURL == fixture.baseURL)

                let verify = try await fixture.ctl(["verify", "acme"])
                #expect(verify.status == 0, "\(verify)")
                #expect(fixture.standIn.calls(.v2Token) >= 1)
                // verify has returned: whatever it sent has arrived by now, and nothing went to the listener.
                #expect(listener.totalCalls == 0, "the listener received \(listener.totalCalls) requests")
            } catch {
                try? await listener.shutdown()
                throw error
            }
            try await listener.shutdown()
        }
    }

    @Test("edit --api-base-url with the secrets again moves the connection; verify goes to the new place")
    func redirectWithSecrets() async throws {
        try await BrokerFixture.run { fixture in
            let before = try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let other = try await PersonioStandIn.start()
            do {
                other.register(clientID: Self.clientID, clientSecret: Self.secret, api: .v2)
                let edit = try await fixture.ctl(
                    ["edit", "acme", "--api-base-url", other.baseURL, "--new-secret", "--secret-stdin", "--json"],
                    stdin: "\(Self.clientID)\n\(Self.secret)\n"
                )
                #expect(edit.status == 0, "\(edit)")
                let after = try await fixture.ctlJSON(ConnectionView.self, ["show", "acme"])
                #expect(after.revision == before.revision + 1)
                #expect(after.settings.apiBaseURL == other.baseURL)
                fixture.standIn.resetCounts()
                let verify = try await fixture.ctl(["verify", "acme"])
                #expect(verify.status == 0, "\(verify)")
                #expect(other.calls(.v2Token) == 1)
                #expect(fixture.standIn.totalCalls == 0)
                #expect(!(edit.stdout + edit.stderr + verify.stdout).contains(Self.secret))
            } catch {
                try? await other.shutdown()
                throw error
            }
            try await other.shutdown()
        }
    }

    @Test("settings that do not move the connection need no secrets")
    func otherSettings() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2("acme", clientID: Self.clientID, secret: Self.secret)
            let edit = try await fixture.ctl([
                "edit", "acme", "--app-id", "ACME_APP", "--api-base-url", fixture.baseURL,
            ])
            #expect(edit.status == 0, "\(edit)")
        }
    }

    @Test("outside --dev, plain http:// upstreams need --allow-insecure-upstream")
    func insecureUpstream() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = "\(directory.path)/.connvault"
        let initialized = try await Blocking.run {
            try Command.run(Binaries.daemon, ["--init", "--state-dir", state], directory: directory.path)
        }
        try #require(initialized.status == 0, "\(initialized)")
        let layout = [
            "--state-dir", state, "--app-socket", "\(state)/app.sock", "--admin-socket", "\(state)/admin.sock",
        ]
        let add = ["add", "acme", "--provider", "personio-v2", "--client-id", Self.clientID, "--secret-stdin"]

        let strict = DaemonProcess(directory: directory, arguments: layout)
        try await Blocking.run { try strict.start() }
        let refused = try await Blocking.run {
            try strict.ctl(add + ["--api-base-url", "http://127.0.0.1:9"], stdin: "\(Self.secret)\n")
        }
        let refusedEdit = try await Blocking.run { () throws -> (CommandResult, CommandResult) in
            let created = try strict.ctl(
                add + ["--api-base-url", "https://api.personio.example"],
                stdin: "\(Self.secret)\n"
            )
            let edit = try strict.ctl(
                ["edit", "acme", "--api-base-url", "http://127.0.0.1:9", "--new-secret", "--secret-stdin"],
                stdin: "\(Self.clientID)\n\(Self.secret)\n"
            )
            return (created, edit)
        }
        _ = await Blocking.runIgnoringErrors { strict.stop() }
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("--allow-insecure-upstream"), "\(refused)")
        #expect(refusedEdit.0.status == 0, "\(refusedEdit.0)")
        #expect(refusedEdit.1.status == 1, "\(refusedEdit.1)")
        #expect(refusedEdit.1.stderr.contains("invalid_setting"), "\(refusedEdit.1)")

        let lenient = DaemonProcess(directory: directory, arguments: layout + ["--allow-insecure-upstream"])
        try await Blocking.run { try lenient.start() }
        let accepted = try await Blocking.run {
            try lenient.ctl(
                ["add", "local", "--provider", "personio-v2", "--client-id", Self.clientID, "--secret-stdin"]
                    + ["--api-base-url", "http://127.0.0.1:9"],
                stdin: "\(Self.secret)\n"
            )
        }
        _ = await Blocking.runIgnoringErrors { lenient.stop() }
        #expect(accepted.status == 0, "\(accepted)")
    }
}

extension Blocking {
    /// Runs `body` off the cooperative pool, for clean-up whose failure must not hide the test's own.
    static func runIgnoringErrors<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        try? await Blocking.run(body)
    }
}
