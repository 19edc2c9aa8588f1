import Foundation
import Synchronization
import Testing
import VaultAPI
import VaultCore
import VaultCrypto
import VaultStore
import VaultTestSupport

@Suite struct VaultAdminTests {
    // MARK: - Create and view

    @Test func createGivesAMaskedView() async throws {
        try await VaultFixture.with { fixture, vault in
            let view = try await vault.create(
                v2Request(
                    "acme",
                    clientSecret: "fake-masked-secret",
                    settings: ConnectionSettings(appID: "fake-app", scope: "personio:persons:read"),
                    grants: Grants(uids: [1000])
                ),
                by: admin
            )
            #expect(view.id == "acme")
            #expect(view.provider == .personioV2)
            #expect(view.state == .active)
            #expect(view.revision == 1)
            #expect(view.settings.appID == "fake-app")
            #expect(view.grants == Grants(uids: [1000]))
            #expect(view.lastError == nil)
            #expect(Set(view.secrets.keys) == ["client_id", "client_secret"])
            let key = try fixture.masterKey(id: 1)
            for (field, value) in [("client_id", "fake-client-id"), ("client_secret", "fake-masked-secret")] {
                let secret = try #require(view.secrets[field])
                #expect(secret.set)
                #expect(secret.fingerprint.count == 16)
                #expect(
                    secret.fingerprint == key.fingerprint(of: secretBytes(value)),
                    "the keyed fingerprint of the value"
                )
                #expect(secret.updatedAt.hasSuffix("Z"))
                #expect(secret.updatedAt >= view.createdAt)
            }
            let json = String(decoding: try VaultJSON.encoder().encode(view), as: UTF8.self)
            #expect(!json.contains("fake-masked-secret"))
            #expect(!json.contains("fake-client-id"))
            #expect(try await vault.view("acme") == view)
            #expect(try await vault.list() == [view])
            #expect(try await decrypted(vault, "acme", .clientSecret) == "fake-masked-secret")
        }
    }

    @Test func createIsAudited() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            let entries = try await vault.audit(connection: "acme", since: nil, limit: 100)
            let entry = try #require(entries.last)
            #expect(entry.action == "connection.create")
            #expect(entry.actor == admin)
            #expect(entry.outcome == "ok")
            #expect(entry.detail.contains("provider personio-v2"))
            #expect(entry.detail.contains("client_id,client_secret"))
            let all = try await vault.audit(connection: nil, since: nil, limit: 100)
            #expect(all.first?.action == "vault.init")
        }
    }

    @Test func eachProviderCanBeCreated() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("v2"), by: admin)
            _ = try await vault.create(
                CreateConnectionRequest(
                    id: "v1",
                    provider: .personioV1,
                    secrets: secrets([
                        .clientID: "fake-id", .clientSecret: "fake-secret", .webhookToken: "fake-webhook",
                    ])
                ),
                by: admin
            )
            _ = try await vault.create(recruitingRequest("rec"), by: admin)
            let views = try await vault.list()
            #expect(views.map(\.id) == ["rec", "v1", "v2"])
            #expect(Set(views[0].secrets.keys) == ["recruiting_token"])
            #expect(Set(views[1].secrets.keys) == ["client_id", "client_secret", "webhook_token"])
            #expect(try await decrypted(vault, "rec", .recruitingToken) == "fake-recruiting-rec")
            #expect(try await decrypted(vault, "v1", .webhookToken) == "fake-webhook")
        }
    }

    @Test func equalSecretsHaveEqualFingerprintsAcrossConnections() async throws {
        try await VaultFixture.with { _, vault in
            let a = try await vault.create(v2Request("a", clientSecret: "fake-shared"), by: admin)
            let b = try await vault.create(v2Request("b", clientSecret: "fake-shared"), by: admin)
            let c = try await vault.create(v2Request("c", clientSecret: "fake-other"), by: admin)
            #expect(a.secrets["client_secret"]?.fingerprint == b.secrets["client_secret"]?.fingerprint)
            #expect(a.secrets["client_secret"]?.fingerprint != c.secrets["client_secret"]?.fingerprint)
        }
    }

    // MARK: - Edit

    @Test func editWritesANewRevisionWithAFreshDataKeyAndNonces() async throws {
        try await VaultFixture.with { fixture, vault in
            let created = try await vault.create(
                CreateConnectionRequest(
                    id: "acme",
                    provider: .personioV2,
                    secrets: secrets([.clientID: "fake-id", .clientSecret: "fake-secret-1", .webhookToken: "fake-hook"])
                ),
                by: admin
            )
            // Mark the unchanged fields' timestamps, so that "kept" is distinguishable from "rewritten in the same second".
            try await fixture.store { tx in
                try tx.executeForTesting(
                    "UPDATE secrets SET updated_at = '2001-01-01T00:00:00Z' WHERE connection_id = 'acme'"
                )
            }
            let (secretsBefore, keyBefore) = try await fixture.store { tx in
                (try tx.secrets(of: "acme"), try tx.dataKey(of: "acme"))
            }

            var patch = SettingsPatch()
            patch.scope = .set("personio:persons:read")
            let edited = try await vault.edit(
                "acme",
                EditConnectionRequest(settings: patch, secrets: secrets([.clientSecret: "fake-secret-2"])),
                by: admin
            )

            #expect(edited.revision == 2)
            #expect(edited.settings.scope == "personio:persons:read")
            let (secretsAfter, keyAfter) = try await fixture.store { tx in
                (try tx.secrets(of: "acme"), try tx.dataKey(of: "acme"))
            }
            let before = try #require(keyBefore)
            let after = try #require(keyAfter)
            #expect(after.revision == 2)
            #expect(after.wrapped != before.wrapped)
            #expect(after.nonce != before.nonce)
            #expect(secretsAfter.count == 3)
            for (old, new) in zip(secretsBefore, secretsAfter) {
                #expect(old.field == new.field)
                #expect(new.revision == 2)
                #expect(new.nonce != old.nonce, "\(new.field): fresh nonce")
                #expect(new.ciphertext != old.ciphertext, "\(new.field): re-encrypted")
                if new.field == "client_secret" {
                    #expect(new.fingerprint != old.fingerprint)
                    #expect(new.updatedAt != "2001-01-01T00:00:00Z")
                } else {
                    #expect(new.fingerprint == old.fingerprint, "\(new.field): fingerprint kept")
                    #expect(new.updatedAt == "2001-01-01T00:00:00Z", "\(new.field): updated_at kept")
                }
            }
            #expect(edited.secrets["client_id"]?.fingerprint == created.secrets["client_id"]?.fingerprint)
            #expect(edited.secrets["client_secret"]?.fingerprint != created.secrets["client_secret"]?.fingerprint)
            let credentials = try await vault.credentials("acme")
            #expect(credentials.snapshot.revision == 2)
            #expect(text(credentials.secrets[.clientSecret]) == "fake-secret-2")
            #expect(text(credentials.secrets[.clientID]) == "fake-id")
            #expect(text(credentials.secrets[.webhookToken]) == "fake-hook")
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.action == "connection.edit")
            #expect(entry.detail.contains("secrets client_secret"))
            #expect(entry.detail.contains("revision 2"))
        }
    }

    @Test func aSettingsOnlyEditStillReencryptsEverything() async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(v2Request("acme", settings: ConnectionSettings(appID: "fake-app")), by: admin)
            let before = try await fixture.store { tx in (try tx.secrets(of: "acme"), try tx.dataKey(of: "acme")) }
            var patch = SettingsPatch()
            patch.appID = .clear
            let edited = try await vault.edit("acme", EditConnectionRequest(settings: patch), by: admin)
            #expect(edited.revision == 2)
            #expect(edited.settings.appID == nil)
            let after = try await fixture.store { tx in (try tx.secrets(of: "acme"), try tx.dataKey(of: "acme")) }
            #expect(after.1?.wrapped != before.1?.wrapped)
            #expect(
                zip(before.0, after.0).allSatisfy { $0.ciphertext != $1.ciphertext && $0.fingerprint == $1.fingerprint }
            )
            #expect(try await decrypted(vault, "acme", .clientSecret) == "fake-secret-acme")
        }
    }

    @Test func anEditCanAddAndReplaceGrants() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme", grants: Grants(uids: [1])), by: admin)
            let edited = try await vault.edit(
                "acme",
                EditConnectionRequest(grants: Grants(groups: ["hr", "hr"], units: ["app.service"])),
                by: admin
            )
            #expect(edited.grants == Grants(groups: ["hr"], units: ["app.service"]))
            let kept = try await vault.edit(
                "acme",
                EditConnectionRequest(secrets: secrets([.webhookToken: "fake-hook"])),
                by: admin
            )
            #expect(kept.grants == Grants(groups: ["hr"], units: ["app.service"]))
            #expect(kept.revision == 3)
        }
    }

    // MARK: - Disable, enable

    @Test func disableAndEnableAreReversibleAndIdempotent() async throws {
        try await VaultFixture.with { _, vault in
            let start = vault.changes.latest
            _ = try await vault.create(v2Request("acme"), by: admin)
            let count0 = try await vault.status().auditEntries

            let disabled = try await vault.disable("acme", reason: "fake maintenance", by: admin)
            #expect(disabled.state == .disabled)
            #expect(disabled.disabledReason == "fake maintenance")
            #expect(disabled.revision == 1)
            #expect(try await vault.status().auditEntries == count0 + 1)
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.action == "connection.disable")
            #expect(entry.detail == "active -> disabled; reason: fake maintenance")

            let again = try await vault.disable("acme", reason: "other reason", by: admin)
            #expect(again == disabled, "a repeated disable changes nothing, not even the reason")
            #expect(try await vault.status().auditEntries == count0 + 1)

            let enabled = try await vault.enable("acme", by: admin)
            #expect(enabled.state == .active)
            #expect(enabled.disabledReason == nil)
            #expect(try await vault.status().auditEntries == count0 + 2)
            let enabledAgain = try await vault.enable("acme", by: admin)
            #expect(enabledAgain == enabled)
            #expect(try await vault.status().auditEntries == count0 + 2)

            #expect(try await decrypted(vault, "acme", .clientSecret) == "fake-secret-acme")
            guard case .changes(let published) = vault.changes.changes(after: start) else {
                Issue.record("the change feed lost changes")
                return
            }
            #expect(published.map(\.change.kind) == [.created, .disabled, .enabled])
        }
    }

    @Test func disableWithoutAReason() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            let view = try await vault.disable("acme", reason: nil, by: admin)
            #expect(view.disabledReason == nil)
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.detail.contains("no reason given"))
        }
    }

    // MARK: - Needs reset, reset

    @Test func markNeedsResetMovesAnActiveConnectionAndIsAudited() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            let count0 = try await vault.status().auditEntries
            try await vault.markNeedsReset("acme", revision: 1, error: "invalid_client")
            let view = try await vault.view("acme")
            #expect(view.state == .needsReset)
            #expect(view.lastError == "invalid_client")
            #expect(try await vault.status().auditEntries == count0 + 1)
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.action == "connection.needs_reset")
            #expect(entry.outcome == "rejected")
            #expect(entry.detail.contains("revision 1"))

            // Repeated rejections change nothing more.
            try await vault.markNeedsReset("acme", revision: 1, error: "invalid_client")
            #expect(try await vault.status().auditEntries == count0 + 1)

            await #expect(throws: VaultError(.connectionNeedsReset, "")) { try await vault.enable("acme", by: admin) }
            #expect(try await vault.view("acme").state == .needsReset)
        }
    }

    @Test func markNeedsResetIgnoresAStaleRevisionAndUnknownConnections() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            _ = try await vault.edit(
                "acme",
                EditConnectionRequest(secrets: secrets([.clientSecret: "fake-new"])),
                by: admin
            )
            let before = try await vault.view("acme")
            let count0 = try await vault.status().auditEntries
            try await vault.markNeedsReset("acme", revision: 1, error: "invalid_client")
            try await vault.markNeedsReset("nobody", revision: 1, error: "invalid_client")
            #expect(try await vault.view("acme") == before)
            #expect(try await vault.status().auditEntries == count0)
        }
    }

    @Test func recordLastErrorKeepsTheStateAndIgnoresAStaleRevision() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            let count0 = try await vault.status().auditEntries
            try await vault.recordLastError("acme", revision: 1, error: "upstream timed out")
            var view = try await vault.view("acme")
            #expect(view.state == .active)
            #expect(view.lastError == "upstream timed out")
            try await vault.recordLastError("acme", revision: 0, error: "stale")
            view = try await vault.view("acme")
            #expect(view.lastError == "upstream timed out")
            try await vault.recordLastError("acme", revision: 1, error: nil)
            #expect(try await vault.view("acme").lastError == nil)
            #expect(try await vault.status().auditEntries == count0)
        }
    }

    @Test func aDisabledConnectionStaysDisabledWhenRejected() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            _ = try await vault.disable("acme", reason: nil, by: admin)
            try await vault.markNeedsReset("acme", revision: 1, error: "invalid_client")
            #expect(try await vault.view("acme").state == .disabled)
        }
    }

    @Test func resetReplacesTheSecretKeepsTheClientIDAndReturnsToActive() async throws {
        try await VaultFixture.with { fixture, vault in
            let created = try await vault.create(
                v2Request("acme", clientID: "fake-id", clientSecret: "fake-old"),
                by: admin
            )
            try await vault.markNeedsReset("acme", revision: 1, error: "invalid_client")
            let keyBefore = try await fixture.store { try $0.dataKey(of: "acme") }

            let reset = try await vault.reset("acme", secrets: secrets([.clientSecret: "fake-new"]), by: admin)
            #expect(reset.state == .active)
            #expect(reset.revision == 2)
            #expect(reset.lastError == nil)
            #expect(reset.secrets["client_id"]?.fingerprint == created.secrets["client_id"]?.fingerprint)
            #expect(reset.secrets["client_secret"]?.fingerprint != created.secrets["client_secret"]?.fingerprint)
            #expect(try await decrypted(vault, "acme", .clientSecret) == "fake-new")
            #expect(try await decrypted(vault, "acme", .clientID) == "fake-id")
            let keyAfter = try await fixture.store { try $0.dataKey(of: "acme") }
            #expect(keyAfter?.wrapped != keyBefore?.wrapped)
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.action == "connection.reset")
            #expect(entry.detail == "secrets client_secret; revision 2")

            let both = try await vault.reset(
                "acme",
                secrets: secrets([.clientID: "fake-id-2", .clientSecret: "fake-new-2"]),
                by: admin
            )
            #expect(both.revision == 3)
            #expect(try await decrypted(vault, "acme", .clientID) == "fake-id-2")
        }
    }

    @Test func resetFromDisabledClearsTheReasonAndRecruitingNeedsItsToken() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("acme"), by: admin)
            _ = try await vault.disable("acme", reason: "fake", by: admin)
            let reset = try await vault.reset("acme", secrets: secrets([.clientSecret: "fake-new"]), by: admin)
            #expect(reset.state == .active)
            #expect(reset.disabledReason == nil)

            _ = try await vault.create(recruitingRequest("rec"), by: admin)
            await #expect(throws: VaultError(.missingSecret, "")) {
                try await vault.reset("rec", secrets: secrets([.webhookToken: "fake-hook"]), by: admin)
            }
            let recruiting = try await vault.reset("rec", secrets: secrets([.recruitingToken: "fake-rec-2"]), by: admin)
            #expect(recruiting.revision == 2)
            #expect(try await decrypted(vault, "rec", .recruitingToken) == "fake-rec-2")
        }
    }

    // MARK: - Disconnect

    @Test func disconnectShredsEverythingButTheAuditTrail() async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(v2Request("acme", grants: Grants(uids: [1000], groups: ["hr"])), by: admin)
            _ = try await vault.create(v2Request("beta", grants: Grants(uids: [1000])), by: admin)
            _ = try await vault.edit(
                "acme",
                EditConnectionRequest(secrets: secrets([.clientSecret: "fake-2"])),
                by: admin
            )

            try await vault.disconnect("acme", by: admin)
            // Measured before anything else touches the file.
            let wal = VaultFixture.size(fixture.databasePath + "-wal")
            #expect(wal == nil || wal == 0, "the WAL is checkpointed and truncated: \(wal ?? -1) bytes")

            await #expect(throws: VaultError(.notFound, "")) { try await vault.view("acme") }
            await #expect(throws: VaultError(.notFound, "")) { try await vault.credentials("acme") }
            await #expect(throws: VaultError(.notFound, "")) { try await vault.disconnect("acme", by: admin) }
            let raw = try await fixture.store { tx in
                (
                    try tx.connection("acme"), try tx.secrets(of: "acme"), try tx.dataKey(of: "acme"),
                    try tx.grants(of: "acme")
                )
            }
            #expect(raw.0 == nil)
            #expect(raw.1.isEmpty)
            #expect(raw.2 == nil)
            #expect(raw.3.isEmpty)
            let trail = try await vault.audit(connection: "acme", since: nil, limit: 100)
            #expect(trail.map(\.action) == ["connection.create", "connection.edit", "connection.disconnect"])
            #expect(trail.last?.detail.contains("secrets shredded") == true)
            #expect(try await decrypted(vault, "beta", .clientSecret) == "fake-secret-beta")
            #expect(try await vault.verifyAudit().intact)

            // The id is free again.
            let again = try await vault.create(v2Request("acme"), by: admin)
            #expect(again.revision == 1)
        }
    }

    // MARK: - Grants

    @Test func setGrantsNormalizesAndReplaces() async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(v2Request("acme", grants: Grants(uids: [7])), by: admin)
            let view = try await vault.setGrants(
                "acme",
                Grants(
                    uids: [1000, 5, 1000],
                    groups: ["hr", "admins", "hr"],
                    units: ["b.service", "a.service", "b.service"]
                ),
                by: admin
            )
            #expect(
                view.grants == Grants(uids: [5, 1000], groups: ["admins", "hr"], units: ["a.service", "b.service"])
            )
            #expect(view.revision == 1, "grants are not secrets: no new revision")
            let stored = try await fixture.store { try $0.grants(of: "acme") }
            #expect(stored.count == 6)
            let entry = try #require(try await vault.audit(connection: "acme", since: nil, limit: 10).last)
            #expect(entry.action == "connection.grants")
            #expect(try await vault.snapshot("acme")?.grants == view.grants)

            let cleared = try await vault.setGrants("acme", Grants(), by: admin)
            #expect(cleared.grants.isEmpty)
        }
    }

    // MARK: - Status, audit, snapshots

    @Test func statusCounts() async throws {
        try await VaultFixture.with { _, vault in
            for id in ["a", "b", "c", "d"] { _ = try await vault.create(v2Request(id), by: admin) }
            _ = try await vault.disable("b", reason: nil, by: admin)
            try await vault.markNeedsReset("c", revision: 1, error: "invalid_client")
            let status = try await vault.status()
            #expect(status.connections == 4)
            #expect(status.byState == ["active": 2, "disabled": 1, "needs_reset": 1])
            #expect(status.needsReset == ["c"])
            #expect(status.masterKeyID == 1)
            #expect(!status.masterKeyCreatedAt.isEmpty)
            #expect(status.aead == AEADAlgorithm.preferred.description)
            #expect(status.auditEntries == 7)  // init, 4 creates, disable, needs_reset
            #expect(status.auditEntries == (try await vault.verifyAudit().entries))
            #expect(status.databaseBytes > 0)
            #expect(status.version == Vault.version)
            #expect(status.pid == getpid())
        }
    }

    @Test func statusOfAnEmptyVault() async throws {
        try await VaultFixture.with { _, vault in
            let status = try await vault.status()
            #expect(status.connections == 0)
            #expect(status.byState == ["active": 0, "disabled": 0, "needs_reset": 0])
            #expect(status.auditEntries == 1)
        }
    }

    @Test func auditListingFiltersAndVerifies() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("a"), by: admin)
            _ = try await vault.create(v2Request("b"), by: admin)
            _ = try await vault.disable("a", reason: nil, by: admin)
            let all = try await vault.audit(connection: nil, since: nil, limit: 100)
            #expect(all.map(\.seq) == [1, 2, 3, 4])
            #expect(all.allSatisfy { $0.hash.count == 64 })
            #expect(try await vault.audit(connection: "a", since: nil, limit: 100).map(\.seq) == [2, 4])
            #expect(try await vault.audit(connection: nil, since: 2, limit: 100).map(\.seq) == [3, 4])
            #expect(try await vault.audit(connection: nil, since: nil, limit: 0).count == 1, "the limit is at least 1")
            await #expect(throws: VaultError(.invalidID, "")) {
                try await vault.audit(connection: "A/B", since: nil, limit: 10)
            }
            let verification = try await vault.verifyAudit()
            #expect(verification.intact)
            #expect(verification.entries == 4)
            #expect(verification.head == all.last?.hash)
            #expect(try await vault.integrityCheck() == "ok")
        }
    }

    @Test(arguments: [
        ("UPDATE audit SET detail = 'nothing to see' WHERE seq = 3", Int64(3)),
        ("DELETE FROM audit WHERE seq = 3", Int64(4)),
        ("UPDATE audit SET actor_uid = 0 WHERE seq = 2", Int64(2)),
    ])
    func verifyAuditFindsTampering(tamper: String, brokenAt: Int64) async throws {
        try await VaultFixture.with { fixture, vault in
            for id in ["a", "b", "c"] { _ = try await vault.create(v2Request(id), by: admin) }
            try await fixture.store { try $0.executeForTesting(tamper) }
            let verification = try await vault.verifyAudit()
            #expect(!verification.intact)
            #expect(verification.brokenAt == brokenAt)
            #expect(verification.reason != nil)
        }
    }

    @Test func snapshotsCarryMetadataOnly() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(
                v2Request("acme", settings: ConnectionSettings(scope: "personio:persons:read")),
                by: admin
            )
            let snapshot = try #require(try await vault.snapshot("acme"))
            #expect(snapshot.provider == .personioV2)
            #expect(snapshot.state == .active)
            #expect(snapshot.revision == 1)
            #expect(snapshot.settings.scope == "personio:persons:read")
            #expect(try await vault.snapshot("nobody") == nil)
            #expect(try await vault.snapshot("Not Valid") == nil)
            #expect(try await vault.snapshots().map(\.id) == ["acme"])
        }
    }
}
