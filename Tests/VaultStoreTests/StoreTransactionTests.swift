import Testing
import VaultStore

@Suite struct StoreTransactionTests {
    @Test func connectionsInsertUpdateAndCount() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.insertConnection(Sample.connection("b"))
                try tx.insertConnection(Sample.connection("a", state: "disabled"))
                try tx.insertConnection(Sample.connection("c", state: "needs_reset"))
                try tx.insertConnection(Sample.connection("d"))
                var updated = Sample.connection("b", revision: 2)
                updated.lastError = "fake upstream error"
                updated.disabledReason = "fake reason"
                updated.updatedAt = "2025-02-02T00:00:00Z"
                try tx.updateConnection(updated)
            }
            let (all, b, missing, counts) = try await database.read { tx in
                (
                    try tx.connections(), try tx.connection("b"), try tx.connection("zzz"),
                    try tx.connectionCountsByState()
                )
            }
            #expect(all.map(\.id) == ["a", "b", "c", "d"])
            #expect(b?.revision == 2)
            #expect(b?.lastError == "fake upstream error")
            #expect(b?.disabledReason == "fake reason")
            #expect(b?.updatedAt == "2025-02-02T00:00:00Z")
            #expect(b?.createdAt == "2025-01-01T00:00:00Z")
            #expect(missing == nil)
            #expect(counts == ["active": 2, "disabled": 1, "needs_reset": 1])
        }
    }

    @Test(arguments: ["bogus", "", "ACTIVE"])
    func invalidStatesAreRefusedByTheSchema(state: String) async throws {
        try await StoreFixture.with { _, database in
            await #expect(throws: (any Error).self) {
                try await database.write { try $0.insertConnection(Sample.connection("a", state: state)) }
            }
        }
    }

    @Test func duplicateConnectionsAreRefused() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { try $0.insertConnection(Sample.connection("a")) }
            await #expect(throws: (any Error).self) {
                try await database.write { try $0.insertConnection(Sample.connection("a")) }
            }
        }
    }

    @Test func secretsAreReplacedAsAWhole() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try Sample.insertFull(tx, "acme")
                try tx.replaceSecrets(of: "acme", with: [Sample.secret("acme", field: "client_secret", revision: 2)])
                try tx.updateFingerprint(of: "acme", field: "client_secret", fingerprint: "ffeeddccbbaa9988")
            }
            let secrets = try await database.read { try $0.secrets(of: "acme") }
            #expect(secrets.count == 1)
            var expected = Sample.secret("acme", field: "client_secret", revision: 2)
            expected.fingerprint = "ffeeddccbbaa9988"
            #expect(secrets == [expected])
        }
    }

    @Test func aDataKeyPerConnectionReplacedOnPut() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try tx.activateMasterKey(Sample.masterKey(2))
                try Sample.insertFull(tx, "acme")
                try Sample.insertFull(tx, "beta")
                var next = Sample.dataKey("acme", revision: 2, keyID: 2)
                next.wrapped = [UInt8](repeating: 9, count: 48)
                try tx.putDataKey(next)
            }
            let (acme, all) = try await database.read { tx in (try tx.dataKey(of: "acme"), try tx.dataKeys()) }
            #expect(acme?.revision == 2)
            #expect(acme?.keyID == 2)
            #expect(acme?.wrapped == [UInt8](repeating: 9, count: 48))
            #expect(all.map(\.connectionID) == ["acme", "beta"])
            #expect(try await database.read { try $0.dataKey(of: "nobody") } == nil)
        }
    }

    @Test func deletingAConnectionRemovesItsSecretsDataKeyAndGrantsButNotTheAudit() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try Sample.insertFull(tx, "acme")
                try Sample.insertFull(tx, "beta")
                try tx.appendAudit(Sample.audit(1, connection: "acme"))
                try tx.deleteConnection("acme")
            }
            let (connection, secrets, dataKey, grants, audit, beta) = try await database.read { tx in
                (
                    try tx.connection("acme"), try tx.secrets(of: "acme"), try tx.dataKey(of: "acme"),
                    try tx.grants(of: "acme"), try tx.audit(connection: "acme", since: nil, limit: 10),
                    try tx.secrets(of: "beta")
                )
            }
            #expect(connection == nil)
            #expect(secrets.isEmpty)
            #expect(dataKey == nil)
            #expect(grants.isEmpty)
            #expect(audit.count == 1)
            #expect(beta.count == 2)
        }
    }

    @Test func grantsAreDeduplicatedAndOrdered() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.insertConnection(Sample.connection("acme"))
                try tx.replaceGrants(
                    of: "acme",
                    with: [
                        GrantRecord(kind: .unit, value: "b.service"), GrantRecord(kind: .uid, value: "1000"),
                        GrantRecord(kind: .group, value: "hr"), GrantRecord(kind: .unit, value: "a.service"),
                        GrantRecord(kind: .uid, value: "1000"),
                    ]
                )
            }
            #expect(
                try await database.read { try $0.grants(of: "acme") } == [
                    GrantRecord(kind: .group, value: "hr"), GrantRecord(kind: .uid, value: "1000"),
                    GrantRecord(kind: .unit, value: "a.service"), GrantRecord(kind: .unit, value: "b.service"),
                ]
            )
            try await database.write { try $0.replaceGrants(of: "acme", with: []) }
            #expect(try await database.read { try $0.grants(of: "acme") }.isEmpty)
        }
    }

    @Test func oneActiveMasterKeyAtATime() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try tx.activateMasterKey(Sample.masterKey(1))
                try tx.activateMasterKey(Sample.masterKey(2))
            }
            let (keys, active) = try await database.read { tx in (try tx.masterKeys(), try tx.activeMasterKey()) }
            #expect(keys.map(\.id) == [1, 2])
            #expect(keys.map(\.state) == ["retired", "active"])
            #expect(active?.id == 2)
            #expect(active?.checkValue == [UInt8](repeating: 2, count: 16))
        }
    }

    @Test func anEmptyStoreHasNoActiveKey() async throws {
        try await StoreFixture.with { _, database in
            let active = try await database.read { try $0.activeMasterKey() }
            let keys = try database.writeNow { try $0.masterKeys() }
            #expect(active == nil)
            #expect(keys.isEmpty)
        }
    }
}
