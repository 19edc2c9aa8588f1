import Foundation
import GRDB
import TestSupport
import Testing

@testable import VaultStore

/// The GRDB records read what the hand-written row mapping wrote, and write what it wrote: a vault file made before
/// the records opens and reads back field by field, and rows the records write have the same column types
/// (BLOB stays BLOB, never the JSON array `Codable` would make of `[UInt8]`).
@Suite struct RecordCompatibilityTests {
    static let time = "2025-01-01T00:00:00Z"

    /// The rows as the code before the records bound them: raw SQL, blobs as `Data`.
    static func writeAsBefore(_ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO master_keys (id, created_at, state, check_value) VALUES (?, ?, 'active', ?)",
            arguments: [1, Self.time, Data([0xC0, 0xFF, 0xEE])]
        )
        try db.execute(
            sql: """
                INSERT INTO connections (id, provider, settings, state, revision, disabled_reason, last_error, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                "acme", "personio-v2", #"{"scope":"CANARY"}"#, "disabled", 3, "admin", "CANARY-last-error",
                Self.time, "2025-01-02T00:00:00Z",
            ]
        )
        try db.execute(
            sql: """
                INSERT INTO connections (id, provider, settings, state, revision, disabled_reason, last_error, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: ["beta", "personio-v1", "{}", "active", 1, nil, nil, Self.time, Self.time]
        )
        try db.execute(
            sql: """
                INSERT INTO secrets (connection_id, field, revision, alg, nonce, ciphertext, fingerprint, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                "acme", "client_secret", 3, 2, Data(repeating: 1, count: 24), Data("CANARY-ciphertext".utf8),
                "00112233aabbccdd", Self.time,
            ]
        )
        try db.execute(
            sql:
                "INSERT INTO data_keys (connection_id, revision, key_id, alg, nonce, wrapped) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: ["acme", 3, 1, 2, Data(repeating: 2, count: 24), Data(repeating: 3, count: 48)]
        )
        for (kind, value) in [("unit", "app.service"), ("uid", "1000"), ("group", "payroll")] {
            try db.execute(
                sql: "INSERT INTO grants (connection_id, kind, value) VALUES (?, ?, ?)",
                arguments: ["acme", kind, value]
            )
        }
        var previous = [UInt8](repeating: 0, count: 32)
        for (seq, entry) in Self.auditEntries.enumerated() {
            let record = AuditRecord(seq: Int64(seq + 1), entry: entry, prevHash: previous, hash: [])
            let hash = testChainHash(previous + StoreTransaction.canonical(record))
            try db.execute(
                sql: """
                    INSERT INTO audit (seq, time, actor_uid, actor_pid, actor_comm, actor_unit, action, connection_id, outcome, detail, prev_hash, hash)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    record.seq, entry.time, entry.actorUID, entry.actorPID, entry.actorComm, entry.actorUnit,
                    entry.action, entry.connectionID, entry.outcome, entry.detail, Data(previous), Data(hash),
                ]
            )
            previous = hash
        }
        try db.execute(
            sql: """
                INSERT INTO issued_tokens (id, connection_id, revision, api, state, settings, expires_at, key_id,
                    dek_alg, dek_nonce, dek_wrapped, alg, nonce, ciphertext, attempts, next_attempt_at, last_error,
                    created_at, withdrawn_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                7, "acme", 3, "v2", "pending", #"{"api_base_url":"http://127.0.0.1:1"}"#, 2_000_000_000, 1, 1,
                Data([1, 2, 3]), Data([4, 5, 6]), 1, Data([7, 8, 9]), Data("CANARY-token-ciphertext".utf8), 2,
                1_700_000_123.5, "CANARY-revoke-error", Self.time, "2025-01-03T00:00:00Z",
            ]
        )
    }

    static let auditEntries = [
        NewAuditEntry(
            time: Self.time,
            actorUID: 0,
            actorPID: 4001,
            actorComm: "connvaultctl",
            actorUnit: "admin.service",
            action: "connection.add",
            connectionID: "acme",
            outcome: "ok",
            detail: "revision 1"
        ),
        NewAuditEntry(
            time: "2025-01-01T00:00:01Z",
            actorUID: 1000,
            actorPID: 4002,
            actorComm: "app",
            actorUnit: nil,
            action: "daemon.start",
            connectionID: nil,
            outcome: "ok",
            detail: ""
        ),
    ]

    /// Migrates a fresh file with the store, then fills it with the old statements through a plain GRDB queue.
    static func oldFile(_ fixture: StoreFixture) async throws {
        try fixture.open().close()
        let queue = try DatabaseQueue(path: fixture.path)
        try await queue.write { db in try Self.writeAsBefore(db) }
        try queue.close()
    }

    @Test func aFileWrittenBeforeTheRecordsReadsBackFieldByField() async throws {
        let fixture = try StoreFixture()
        defer { fixture.directory.remove() }
        try await Self.oldFile(fixture)
        let database = try fixture.open()
        defer { try? database.close() }
        let read = try await database.read { tx in
            (
                keys: try tx.masterKeys(), connections: try tx.connections(), acme: try tx.connection("acme"),
                secrets: try tx.secrets(of: "acme"), dataKey: try tx.dataKey(of: "acme"),
                grants: try tx.grants(of: "acme"),
                audit: try tx.audit(connection: nil, since: nil, limit: 10), chain: try tx.verifyAuditChain(),
                tokens: try tx.issuedTokens()
            )
        }
        #expect(
            read.keys == [
                MasterKeyRecord(id: 1, createdAt: Self.time, state: "active", checkValue: [0xC0, 0xFF, 0xEE])
            ]
        )
        let acme = ConnectionRecord(
            id: "acme",
            provider: "personio-v2",
            settingsJSON: #"{"scope":"CANARY"}"#,
            state: "disabled",
            revision: 3,
            disabledReason: "admin",
            lastError: "CANARY-last-error",
            createdAt: Self.time,
            updatedAt: "2025-01-02T00:00:00Z"
        )
        let beta = ConnectionRecord(
            id: "beta",
            provider: "personio-v1",
            settingsJSON: "{}",
            state: "active",
            revision: 1,
            createdAt: Self.time,
            updatedAt: Self.time
        )
        #expect(read.acme == acme)
        #expect(read.connections == [acme, beta])
        #expect(read.acme?.disabledReason == "admin")
        #expect(read.connections.last?.disabledReason == nil)
        #expect(
            read.secrets == [
                SecretRecord(
                    connectionID: "acme",
                    field: "client_secret",
                    revision: 3,
                    algorithm: 2,
                    nonce: [UInt8](repeating: 1, count: 24),
                    ciphertext: Array("CANARY-ciphertext".utf8),
                    fingerprint: "00112233aabbccdd",
                    updatedAt: Self.time
                )
            ]
        )
        #expect(
            read.dataKey
                == DataKeyRecord(
                    connectionID: "acme",
                    revision: 3,
                    keyID: 1,
                    algorithm: 2,
                    nonce: [UInt8](repeating: 2, count: 24),
                    wrapped: [UInt8](repeating: 3, count: 48)
                )
        )
        #expect(
            read.grants == [
                GrantRecord(kind: .group, value: "payroll"), GrantRecord(kind: .uid, value: "1000"),
                GrantRecord(kind: .unit, value: "app.service"),
            ]
        )
        #expect(read.audit.map(\.entry) == Self.auditEntries)
        #expect(read.audit.map(\.seq) == [1, 2])
        #expect(read.audit.first?.prevHash == [UInt8](repeating: 0, count: 32))
        #expect(read.audit.last?.prevHash == read.audit.first?.hash)
        #expect(read.chain.brokenAt == nil)
        #expect(read.chain.entries == 2)
        #expect(
            read.tokens == [
                IssuedTokenRecord(
                    id: 7,
                    connectionID: "acme",
                    revision: 3,
                    api: "v2",
                    state: .pending,
                    settingsJSON: #"{"api_base_url":"http://127.0.0.1:1"}"#,
                    expiresAt: 2_000_000_000,
                    keyID: 1,
                    dataKeyAlgorithm: 1,
                    dataKeyNonce: [1, 2, 3],
                    wrappedDataKey: [4, 5, 6],
                    algorithm: 1,
                    nonce: [7, 8, 9],
                    ciphertext: Array("CANARY-token-ciphertext".utf8),
                    attempts: 2,
                    nextAttemptAt: 1_700_000_123.5,
                    lastError: "CANARY-revoke-error",
                    createdAt: Self.time,
                    withdrawnAt: "2025-01-03T00:00:00Z"
                )
            ]
        )
    }

    /// `typeof()` of every column of every table, row by row, in primary key order.
    static func columnTypes(_ path: String) async throws -> [String: [[String]]] {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        return try await queue.read { db in
            var types: [String: [[String]]] = [:]
            for table in ["master_keys", "connections", "secrets", "data_keys", "grants", "audit", "issued_tokens"] {
                let columns = try db.columns(in: table).map(\.name)
                let select = columns.map { "typeof(\($0))" }.joined(separator: ", ")
                let key = try db.primaryKey(table).columns.joined(separator: ", ")
                types[table] = try Row.fetchAll(db, sql: "SELECT \(select) FROM \(table) ORDER BY \(key)").map { row in
                    row.databaseValues.map { String.fromDatabaseValue($0) ?? "?" }
                }
            }
            return types
        }
    }

    @Test func theRecordsWriteTheColumnTypesTheOldStatementsWrote() async throws {
        let old = try StoreFixture()
        defer { old.directory.remove() }
        try await Self.oldFile(old)
        let records = try await Self.columnTypes(old.path)
        #expect(records["secrets"]?.first?.contains("blob") == true)

        // The same rows, read through the records from the old file and written through them into a new one.
        let source = try old.open()
        let rows = try await source.read { tx in
            (
                keys: try tx.masterKeys(), connections: try tx.connections(), secrets: try tx.secrets(of: "acme"),
                dataKey: try tx.dataKey(of: "acme"), grants: try tx.grants(of: "acme"),
                audit: try tx.audit(connection: nil, since: nil, limit: 10), tokens: try tx.issuedTokens()
            )
        }
        try source.close()
        let new = try StoreFixture()
        defer { new.directory.remove() }
        let target = try new.open()
        try await target.write { tx in
            for key in rows.keys { try tx.activateMasterKey(key) }
            for connection in rows.connections { try tx.insertConnection(connection) }
            try tx.replaceSecrets(of: "acme", with: rows.secrets)
            if let dataKey = rows.dataKey { try tx.putDataKey(dataKey) }
            try tx.replaceGrants(of: "acme", with: rows.grants)
            for record in rows.audit { try tx.appendAudit(record.entry) }
            for token in rows.tokens { try tx.insertIssuedToken(token) }
        }
        let rewritten = try await target.read { tx in try tx.audit(connection: nil, since: nil, limit: 10) }
        try target.close()
        #expect(rewritten == rows.audit)
        #expect(try await Self.columnTypes(new.path) == records)
    }

    @Test func anUpdateLeavesCreatedAtAndAMissingRowAlone() async throws {
        try await StoreFixture.with { _, database in
            try await database.write { tx in try tx.insertConnection(Sample.connection("acme")) }
            var edited = Sample.connection("acme", state: "disabled", revision: 2)
            edited.createdAt = "2030-01-01T00:00:00Z"
            edited.updatedAt = "2030-01-01T00:00:00Z"
            let changed = edited
            try await database.write { tx in
                try tx.updateConnection(changed)
                try tx.updateConnection(Sample.connection("nobody"))
            }
            let stored = try await database.read { tx in (try tx.connection("acme"), try tx.connection("nobody")) }
            #expect(stored.0?.createdAt == Sample.connection("acme").createdAt)
            #expect(stored.0?.updatedAt == "2030-01-01T00:00:00Z")
            #expect(stored.0?.state == "disabled")
            #expect(stored.0?.revision == 2)
            #expect(stored.1 == nil)
        }
    }
}
