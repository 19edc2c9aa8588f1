import Testing
import VaultStore

/// The `issued_tokens` table: what a lifecycle change does to a connection's rows, and what the revoker reads.
@Suite struct IssuedTokenStoreTests {
    static func row(
        _ id: Int64,
        connection: String = "acme",
        api: String = "v2",
        state: IssuedTokenRecord.State = .issued,
        expiresAt: Int64 = 2_000_000_000
    ) -> IssuedTokenRecord {
        IssuedTokenRecord(
            id: id,
            connectionID: connection,
            revision: 1,
            api: api,
            state: state,
            settingsJSON: "{}",
            expiresAt: expiresAt,
            keyID: 1,
            dataKeyAlgorithm: 1,
            dataKeyNonce: [1, 2, 3],
            wrappedDataKey: [4, 5, 6],
            algorithm: 1,
            nonce: [7, 8, 9],
            ciphertext: [10, 11, 12],
            createdAt: "2025-01-01T00:00:00Z"
        )
    }

    static func seed(_ tx: StoreTransaction) throws {
        try tx.activateMasterKey(
            MasterKeyRecord(id: 1, createdAt: "2025-01-01T00:00:00Z", state: "active", checkValue: [0])
        )
    }

    @Test func aWithdrawalMovesOnlyTheConnectionsIssuedRowsV2ToPendingV1ToUnrevocable() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try Self.seed(tx)
                try tx.insertIssuedToken(Self.row(1))
                try tx.insertIssuedToken(Self.row(2, api: "v1", expiresAt: 1_900_000_000))
                try tx.insertIssuedToken(Self.row(3, connection: "other"))
                #expect(try tx.nextIssuedTokenID() == 4)
                #expect(try tx.withdrawIssuedTokens(of: "acme", at: "2025-01-02T00:00:00Z") == 2)
                // Nothing left to move: a repeated withdrawal changes nothing.
                #expect(try tx.withdrawIssuedTokens(of: "acme", at: "2025-01-03T00:00:00Z") == 0)
            }
            try await database.read { tx in
                let rows = try tx.issuedTokens()
                #expect(rows.map(\.state) == [.pending, .unrevocable, .issued])
                #expect(rows[0].withdrawnAt == "2025-01-02T00:00:00Z")
                #expect(rows[2].withdrawnAt == nil)
                #expect(try tx.pendingRevocationCount(of: "acme") == 1)
                #expect(try tx.unrevocableUntil(of: "acme", now: 1_800_000_000) == 1_900_000_000)
                #expect(try tx.unrevocableUntil(of: "acme", now: 1_900_000_000) == nil)
                #expect(try tx.issuedTokens(of: "acme", state: .pending).map(\.id) == [1])
            }
        }
    }

    @Test func attemptsAreRecordedAndTheNextEventIsTheEarliestAttemptOrExpiry() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try Self.seed(tx)
                #expect(try tx.nextIssuedTokenEvent() == nil)
                try tx.insertIssuedToken(Self.row(1, state: .pending, expiresAt: 2_000_000_000))
                try tx.insertIssuedToken(Self.row(2, expiresAt: 1_950_000_000))
                #expect(try tx.nextIssuedTokenEvent() == 0)
                try tx.updateRevocationAttempt(1, attempts: 2, nextAttemptAt: 1_990_000_000.5, lastError: "HTTP 503")
                #expect(try tx.nextIssuedTokenEvent() == 1_950_000_000)
                let row = try #require(try tx.issuedTokens(state: .pending).first)
                #expect(row.attempts == 2)
                #expect(row.nextAttemptAt == 1_990_000_000.5)
                #expect(row.lastError == "HTTP 503")
                #expect(try tx.deleteIssuedToken(2))
                #expect(try !tx.deleteIssuedToken(2))
                #expect(try tx.nextIssuedTokenEvent() == 1_990_000_000.5)
                try tx.updateIssuedTokenKey(1, keyID: 1, algorithm: 2, nonce: [9], wrapped: [8])
                let rewrapped = try #require(try tx.issuedTokens().first)
                #expect(
                    rewrapped.dataKeyAlgorithm == 2 && rewrapped.dataKeyNonce == [9] && rewrapped.wrappedDataKey == [8]
                )
            }
        }
    }

    @Test func rowsOutliveTheirConnection() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in
                try Self.seed(tx)
                try tx.insertConnection(Sample.connection("acme"))
                try tx.insertIssuedToken(Self.row(1))
                try tx.withdrawIssuedTokens(of: "acme", at: "2025-01-02T00:00:00Z")
                try tx.deleteConnection("acme")
                #expect(try tx.issuedTokens(of: "acme").map(\.state) == [.pending])
            }
        }
    }
}
