import Foundation
import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultCrypto
import VaultTestSupport

/// DESIGN §10: a canary secret put through every operation appears in no response, log line, audit row, or byte of
/// the database, WAL or shared-memory file.
@Suite struct CanaryTests {
    static let marker = "CANARY-7f3a9c"

    /// Everything the vault said or wrote that a person or program other than the token broker could see.
    final class Observations: @unchecked Sendable {
        // @unchecked Sendable: used by one test, sequentially.
        var texts: [(String, String)] = []
        var files: [(String, [UInt8])] = []

        func record(_ what: String, _ value: some Encodable) throws {
            self.texts.append((what, String(decoding: try VaultJSON.encoder().encode(value), as: UTF8.self)))
        }

        func record(_ what: String, error: any Error) {
            self.texts.append((what, "\(error) \(String(reflecting: error))"))
        }

        func snapshotFiles(_ fixture: VaultFixture, _ when: String) throws {
            for (path, bytes) in try fixture.databaseFiles() {
                self.files.append(("\(when): \(path)", bytes))
            }
        }
    }

    @Test func theCanaryAppearsNowhere() async throws {
        let marker = Self.marker
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let seen = Observations()
        let vault = try await fixture.open()

        // Create, with the canary in every secret field of both kinds of connection.
        try seen.record(
            "create",
            try await vault.create(
                CreateConnectionRequest(
                    id: "canary",
                    provider: .personioV2,
                    settings: ConnectionSettings(scope: "personio:persons:read"),
                    secrets: secrets([
                        .clientID: "\(marker)-id", .clientSecret: "\(marker)-secret", .webhookToken: "\(marker)-hook",
                    ]),
                    grants: Grants(uids: [1000])
                ),
                by: admin
            )
        )
        try seen.record(
            "create recruiting",
            try await vault.create(recruitingRequest("canary-rec", token: "\(marker)-recruiting"), by: admin)
        )
        try seen.snapshotFiles(fixture, "after create")

        // Refused operations carrying the canary: their errors must not echo it.
        let refusals: [@Sendable () async throws -> Void] = [
            { _ = try await vault.create(v2Request("canary2", clientSecret: "\(marker)-bad\n"), by: admin) },
            { _ = try await vault.create(v2Request("canary", clientSecret: "\(marker)-dup"), by: admin) },
            {
                _ = try await vault.edit(
                    "canary",
                    EditConnectionRequest(secrets: secrets([.recruitingToken: "\(marker)-wrong"])),
                    by: admin
                )
            },
            { _ = try await vault.reset("canary", secrets: secrets([.clientSecret: "\(marker)-\u{07}"]), by: admin) },
            { _ = try await vault.create(v2Request("Canary", clientSecret: "\(marker)-id"), by: admin) },
        ]
        for refusal in refusals {
            do {
                try await refusal()
                Issue.record("expected a refusal")
            } catch {
                seen.record("refusal", error: error)
            }
        }
        _ = try? VaultJSON.decoder().decode(
            CreateConnectionRequest.self,
            from: Data(#"{"id":"x","provider":"personio-v2","secrets":{"client_secret":"\#(marker)","bad":1}}"#.utf8)
        )

        // Every operation, with views recorded as the admin socket would send them.
        try seen.record(
            "edit",
            try await vault.edit(
                "canary",
                EditConnectionRequest(secrets: secrets([.clientSecret: "\(marker)-edited"])),
                by: admin
            )
        )
        try seen.record("disable", try await vault.disable("canary", reason: "fake maintenance", by: admin))
        try seen.record("disable again", try await vault.disable("canary", reason: nil, by: admin))
        try seen.record("enable", try await vault.enable("canary", by: admin))
        try await vault.markNeedsReset("canary", revision: 2, error: "invalid_client")
        try seen.record(
            "reset",
            try await vault.reset("canary", secrets: secrets([.clientSecret: "\(marker)-reset"]), by: admin)
        )
        try seen.record("grants", try await vault.setGrants("canary", Grants(groups: ["hr"]), by: admin))
        try seen.record("rotate", try await vault.rotateMasterKey(by: admin))
        #expect(try await decrypted(vault, "canary", .clientSecret) == "\(marker)-reset", "the canary is really stored")
        #expect(try await decrypted(vault, "canary-rec", .recruitingToken) == "\(marker)-recruiting")
        try seen.record("list", ConnectionList(connections: try await vault.list()))
        try seen.record("view", try await vault.view("canary"))
        try seen.record("snapshots", "\(try await vault.snapshots())")
        try seen.record("credentials description", "\(try await vault.credentials("canary"))")
        try seen.record("status", try await vault.status())
        try seen.record("verify", try await vault.verifyAudit())
        try seen.snapshotFiles(fixture, "after rotate")

        try await vault.disconnect("canary", by: admin)
        try seen.snapshotFiles(fixture, "after disconnect")
        try await vault.close()
        try seen.snapshotFiles(fixture, "after close")

        let reopened = try await fixture.open(createKeyIfMissing: false)
        try seen.record("list after reopen", ConnectionList(connections: try await reopened.list()))
        try seen.record("audit", AuditList(entries: try await reopened.audit(connection: nil, since: nil, limit: 1000)))
        try seen.record(
            "audit canary",
            AuditList(entries: try await reopened.audit(connection: "canary", since: nil, limit: 1000))
        )
        try seen.record("status after reopen", try await reopened.status())
        try seen.snapshotFiles(fixture, "after reopen")
        try await reopened.disconnect("canary-rec", by: admin)
        try await reopened.close()
        try seen.snapshotFiles(fixture, "at the end")

        // The search works: plain metadata is found where the canary is not.
        let logs = fixture.logs.lines
        #expect(logs.contains { $0.contains("connection.id=canary") })
        #expect(seen.texts.contains { $0.1.contains("connection.disconnect") })
        #expect(seen.files.contains { $0.1.containsSequence(Array("canary-rec".utf8)) })
        #expect(seen.files.contains { $0.0.hasSuffix("-wal") })

        for line in logs {
            #expect(!line.contains(marker), "log line: \(line)")
        }
        for (what, text) in seen.texts {
            #expect(!text.contains(marker), "\(what): \(text)")
        }
        let needle = Array(marker.utf8)
        let keyBytes = try KeyFile.load(path: fixture.keyFilePath).withUnsafeBytes { Array($0) }
        for (what, bytes) in seen.files {
            #expect(!bytes.containsSequence(needle), "\(what) holds the canary")
            #expect(!bytes.containsSequence(keyBytes), "\(what) holds the master key")
        }
    }
}
