import Foundation
import GRDB

/// Typed access to the vault's tables inside one transaction (or read). Created by `VaultDatabase` only.
public struct StoreTransaction {
    let db: Database
    let chainHash: @Sendable ([UInt8]) -> [UInt8]

    // MARK: - Master keys

    public func masterKeys() throws -> [MasterKeyRecord] {
        try Row.fetchAll(self.db, sql: "SELECT id, created_at, state, check_value FROM master_keys ORDER BY id").map {
            MasterKeyRecord(
                id: $0["id"],
                createdAt: $0["created_at"],
                state: $0["state"],
                checkValue: Self.bytes($0["check_value"])
            )
        }
    }

    public func activeMasterKey() throws -> MasterKeyRecord? {
        try self.masterKeys().first { $0.state == "active" }
    }

    /// Inserts `record` as the active key and retires the one before.
    public func activateMasterKey(_ record: MasterKeyRecord) throws {
        try self.db.execute(sql: "UPDATE master_keys SET state = 'retired' WHERE state = 'active'")
        try self.db.execute(
            sql: "INSERT INTO master_keys (id, created_at, state, check_value) VALUES (?, ?, 'active', ?)",
            arguments: [record.id, record.createdAt, Data(record.checkValue)]
        )
    }

    // MARK: - Connections

    public func connection(_ id: String) throws -> ConnectionRecord? {
        try Row.fetchOne(self.db, sql: "SELECT * FROM connections WHERE id = ?", arguments: [id]).map(Self.connection)
    }

    public func connections() throws -> [ConnectionRecord] {
        try Row.fetchAll(self.db, sql: "SELECT * FROM connections ORDER BY id").map(Self.connection)
    }

