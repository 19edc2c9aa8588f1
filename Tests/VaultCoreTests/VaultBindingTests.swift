import Testing
import VaultAPI
import VaultCore
import VaultCrypto
import VaultStore
import VaultTestSupport

/// Ciphertexts and data keys copied around inside the database file must not decrypt (DESIGN §3, binding).
@Suite struct VaultBindingTests {
    static func setSecret(_ id: String, _ field: String, from record: SecretRecord, revision: Int64? = nil) -> String {
        """
        UPDATE secrets SET nonce = \(blob(record.nonce)), ciphertext = \(blob(record.ciphertext)), alg = \(record.algorithm)
            \(revision.map { ", revision = \($0)" } ?? "") WHERE connection_id = '\(id)' AND field = '\(field)'
        """
    }

    static func setDataKey(_ id: String, from record: DataKeyRecord, revision: Int64) -> String {
        """
        UPDATE data_keys SET nonce = \(blob(record.nonce)), wrapped = \(blob(record.wrapped)), alg = \(record.algorithm),
            key_id = \(record.keyID), revision = \(revision) WHERE connection_id = '\(id)'
        """
    }

    /// Two connections of the same provider, whose records the tests move between each other.
    static func withPair(_ body: (VaultFixture, Vault) async throws -> Void) async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(v2Request("a", clientID: "fake-id-a", clientSecret: "fake-secret-a"), by: admin)
            _ = try await vault.create(v2Request("b", clientID: "fake-id-b", clientSecret: "fake-secret-b"), by: admin)
            try await body(fixture, vault)
        }
    }

    @Test func aCiphertextMovedToAnotherConnectionFails() async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                let source = try #require(try tx.secrets(of: "a").first { $0.field == "client_secret" })
                try tx.executeForTesting(Self.setSecret("b", "client_secret", from: source))
            }
            let error = await #expect(throws: VaultError.self) { try await vault.credentials("b") }
            #expect(error?.code == .decryptionFailed)
            #expect(try await decrypted(vault, "a", .clientSecret) == "fake-secret-a")
        }
    }

    @Test func aCiphertextMovedToAnotherFieldFails() async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                let source = try #require(try tx.secrets(of: "a").first { $0.field == "client_id" })
                try tx.executeForTesting(Self.setSecret("a", "client_secret", from: source))
            }
            await #expect(throws: VaultError(.decryptionFailed, "")) { try await vault.credentials("a") }
        }
    }

    @Test func aDataKeyMovedToAnotherConnectionFails() async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                let source = try #require(try tx.dataKey(of: "a"))
                try tx.executeForTesting(Self.setDataKey("b", from: source, revision: 1))
            }
            await #expect(throws: VaultError(.decryptionFailed, "")) { try await vault.credentials("b") }
        }
    }

    /// The old revision's rows, written back over the new ones, whether relabelled with the current revision or not.
    @Test(arguments: [false, true])
    func anOldRevisionReplayedFails(relabel: Bool) async throws {
        try await Self.withPair { fixture, vault in
            let (oldSecrets, oldKey) = try await fixture.store { tx in
                (try tx.secrets(of: "a"), try tx.dataKey(of: "a"))
            }
            _ = try await vault.edit(
                "a",
                EditConnectionRequest(secrets: secrets([.clientSecret: "fake-secret-a2"])),
                by: admin
            )
            try await fixture.store { tx in
                let revision: Int64 = relabel ? 2 : 1
                try tx.executeForTesting(Self.setDataKey("a", from: try #require(oldKey), revision: revision))
                for record in oldSecrets {
                    try tx.executeForTesting(Self.setSecret("a", record.field, from: record, revision: revision))
                }
            }
            await #expect(throws: VaultError(.decryptionFailed, "")) { try await vault.credentials("a") }
        }
    }

    /// Only the ciphertext replayed: the current data key does not open it.
    @Test func anOldCiphertextUnderTheCurrentDataKeyFails() async throws {
        try await Self.withPair { fixture, vault in
            let old = try await fixture.store { tx in
                try #require(try tx.secrets(of: "a").first { $0.field == "client_secret" })
            }
            _ = try await vault.edit(
                "a",
                EditConnectionRequest(secrets: secrets([.webhookToken: "fake-hook"])),
                by: admin
            )
            try await fixture.store { tx in try tx.executeForTesting(Self.setSecret("a", "client_secret", from: old)) }
            await #expect(throws: VaultError(.decryptionFailed, "")) { try await vault.credentials("a") }
        }
    }

    @Test(arguments: ["nonce", "ciphertext", "tag", "wrapped data key"])
    func aFlippedBitInTheDatabaseFails(part: String) async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                var secret = try #require(try tx.secrets(of: "a").first { $0.field == "client_secret" })
                var key = try #require(try tx.dataKey(of: "a"))
                switch part {
                case "nonce": secret.nonce[0] ^= 0x01
                case "ciphertext": secret.ciphertext[0] ^= 0x01
                case "tag": secret.ciphertext[secret.ciphertext.count - 1] ^= 0x80
                default: key.wrapped[5] ^= 0x10
                }
                try tx.executeForTesting(Self.setSecret("a", "client_secret", from: secret))
                try tx.executeForTesting(Self.setDataKey("a", from: key, revision: 1))
            }
            await #expect(throws: VaultError(.decryptionFailed, "")) { try await vault.credentials("a") }
            #expect(try await decrypted(vault, "b", .clientSecret) == "fake-secret-b")
        }
    }

    @Test func aDataKeyWrappedByAnUnknownMasterKeyFails() async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                try tx.executeForTesting(
                    "INSERT INTO master_keys (id, created_at, state, check_value) VALUES (7, 'x', 'retired', X'00')"
                )
                try tx.executeForTesting("UPDATE data_keys SET key_id = 7 WHERE connection_id = 'a'")
            }
            let error = await #expect(throws: VaultError.self) { try await vault.credentials("a") }
            #expect(error?.code == .decryptionFailed)
            #expect(error?.message.contains("master key 7") == true)
        }
    }

    @Test func anUnknownAlgorithmIDInTheDatabaseIsAClearError() async throws {
        try await Self.withPair { fixture, vault in
            try await fixture.store { tx in
                try tx.executeForTesting(
                    "UPDATE secrets SET alg = 42 WHERE connection_id = 'a' AND field = 'client_secret'"
                )
            }
            let error = await #expect(throws: VaultError.self) { try await vault.credentials("a") }
            #expect(error?.code == .decryptionFailed)
            #expect(error?.message.contains("unknown algorithm id 42") == true)
            // The masked view needs no decryption and still works.
            #expect(try await vault.view("a").secrets["client_secret"]?.set == true)
        }
    }
}
