import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultCrypto
import VaultStore
import VaultTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite struct VaultKeyTests {
    // MARK: - Opening

    @Test func aNewVaultCreatesItsKeyFile() async throws {
        try await VaultFixture.with { fixture, vault in
            var info = stat()
            #expect(stat(fixture.keyFilePath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(info.st_size == 32)
            #expect(stat(fixture.databasePath, &info) == 0)
            #expect(info.st_mode & 0o077 == 0)
            let keys = try await fixture.store { try $0.masterKeys() }
            #expect(keys.count == 1)
            #expect(keys.first?.checkValue == (try fixture.masterKey(id: 1)).checkValue)
            #expect(fixture.logs.lines.contains { $0.contains("created master key file") })
            #expect(try await vault.status().masterKeyID == 1)
        }
    }

    @Test func reopeningWithTheSameKeyWorks() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        _ = try await vault.create(v2Request("acme"), by: admin)
        try await vault.close()
        let reopened = try await fixture.open(createKeyIfMissing: false)
        #expect(try await decrypted(reopened, "acme", .clientSecret) == "fake-secret-acme")
        try await reopened.close()
    }

    @Test func anExistingKeyFileIsAdoptedByANewVault() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let key = MasterKey.generate(id: 1)
        try KeyFile.create(path: fixture.keyFilePath, key: key)
        let vault = try await fixture.open(createKeyIfMissing: false)
        let created = try await vault.create(v2Request("acme", clientSecret: "fake-x"), by: admin)
        #expect(created.secrets["client_secret"]?.fingerprint == key.fingerprint(of: secretBytes("fake-x")))
        try await vault.close()
    }

    @Test func reopeningWithAnotherKeyFileIsAClearError() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        _ = try await vault.create(v2Request("acme"), by: admin)
        try await vault.close()
        let original = try KeyFile.load(path: fixture.keyFilePath)

        #expect(unlink(fixture.keyFilePath) == 0)
        try KeyFile.create(path: fixture.keyFilePath, key: MasterKey.generate(id: 1))
        let error = await #expect(throws: VaultError.self) { try await fixture.open() }
        #expect(error?.code == .decryptionFailed)
        #expect(error?.message.contains(fixture.keyFilePath) == true)
        #expect(error?.message.contains("does not match") == true)

        // The right key still works afterwards: the refused open changed nothing.
        #expect(unlink(fixture.keyFilePath) == 0)
        try KeyFile.create(path: fixture.keyFilePath, key: MasterKey(id: 1, key: original))
        let reopened = try await fixture.open(createKeyIfMissing: false)
        #expect(try await decrypted(reopened, "acme", .clientSecret) == "fake-secret-acme")
        try await reopened.close()
    }

    @Test func aMissingKeyFileIsAnErrorNamingIt() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let error = await #expect(throws: VaultError.self) { try await fixture.open(createKeyIfMissing: false) }
        #expect(error?.message.contains(fixture.keyFilePath) == true)
        #expect(error?.message.contains("does not exist") == true)
        #expect(access(fixture.keyFilePath, F_OK) != 0, "no key file was created")

        // The same for an existing vault whose key file went missing.
        let vault = try await fixture.open()
        try await vault.close()
        #expect(unlink(fixture.keyFilePath) == 0)
        for create in [false, true] {
            let again = await #expect(throws: VaultError.self) { try await fixture.open(createKeyIfMissing: create) }
            #expect(again?.message.contains(fixture.keyFilePath) == true)
            #expect(again?.message.contains("does not exist") == true)
        }
    }

    @Test func anUnsafeKeyFileIsRefusedAtOpen() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        try await (try await fixture.open()).close()
        #expect(chmod(fixture.keyFilePath, 0o640) == 0)
        let error = await #expect(throws: VaultError.self) { try await fixture.open() }
        #expect(error?.message.contains(fixture.keyFilePath) == true)
        #expect(error?.message.contains("group or others") == true)
    }

    @Test func anUnopenableDatabaseIsAClearError() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let configuration = VaultConfiguration(
            databasePath: fixture.directory.file("missing-dir/vault.sqlite3"),
            keyFilePath: fixture.keyFilePath,
            createKeyIfMissing: true
        )
        let error = await #expect(throws: VaultError.self) {
            try await Vault.open(configuration, logger: fixture.logs.logger())
        }
        #expect(error?.code == .storageFailed)
        #expect(error?.message.contains(configuration.databasePath) == true)
    }

    // MARK: - Rotation

    @Test func rotationRewrapsEveryDataKeyAndRecomputesFingerprints() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        _ = try await vault.create(v2Request("a", clientSecret: "fake-shared"), by: admin)
        _ = try await vault.create(v2Request("b", clientSecret: "fake-shared"), by: admin)
        _ = try await vault.create(recruitingRequest("rec"), by: admin)
        _ = try await vault.disable("b", reason: nil, by: admin)
        let oldKey = try fixture.masterKey(id: 1)
        let viewsBefore = try await vault.list()
        let before = try await fixture.store { tx in
            (try tx.dataKeys(), try ["a", "b", "rec"].flatMap { try tx.secrets(of: $0) })
        }

        let result = try await vault.rotateMasterKey(by: admin)
        #expect(result == KeyRotationResult(keyID: 2, rewrappedDataKeys: 3))

        let newKey = try fixture.masterKey(id: 2)
        #expect(newKey.checkValue != oldKey.checkValue, "the key file now holds the new key")
        #expect(access(fixture.stagedKeyPath, F_OK) != 0, "no staged key is left behind")
        let (dataKeys, secretsAfter, masterKeys) = try await fixture.store { tx in
            (try tx.dataKeys(), try ["a", "b", "rec"].flatMap { try tx.secrets(of: $0) }, try tx.masterKeys())
        }
        #expect(masterKeys.map(\.id) == [1, 2])
        #expect(masterKeys.map(\.state) == ["retired", "active"])
        #expect(masterKeys.last?.checkValue == newKey.checkValue)
        for (old, new) in zip(before.0, dataKeys) {
            #expect(new.keyID == 2)
            #expect(new.revision == old.revision, "rotation does not bump revisions")
            #expect(new.wrapped != old.wrapped)
            #expect(new.nonce != old.nonce)
        }
        // Field ciphertexts stay (their data keys did not change); fingerprints are recomputed under the new key.
        for (old, new) in zip(before.1, secretsAfter) {
            #expect(new.ciphertext == old.ciphertext)
            #expect(new.fingerprint != old.fingerprint)
        }
        let viewsAfter = try await vault.list()
        for (old, new) in zip(viewsBefore, viewsAfter) {
            #expect(new.state == old.state)
            #expect(new.revision == old.revision)
        }
        let a = try #require(viewsAfter.first { $0.id == "a" })
        let b = try #require(viewsAfter.first { $0.id == "b" })
        #expect(a.secrets["client_secret"]?.fingerprint == newKey.fingerprint(of: secretBytes("fake-shared")))
        #expect(a.secrets["client_secret"]?.fingerprint == b.secrets["client_secret"]?.fingerprint)

        #expect(try await decrypted(vault, "a", .clientSecret) == "fake-shared")
        #expect(try await decrypted(vault, "rec", .recruitingToken) == "fake-recruiting-rec")
        let entry = try #require(try await vault.audit(connection: nil, since: nil, limit: 100).last)
        #expect(entry.action == "key.rotate")
        #expect(entry.detail == "master key 1 -> 2; 3 data keys re-wrapped")
        #expect(try await vault.status().masterKeyID == 2)

        // New revisions are wrapped by the new key.
        _ = try await vault.edit("a", EditConnectionRequest(secrets: secrets([.clientSecret: "fake-after"])), by: admin)
        #expect(try await fixture.store { try $0.dataKey(of: "a") }?.keyID == 2)
        try await vault.close()

        let reopened = try await fixture.open(createKeyIfMissing: false)
        #expect(try await decrypted(reopened, "a", .clientSecret) == "fake-after")
        #expect(try await decrypted(reopened, "b", .clientSecret) == "fake-shared")
        #expect(try await reopened.rotateMasterKey(by: admin).keyID == 3)
        #expect(try await decrypted(reopened, "rec", .recruitingToken) == "fake-recruiting-rec")
        #expect(try await reopened.verifyAudit().intact)
        try await reopened.close()
    }

    @Test func rotatingAnEmptyVault() async throws {
        try await VaultFixture.with { fixture, vault in
            #expect(try await vault.rotateMasterKey(by: admin) == KeyRotationResult(keyID: 2, rewrappedDataKeys: 0))
            _ = try await vault.create(v2Request("acme"), by: admin)
            #expect(try await fixture.store { try $0.dataKey(of: "acme") }?.keyID == 2)
            #expect(try await decrypted(vault, "acme", .clientSecret) == "fake-secret-acme")
        }
    }

    /// A rotation that committed in the database but stopped before renaming `<key>.new` over the key file.
    @Test func aStagedKeyFromAnInterruptedRotationIsAdoptedOnOpen() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        _ = try await vault.create(v2Request("acme"), by: admin)
        let oldKey = try KeyFile.load(path: fixture.keyFilePath)
        _ = try await vault.rotateMasterKey(by: admin)
        try await vault.close()
        let newKey = try fixture.masterKey(id: 2)

        // Put the files back the way the crash left them: old key in place, new key staged.
        #expect(rename(fixture.keyFilePath, fixture.stagedKeyPath) == 0)
        try KeyFile.create(path: fixture.keyFilePath, key: MasterKey(id: 1, key: oldKey))

        let reopened = try await fixture.open(createKeyIfMissing: false)
        #expect(try await decrypted(reopened, "acme", .clientSecret) == "fake-secret-acme")
        #expect(try fixture.masterKey(id: 2).checkValue == newKey.checkValue, "the staged key was renamed into place")
        #expect(access(fixture.stagedKeyPath, F_OK) != 0)
        #expect(fixture.logs.lines.contains { $0.contains("finished an interrupted master key rotation") })
        try await reopened.close()
    }

    /// A rotation that stopped before its database commit leaves a staged key the database never used.
    @Test func aStaleStagedKeyIsDiscardedOnOpen() async throws {
        let fixture = try VaultFixture()
        defer { fixture.directory.remove() }
        let vault = try await fixture.open()
        _ = try await vault.create(v2Request("acme"), by: admin)
        try await vault.close()
        try KeyFile.stage(path: fixture.keyFilePath, key: MasterKey.generate(id: 2))
        let reopened = try await fixture.open(createKeyIfMissing: false)
        #expect(access(fixture.stagedKeyPath, F_OK) != 0)
        #expect(try await decrypted(reopened, "acme", .clientSecret) == "fake-secret-acme")
        #expect(try await reopened.status().masterKeyID == 1)
        try await reopened.close()
    }
}