    public func insertConnection(_ record: ConnectionRecord) throws {
        try self.db.execute(
            sql: """
                INSERT INTO connections (id, provider, settings, state, revision, disabled_reason, last_error, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                record.id, record.provider, record.settingsJSON, record.state, record.revision, record.disabledReason,
                record.lastError, record.createdAt, record.updatedAt,
            ]
        )
    }

    public func updateConnection(_ record: ConnectionRecord) throws {
        try self.db.execute(
            sql: """
                UPDATE connections SET provider = ?, settings = ?, state = ?, revision = ?, disabled_reason = ?,
                    last_error = ?, updated_at = ? WHERE id = ?
                """,
            arguments: [
                record.provider, record.settingsJSON, record.state, record.revision, record.disabledReason,
                record.lastError, record.updatedAt, record.id,
            ]
        )
    }

    /// Deletes a connection with its secrets, data key and grants.
    public func deleteConnection(_ id: String) throws {
        try self.db.execute(sql: "DELETE FROM connections WHERE id = ?", arguments: [id])
    }

    public func connectionCountsByState() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try Row.fetchAll(self.db, sql: "SELECT state, COUNT(*) AS n FROM connections GROUP BY state") {
            counts[row["state"]] = row["n"]
        }
        return counts
    }

    // MARK: - Secrets and data keys

    public func secrets(of id: String) throws -> [SecretRecord] {
        try Row.fetchAll(self.db, sql: "SELECT * FROM secrets WHERE connection_id = ? ORDER BY field", arguments: [id])
            .map {
                SecretRecord(
                    connectionID: $0["connection_id"],
                    field: $0["field"],
                    revision: $0["revision"],
                    algorithm: $0["alg"],
                    nonce: Self.bytes($0["nonce"]),
                    ciphertext: Self.bytes($0["ciphertext"]),
                    fingerprint: $0["fingerprint"],
                    updatedAt: $0["updated_at"]
                )
            }
    }

    /// Replaces every secret of a connection with `records` (all of one new revision).
    public func replaceSecrets(of id: String, with records: [SecretRecord]) throws {
        try self.db.execute(sql: "DELETE FROM secrets WHERE connection_id = ?", arguments: [id])
        for record in records {
            try self.db.execute(
                sql: """
                    INSERT INTO secrets (connection_id, field, revision, alg, nonce, ciphertext, fingerprint, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    record.connectionID, record.field, record.revision, record.algorithm, Data(record.nonce),
                    Data(record.ciphertext), record.fingerprint, record.updatedAt,
                ]
            )
        }
    }

    public func updateFingerprint(of id: String, field: String, fingerprint: String) throws {
        try self.db.execute(
            sql: "UPDATE secrets SET fingerprint = ? WHERE connection_id = ? AND field = ?",
            arguments: [fingerprint, id, field]
        )
    }

    public func dataKey(of id: String) throws -> DataKeyRecord? {
        try Row.fetchOne(self.db, sql: "SELECT * FROM data_keys WHERE connection_id = ?", arguments: [id]).map(
            Self.dataKey
        )
    }

    public func dataKeys() throws -> [DataKeyRecord] {
        try Row.fetchAll(self.db, sql: "SELECT * FROM data_keys ORDER BY connection_id").map(Self.dataKey)
    }

    /// Stores the data key of a connection's revision, destroying the previous one.
    public func putDataKey(_ record: DataKeyRecord) throws {
        try self.db.execute(
            sql: """
                INSERT INTO data_keys (connection_id, revision, key_id, alg, nonce, wrapped) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (connection_id) DO UPDATE SET revision = excluded.revision, key_id = excluded.key_id,
                    alg = excluded.alg, nonce = excluded.nonce, wrapped = excluded.wrapped
                """,
            arguments: [
                record.connectionID, record.revision, record.keyID, record.algorithm, Data(record.nonce),
                Data(record.wrapped),
            ]
        )
    }

    // MARK: - Grants

    public func grants(of id: String) throws -> [GrantRecord] {
        try Row.fetchAll(
            self.db,
            sql: "SELECT kind, value FROM grants WHERE connection_id = ? ORDER BY kind, value",
            arguments: [id]
        ).compactMap {
            guard let kind = GrantRecord.Kind(rawValue: $0["kind"]) else { return nil }
            return GrantRecord(kind: kind, value: $0["value"])
        }
    }

    public func replaceGrants(of id: String, with grants: [GrantRecord]) throws {
        try self.db.execute(sql: "DELETE FROM grants WHERE connection_id = ?", arguments: [id])
        for grant in Set(grants) {
            try self.db.execute(
                sql: "INSERT INTO grants (connection_id, kind, value) VALUES (?, ?, ?)",
                arguments: [id, grant.kind.rawValue, grant.value]
            )
        }
    }

    // MARK: - Audit

    /// Appends an audit row chained to the last one: `hash = H(prev_hash ‖ canonical row)`.
    @discardableResult
    public func appendAudit(_ entry: NewAuditEntry) throws -> AuditRecord {
        let last = try Row.fetchOne(self.db, sql: "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        let seq: Int64 = (last?["seq"] ?? 0) + 1
        let prevHash = last.map { Self.bytes($0["hash"]) } ?? [UInt8](repeating: 0, count: 32)
        var record = AuditRecord(seq: seq, entry: entry, prevHash: prevHash, hash: [])
        record.hash = self.chainHash(prevHash + Self.canonical(record))
        try self.db.execute(
            sql: """
                INSERT INTO audit (seq, time, actor_uid, actor_pid, actor_comm, actor_unit, action, connection_id, outcome, detail, prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                record.seq, record.time, record.actorUID, record.actorPID, record.actorComm, record.actorUnit,
                record.action, record.connectionID, record.outcome, record.detail, Data(record.prevHash),
                Data(record.hash),
            ]
        )
        return record
    }

    /// Audit rows, oldest first, optionally of one connection and after `since`.
    public func audit(connection: String?, since: Int64?, limit: Int) throws -> [AuditRecord] {
        var sql = "SELECT * FROM audit WHERE seq > ?"
        var arguments: StatementArguments = [since ?? 0]
        if let connection {
            sql += " AND connection_id = ?"
            arguments += [connection]
        }
        sql += " ORDER BY seq LIMIT ?"
        arguments += [limit]
        return try Row.fetchAll(self.db, sql: sql, arguments: arguments).map(Self.audit)
    }

    public func auditCount() throws -> Int {
        try Int.fetchOne(self.db, sql: "SELECT COUNT(*) FROM audit") ?? 0
    }

    /// Walks the whole chain in order.
    public func verifyAuditChain() throws -> AuditChainReport {
        var previous = [UInt8](repeating: 0, count: 32)
        var expectedSeq: Int64 = 1
        var count = 0
        let cursor = try Row.fetchCursor(self.db, sql: "SELECT * FROM audit ORDER BY seq")
        while let row = try cursor.next() {
            let record = Self.audit(row)
            count += 1
            if record.seq != expectedSeq {
                return AuditChainReport(
                    entries: count,
                    head: previous,
                    brokenAt: record.seq,
                    reason: "row \(expectedSeq) is missing"
                )
            }
            if record.prevHash != previous {
                return AuditChainReport(
                    entries: count,
                    head: previous,
                    brokenAt: record.seq,
                    reason: "prev_hash does not match the row before"
                )
            }
            if self.chainHash(record.prevHash + Self.canonical(record)) != record.hash {
                return AuditChainReport(
                    entries: count,
                    head: previous,
                    brokenAt: record.seq,
                    reason: "row contents do not match its hash"
                )
            }
            previous = record.hash
            expectedSeq += 1
        }
        return AuditChainReport(entries: count, head: count == 0 ? nil : previous, brokenAt: nil, reason: nil)
    }

    /// Runs raw SQL; for tests that tamper with the file on purpose.
    public func executeForTesting(_ sql: String) throws { try self.db.execute(sql: sql) }

    // MARK: - Row mapping

    static func bytes(_ data: Data?) -> [UInt8] { data.map { [UInt8]($0) } ?? [] }

    static func connection(_ row: Row) -> ConnectionRecord {
        ConnectionRecord(
            id: row["id"],
            provider: row["provider"],
            settingsJSON: row["settings"],
            state: row["state"],
            revision: row["revision"],
            disabledReason: row["disabled_reason"],
            lastError: row["last_error"],
            createdAt: row["created_at"],
            updatedAt: row["updated_at"]
        )
    }

    static func dataKey(_ row: Row) -> DataKeyRecord {
        DataKeyRecord(
            connectionID: row["connection_id"],
            revision: row["revision"],
            keyID: row["key_id"],
            algorithm: row["alg"],
            nonce: Self.bytes(row["nonce"]),
            wrapped: Self.bytes(row["wrapped"])
        )
    }

    static func audit(_ row: Row) -> AuditRecord {
        AuditRecord(
            seq: row["seq"],
            entry: NewAuditEntry(
                time: row["time"],
                actorUID: row["actor_uid"],
                actorPID: row["actor_pid"],
                actorComm: row["actor_comm"],
                actorUnit: row["actor_unit"],
                action: row["action"],
                connectionID: row["connection_id"],
                outcome: row["outcome"],
                detail: row["detail"]
            ),
            prevHash: Self.bytes(row["prev_hash"]),
            hash: Self.bytes(row["hash"])
        )
    }

    /// Length-prefixed fields, so no two different rows encode alike.
    static func canonical(_ record: AuditRecord) -> [UInt8] {
        var out: [UInt8] = []
        func put(_ string: String?) {
            guard let string else {
                out.append(0)
                return
            }
            out.append(1)
            let bytes = Array(string.utf8)
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: bytes)
        }
        func put(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) } }
        put(record.seq)
        put(record.time)
        put(record.actorUID)
        put(record.actorPID)
        put(record.actorComm)
        put(record.actorUnit)
        put(record.action)
        put(record.connectionID)
        put(record.outcome)
        put(record.detail)
        return out
    }
}

/// The result of walking the audit chain.
public struct AuditChainReport: Sendable, Equatable {
    public var entries: Int
    /// The hash of the last intact row.
    public var head: [UInt8]?
    public var brokenAt: Int64?
    public var reason: String?
}
