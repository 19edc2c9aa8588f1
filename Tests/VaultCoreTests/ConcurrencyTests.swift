import TestSupport
import Testing
import VaultAPI
import VaultCore
import VaultCrypto
import VaultStore
import VaultTestSupport

@Suite struct ConcurrencyTests {
    /// A caller's task cancelled before its store access: the store did not fail, so neither `storage_failed` nor an
    /// error-level "store … failed" line, and a cancelled change is not made.
    @Test func aCancelledTaskGetsCancellationNotAStorageFailure() async throws {
        try await VaultFixture.with { fixture, vault in
            _ = try await vault.create(v2Request("acme", clientSecret: "fake-acme-secret"), by: admin)
            let read = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await vault.view("acme")
            }
            await #expect(throws: CancellationError.self) { _ = try await read.value }
            let write = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await vault.disable("acme", reason: "cancelled", by: admin)
            }
            await #expect(throws: CancellationError.self) { _ = try await write.value }
            #expect(try await vault.view("acme").state == .active)
            let failures = fixture.logs.lines.filter {
                $0.contains("store read failed") || $0.contains("store write failed")
            }
            #expect(failures.isEmpty, "\(failures)")
        }
    }

    /// 32 edits of different connections race a master key rotation; all succeed, and everything still decrypts.
    @Test func concurrentEditsAndARotation() async throws {
        try await VaultFixture.with { fixture, vault in
            let ids = (0..<32).map { "conn-\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in ids {
                    group.addTask {
                        _ = try await vault.create(v2Request(id, clientSecret: "fake-\(id)-v1"), by: admin)
                    }
                }
                try await group.waitForAll()
            }

            let rotation = try await withThrowingTaskGroup(of: KeyRotationResult?.self) { group in
                for (index, id) in ids.enumerated() {
                    if index == ids.count / 2 {
                        group.addTask { try await vault.rotateMasterKey(by: admin) }
                    }
                    group.addTask {
                        let view = try await vault.edit(
                            id,
                            EditConnectionRequest(secrets: secrets([.clientSecret: "fake-\(id)-v2"])),
                            by: admin
                        )
                        #expect(view.revision == 2)
                        return nil
                    }
                }
                var rotation: KeyRotationResult?
                for try await result in group where result != nil { rotation = result }
                return rotation
            }
            #expect(rotation?.keyID == 2)
            #expect(rotation?.rewrappedDataKeys == 32)

            let key = try fixture.masterKey(id: 2)
            for id in ids {
                let credentials = try await vault.credentials(id)
                #expect(credentials.snapshot.revision == 2)
                #expect(text(credentials.secrets[.clientSecret]) == "fake-\(id)-v2")
                #expect(text(credentials.secrets[.clientID]) == "fake-client-id")
                let view = try await vault.view(id)
                #expect(view.secrets["client_secret"]?.fingerprint == key.fingerprint(of: secretBytes("fake-\(id)-v2")))
            }
            let dataKeys = try await fixture.store { try $0.dataKeys() }
            #expect(dataKeys.count == 32)
            #expect(dataKeys.allSatisfy { $0.keyID == 2 && $0.revision == 2 })
            let verification = try await vault.verifyAudit()
            #expect(verification.intact)
            #expect(verification.entries == 1 + 32 + 32 + 1)
            #expect(try await vault.integrityCheck() == "ok")
        }
    }

    /// Reads (as the token broker makes them) keep working while connections change.
    @Test func credentialsReadsDuringChanges() async throws {
        try await VaultFixture.with { _, vault in
            _ = try await vault.create(v2Request("hot", clientSecret: "fake-0"), by: admin)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for n in 1...8 {
                        _ = try await vault.edit(
                            "hot",
                            EditConnectionRequest(secrets: secrets([.clientSecret: "fake-\(n)"])),
                            by: admin
                        )
                    }
                    _ = try await vault.rotateMasterKey(by: admin)
                }
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<25 {
                            let credentials = try await vault.credentials("hot")
                            let value = try #require(text(credentials.secrets[.clientSecret]))
                            #expect(value == "fake-\(credentials.snapshot.revision - 1)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await decrypted(vault, "hot", .clientSecret) == "fake-8")
        }
    }
}
