import Foundation
import TestSupport
import Testing
import VaultAPI

/// The built `connvaultd --dev` driven by the built `connvaultctl`, as an admin would from a shell.
@Suite("Admin CLI end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct AdminEndToEndTests {
    static let secret = "fake-secret-e2e-0001"

    func decode<T: Decodable>(_ type: T.Type, _ result: CommandResult) throws -> T {
        try #require(result.status == 0, "\(result)")
        return try VaultJSON.decoder().decode(T.self, from: Data(result.stdout.utf8))
    }

    @Test("every admin command works against a live daemon")
    func everyAdminCommand() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }

        // add (v2, secret from stdin), list, show
        let added = try self.decode(
            ConnectionView.self,
            try daemon.ctl(
                [
                    "add", "acme", "--provider", "personio-v2", "--client-id", "fake-client-id-1", "--app-id",
                    "ACME_SYNC",
                    "--allow-uid", "1000", "--secret-stdin", "--json",
                ],
                stdin: "\(Self.secret)\n"
            )
        )
        #expect(added.state == .active)
        #expect(added.revision == 1)
        #expect(added.secrets["client_secret"]?.set == true)
        #expect(added.secrets["client_secret"]?.fingerprint.count == 16)
        #expect(added.grants.uids == [1000])

        let recruiting = try daemon.ctl(
            [
                "add", "acme-jobs", "--provider", "personio-recruiting", "--company-id", "12345", "--secret-stdin",
                "--json",
            ],
            stdin: "fake-recruiting-key-1\n"
        )
        #expect(recruiting.status == 0, "\(recruiting)")

        let list = try self.decode(ConnectionList.self, try daemon.ctl(["list", "--json"]))
        #expect(list.connections.map(\.id) == ["acme", "acme-jobs"])
        let table = try daemon.ctl(["list"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("acme-jobs"))

        let shown = try self.decode(ConnectionView.self, try daemon.ctl(["show", "acme", "--json"]))
        #expect(shown.settings.appID == "ACME_SYNC")

        // edit re-encrypts: new revision, same fingerprint for the unchanged secret
        let edited = try self.decode(
            ConnectionView.self,
            try daemon.ctl(["edit", "acme", "--scope", "personio:persons:read", "--json"])
        )
        #expect(edited.revision == 2)
        #expect(edited.settings.scope == "personio:persons:read")
        #expect(edited.secrets["client_secret"]?.fingerprint == added.secrets["client_secret"]?.fingerprint)

        // disable / enable, both idempotent
        let disabled = try self.decode(
            ConnectionView.self,
            try daemon.ctl(["disable", "acme", "--reason", "audit week", "--json"])
        )
        #expect(disabled.state == .disabled)
        #expect(try daemon.ctl(["disable", "acme"]).status == 0)
        let enabled = try self.decode(ConnectionView.self, try daemon.ctl(["enable", "acme", "--json"]))
        #expect(enabled.state == .active)
        #expect(try daemon.ctl(["enable", "acme"]).status == 0)

        // reset: new secret, new revision, new fingerprint
        let reset = try self.decode(
            ConnectionView.self,
            try daemon.ctl(["reset", "acme", "--secret-stdin", "--json"], stdin: "fake-secret-e2e-0002\n")
        )
        #expect(reset.revision == 3)
        #expect(reset.secrets["client_secret"]?.fingerprint != added.secrets["client_secret"]?.fingerprint)

        // grant adds to the current grants
        let granted = try self.decode(
            ConnectionView.self,
            try daemon.ctl(["grant", "acme", "--allow-unit", "payroll.service", "--json"])
        )
        #expect(granted.grants.uids == [1000])
        #expect(granted.grants.units == ["payroll.service"])

        // rotate-key re-wraps both data keys
        let rotated = try self.decode(KeyRotationResult.self, try daemon.ctl(["rotate-key", "--json"]))
        #expect(rotated.rewrappedDataKeys == 2)
        #expect(rotated.keyID == 2)

        // status
        let status = try self.decode(StatusView.self, try daemon.ctl(["status", "--json"]))
        #expect(status.connections == 2)
        #expect(status.masterKeyID == 2)

        // disconnect asks for --yes without a terminal, then deletes for good
        let refused = try daemon.ctl(["disconnect", "acme-jobs"])
        #expect(refused.status == 2, "\(refused)")
        #expect(try daemon.ctl(["disconnect", "acme-jobs", "--yes"]).status == 0)
        let gone = try daemon.ctl(["show", "acme-jobs"])
        #expect(gone.status == 1)
        #expect(gone.stderr.contains("not_found"))

        // audit names every action with the actor, and the chain verifies
        let audit = try self.decode(AuditList.self, try daemon.ctl(["audit", "--json", "--limit", "1000"]))
        let actions = Set(audit.entries.map(\.action))
        for action in [
            "connection.create", "connection.edit", "connection.disable", "connection.enable", "connection.reset",
            "connection.grants", "key.rotate", "connection.disconnect",
        ] {
            #expect(actions.contains(action), "missing \(action)")
        }
        let create = try #require(audit.entries.first { $0.action == "connection.create" })
        #expect(create.actor.uid == getuid())
        #expect(create.actor.comm == "connvaultctl")
        let verified = try self.decode(AuditVerification.self, try daemon.ctl(["audit", "--verify", "--json"]))
        #expect(verified.intact)

        // exit codes: usage 2, refused 1, unreachable 3
        #expect(try daemon.ctl(["add"]).status == 2)
        #expect(try daemon.ctl(["enable", "no-such"]).status == 1)
        #expect(
            try daemon.ctl(["list"], environment: ["CONNVAULT_ADMIN_SOCKET": directory.file("none.sock")]).status == 3
        )
    }

    @Test("a secret on the command line is refused and never echoed")
    func secretOnCommandLine() throws {
        let result = try Command.run(
            Binaries.control,
            ["add", "x", "--provider", "personio-v2", "--client-secret", "fake-argv-secret"]
        )
        #expect(result.status == 2)
        #expect(result.stderr.contains("--secret-stdin"))
        #expect(!result.stderr.contains("fake-argv-secret"))
        #expect(!result.stdout.contains("fake-argv-secret"))
    }

    @Test("after a restart every connection still decrypts")
    func restart() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        for index in 0..<8 {
            let result = try daemon.ctl(
                [
                    "add", "conn-\(index)", "--provider", "personio-v2", "--client-id", "fake-id-\(index)",
                    "--secret-stdin",
                ],
                stdin: "fake-secret-\(index)\n"
            )
            #expect(result.status == 0, "\(result)")
        }
        #expect(daemon.stop() == 0)
        try daemon.start()
        defer { daemon.stop() }
        // rotate-key unwraps every data key and opens every secret (to recompute fingerprints): it fails on any
        // ciphertext that does not decrypt. Each edit decrypts and re-encrypts one connection.
        let rotated = try daemon.ctl(["rotate-key", "--json"])
        #expect(rotated.status == 0, "\(rotated)")
        for index in 0..<8 {
            let edit = try daemon.ctl(["edit", "conn-\(index)", "--app-id", "APP_\(index)"])
            #expect(edit.status == 0, "\(edit)")
        }
    }

    @Test("the daemon refuses an unsafe or missing key file and says which and why")
    func keyFileChecks() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let state = directory.file("state")
        let missing = try Command.run(
            Binaries.daemon,
            [
                "--state-dir", state, "--app-socket", directory.file("a.sock"), "--admin-socket",
                directory.file("b.sock"),
            ]
        )
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("master.key"), "\(missing)")

        let initialised = try Command.run(Binaries.daemon, ["--init", "--state-dir", state])
        #expect(initialised.status == 0, "\(initialised)")
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(state)/master.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((attributes[.size] as? Int) == 32)

        chmod("\(state)/master.key", 0o640)
        let readable = try Command.run(
            Binaries.daemon,
            [
                "--state-dir", state, "--app-socket", directory.file("a.sock"), "--admin-socket",
                directory.file("b.sock"),
            ]
        )
        #expect(readable.status == 1)
        #expect(readable.stderr.contains("master.key") && readable.stderr.contains("group"), "\(readable)")
    }
}
