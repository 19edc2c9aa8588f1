import Foundation
import GRDB

/// Typed access to the vault's tables inside one transaction (or read). Created by `VaultDatabase` only.
public struct StoreTransaction {
    let db: Database
    let chainHash: @Sendable ([UInt8]) -> [UInt8]

    // MARK: - Master keys

    public func masterKeys() throws -> [MasterKeyRecord] {
        try MasterKeyRecord.order(MasterKeyRecord.CodingKeys.id).fetchAll(self.db)
    }

    public func activeMasterKey() throws -> MasterKeyRecord? {
        try self.masterKeys().first { $0.state == "active" }
    }

    /// Inserts `record` as the active key and retires the one before.
    public func activateMasterKey(_ record: MasterKeyRecord) throws {
        try self.db.execute(sql: "UPDATE master_keys SET state = 'retired' WHERE state = 'active'")
        var active = record
        active.state = "active"
        try active.insert(self.db)
    }

    // MARK: - Connections

    public func connection(_ id: String) throws -> ConnectionRecord? {
        try ConnectionRecord.fetchOne(self.db, key: id)
    }

    public func connections() throws -> [ConnectionRecord] {
        try ConnectionRecord.order(ConnectionRecord.CodingKeys.id).fetchAll(self.db)
    }

    public func insertConnection(_ record: ConnectionRecord) throws {
        try record.insert(self.db)
    }

    /// Updates every column but `id` and `created_at`; a connection that is not there is left alone (no error).
    public func updateConnection(_ record: ConnectionRecord) throws {
        typealias Columns = ConnectionRecord.CodingKeys
        let columns: [Columns] = [
            .provider, .settingsJSON, .state, .revision, .disabledReason, .lastError, .updatedAt,
        ]
        do {
            try record.update(self.db, columns: columns)
        } catch RecordError.recordNotFound {
            return
        }
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
        typealias Columns = SecretRecord.CodingKeys
        return try SecretRecord.filter(Columns.connectionID == id).order(Columns.field).fetchAll(self.db)
    }

    /// Replaces every secret of a connection with `records` (all of one new revision).
    public func replaceSecrets(of id: String, with records: [SecretRecord]) throws {
        try self.db.execute(sql: "DELETE FROM secrets WHERE connection_id = ?", arguments: [id])
        for record in records {
            try record.insert(self.db)
        }
    }

    public func updateFingerprint(of id: String, field: String, fingerprint: String) throws {
        try self.db.execute(
            sql: "UPDATE secrets SET fingerprint = ? WHERE connection_id = ? AND field = ?",
            arguments: [fingerprint, id, field]
        )
    }

    public func dataKey(of id: String) throws -> DataKeyRecord? {
        try DataKeyRecord.fetchOne(self.db, key: id)
    }

    public func dataKeys() throws -> [DataKeyRecord] {
        try DataKeyRecord.order(DataKeyRecord.CodingKeys.connectionID).fetchAll(self.db)
    }

    /// Stores the data key of a connection's revision, destroying the previous one: an update of the connection's
    /// row, or an insert when it has none. (GRDB's `upsert` reads back `rowid`, which `data_keys`, a `WITHOUT ROWID`
    /// table, does not have.)
    public func putDataKey(_ record: DataKeyRecord) throws {
        try record.save(self.db)
    }

    // MARK: - Grants

    public func grants(of id: String) throws -> [GrantRecord] {
        try GrantRecord.filter(Column("connection_id") == id).order(Column("kind"), Column("value")).fetchAll(self.db)
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

    /// A connection's grant rules, in order.
    public func grantRules(of id: String) throws -> [GrantRuleRecord] {
        try GrantRuleRecord.filter(Column("connection_id") == id).order(Column("position")).fetchAll(self.db)
    }

    /// Replaces a connection's grant rules with `rules`, numbered in their order.
    public func replaceGrantRules(of id: String, with rules: [String]) throws {
        try self.db.execute(sql: "DELETE FROM grant_rules WHERE connection_id = ?", arguments: [id])
        for (position, rule) in rules.enumerated() {
            try self.db.execute(
                sql: "INSERT INTO grant_rules (connection_id, position, rule) VALUES (?, ?, ?)",
                arguments: [id, position, rule]
            )
        }
    }

    // MARK: - Audit

    /// Appends an audit row chained to the last one: `hash = H(prev_hash ‖ canonical row)`.
    /// - Throws: `StoreError` `.constraint` when a text field holds a NUL character: SQLite stores it, but the text
    ///   read back ends at the first NUL, so the row would never verify again (found by the store-records fuzz
    ///   target); the change it belongs to fails instead.
    @discardableResult
    public func appendAudit(_ entry: NewAuditEntry) throws -> AuditRecord {
        let texts = [entry.time, entry.actorComm, entry.actorUnit, entry.action, entry.connectionID, entry.outcome]
        guard !(texts + [entry.detail]).contains(where: { $0?.utf8.contains(0) ?? false }) else {
            throw StoreError(.constraint, "an audit entry must not contain a NUL character")
        }
        let last = try Row.fetchOne(self.db, sql: "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        let seq: Int64 = (last?["seq"] ?? 0) + 1
        let prevHash = last.map { Self.bytes($0["hash"]) } ?? [UInt8](repeating: 0, count: 32)
        var record = AuditRecord(seq: seq, entry: entry, prevHash: prevHash, hash: [])
        record.hash = self.chainHash(prevHash + Self.canonical(record))
        try record.insert(self.db)
        return record
    }

    /// Audit rows, oldest first, optionally of one connection, after `since` and written at or after `from` (an
    /// RFC 3339 UTC time as the rows store it, `2026-12-01T00:00:00Z`: such times order as their text does).
    public func audit(connection: String?, since: Int64?, from: String? = nil, limit: Int) throws -> [AuditRecord] {
        var request = AuditRecord.filter(AuditRecord.CodingKeys.seq > since ?? 0)
        if let from { request = request.filter(NewAuditEntry.CodingKeys.time >= from) }
        if let connection {
            request = request.filter(NewAuditEntry.CodingKeys.connectionID == connection)
        }
        return try request.order(AuditRecord.CodingKeys.seq).limit(limit).fetchAll(self.db)
    }

    public func auditCount() throws -> Int {
        try AuditRecord.fetchCount(self.db)
    }

    /// Walks the whole chain in order.
    public func verifyAuditChain() throws -> AuditChainReport {
        var previous = [UInt8](repeating: 0, count: 32)
        var expectedSeq: Int64 = 1
        var count = 0
        let rows = try Row.fetchCursor(self.db, sql: "SELECT \(Self.auditColumns) FROM audit ORDER BY seq")
        while let row = try rows.next() {
            let record = try Self.auditRecord(row)
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

    // MARK: - Audit chain

    static func bytes(_ data: Data?) -> [UInt8] { data.map { [UInt8]($0) } ?? [] }

    /// Length-prefixed fields, so no two different rows encode alike.
    package static func canonical(_ record: AuditRecord) -> [UInt8] {
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
