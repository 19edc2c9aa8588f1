import Foundation
import GRDB

/// What the masked view of a secret shows, without its ciphertext: read for every connection at once by `list`.
public struct SecretSummary: Sendable, Equatable {
    public var connectionID: String
    public var field: String
    public var fingerprint: String
    public var updatedAt: String

    public init(connectionID: String, field: String, fingerprint: String, updatedAt: String) {
        self.connectionID = connectionID
        self.field = field
        self.fingerprint = fingerprint
        self.updatedAt = updatedAt
    }
}

/// A connection's tokens as its view counts them: how many wait for revocation, and until when the latest
/// unrevocable (v1) one stays valid.
public struct IssuedTokenSummary: Sendable, Equatable {
    public var pending: Int
    public var unrevocableUntil: Int64?

    public init(pending: Int, unrevocableUntil: Int64?) {
        self.pending = pending
        self.unrevocableUntil = unrevocableUntil
    }
}

// Whole-table reads for `list`: one query per table instead of five per connection, so that listing 100,000
// connections is a few scans rather than half a million statements. Each returns what the per-connection query of
// the same name returns, for every connection at once, in the same order within a connection.
extension StoreTransaction {
    /// Every secret's summary, by connection id and then field (as ``secrets(of:)`` orders one connection's).
    public func secretSummaries() throws -> [SecretSummary] {
        try Row.fetchAll(
            self.db,
            sql: "SELECT connection_id, field, fingerprint, updated_at FROM secrets ORDER BY connection_id, field"
        ).map { row in
            SecretSummary(
                connectionID: row[0],
                field: row[1],
                fingerprint: row[2],
                updatedAt: row[3]
            )
        }
    }

    /// Every connection's grants, by connection id, each list ordered as ``grants(of:)`` orders it.
    public func allGrants() throws -> [String: [GrantRecord]] {
        var grants: [String: [GrantRecord]] = [:]
        let rows = try Row.fetchCursor(
            self.db,
            sql: "SELECT connection_id, kind, value FROM grants ORDER BY connection_id, kind, value"
        )
        while let row = try rows.next() {
            guard let kind = GrantRecord.Kind(rawValue: row[1]) else { continue }
            grants[row[0], default: []].append(GrantRecord(kind: kind, value: row[2]))
        }
        return grants
    }

    /// Every connection's grant rules, by connection id, in order (as ``grantRules(of:)``).
    public func allGrantRules() throws -> [String: [GrantRuleRecord]] {
        var rules: [String: [GrantRuleRecord]] = [:]
        let rows = try Row.fetchCursor(
            self.db,
            sql: "SELECT connection_id, position, rule FROM grant_rules ORDER BY connection_id, position"
        )
        while let row = try rows.next() {
            rules[row[0], default: []].append(GrantRuleRecord(position: row[1], rule: row[2]))
        }
        return rules
    }

    /// For every connection with token rows: ``pendingRevocationCount(of:)`` and ``unrevocableUntil(of:now:)``.
    public func issuedTokenSummaries(now: Int64) throws -> [String: IssuedTokenSummary] {
        var summaries: [String: IssuedTokenSummary] = [:]
        let rows = try Row.fetchCursor(
            self.db,
            sql: """
                SELECT connection_id,
                    SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),
                    MAX(CASE WHEN state = 'unrevocable' AND expires_at > ? THEN expires_at END)
                FROM issued_tokens GROUP BY connection_id
                """,
            arguments: [now]
        )
        while let row = try rows.next() {
            summaries[row[0]] = IssuedTokenSummary(pending: row[1], unrevocableUntil: row[2])
        }
        return summaries
    }
}

// Page reads for a streamed `list`: the connections after an id, and what their views need from the other tables
// for the id range of that page, each as the whole-table read of the same name returns it for those connections.
// Each statement is prepared once per database connection (`cachedStatement`): a list of 100,000 reads 100 pages.
extension StoreTransaction {
    /// Up to `limit` connections with ids after `after` (nil: from the first), in id order.
    public func connections(after: String?, limit: Int) throws -> [ConnectionRecord] {
        typealias Columns = ConnectionRecord.CodingKeys
        return try ConnectionRecord.filter(Columns.id > (after ?? "")).order(Columns.id).limit(limit).fetchAll(self.db)
    }

    /// ``secretSummaries()`` of the connections with ids in `from...through`.
    public func secretSummaries(from: String, through: String) throws -> [String: [SecretSummary]] {
        var secrets: [String: [SecretSummary]] = [:]
        let rows = try Row.fetchCursor(
            self.db.cachedStatement(
                sql: """
                    SELECT connection_id, field, fingerprint, updated_at FROM secrets
                    WHERE connection_id >= ? AND connection_id <= ? ORDER BY connection_id, field
                    """
            ),
            arguments: [from, through]
        )
        while let row = try rows.next() {
            let summary = SecretSummary(connectionID: row[0], field: row[1], fingerprint: row[2], updatedAt: row[3])
            secrets[summary.connectionID, default: []].append(summary)
        }
        return secrets
    }

    /// ``allGrants()`` of the connections with ids in `from...through`.
    public func grants(from: String, through: String) throws -> [String: [GrantRecord]] {
        var grants: [String: [GrantRecord]] = [:]
        let rows = try Row.fetchCursor(
            self.db.cachedStatement(
                sql: """
                    SELECT connection_id, kind, value FROM grants
                    WHERE connection_id >= ? AND connection_id <= ? ORDER BY connection_id, kind, value
                    """
            ),
            arguments: [from, through]
        )
        while let row = try rows.next() {
            guard let kind = GrantRecord.Kind(rawValue: row[1]) else { continue }
            grants[row[0], default: []].append(GrantRecord(kind: kind, value: row[2]))
        }
        return grants
    }

    /// ``allGrantRules()`` of the connections with ids in `from...through`.
    public func grantRules(from: String, through: String) throws -> [String: [GrantRuleRecord]] {
        var rules: [String: [GrantRuleRecord]] = [:]
        let rows = try Row.fetchCursor(
            self.db.cachedStatement(
                sql: """
                    SELECT connection_id, position, rule FROM grant_rules
                    WHERE connection_id >= ? AND connection_id <= ? ORDER BY connection_id, position
                    """
            ),
            arguments: [from, through]
        )
        while let row = try rows.next() {
            rules[row[0], default: []].append(GrantRuleRecord(position: row[1], rule: row[2]))
        }
        return rules
    }

    /// ``issuedTokenSummaries(now:)`` of the connections with ids in `from...through`.
    public func issuedTokenSummaries(from: String, through: String, now: Int64) throws -> [String: IssuedTokenSummary] {
        var summaries: [String: IssuedTokenSummary] = [:]
        let rows = try Row.fetchCursor(
            self.db.cachedStatement(
                sql: """
                    SELECT connection_id,
                        SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),
                        MAX(CASE WHEN state = 'unrevocable' AND expires_at > ? THEN expires_at END)
                    FROM issued_tokens WHERE connection_id >= ? AND connection_id <= ? GROUP BY connection_id
                    """
            ),
            arguments: [now, from, through]
        )
        while let row = try rows.next() {
            summaries[row[0]] = IssuedTokenSummary(pending: row[1], unrevocableUntil: row[2])
        }
        return summaries
    }
}

// Chunked whole-table reads and cached-statement writes for a master key rotation, which touches every data key and
// every secret in one transaction: one statement per chunk of rows to read, and prepared statements reused for the
// two updates per connection, instead of three GRDB requests built afresh per connection.
extension StoreTransaction {
    /// Up to `limit` data keys after connection id `after` (nil: from the first), in id order, each with the
    /// revision of its connection's row.
    public func dataKeysWithRevisions(after: String?, limit: Int) throws -> [(key: DataKeyRecord, revision: Int64)] {
        try Row.fetchAll(
            self.db.cachedStatement(
                sql: """
                    SELECT d.connection_id, d.revision, d.key_id, d.alg, d.nonce, d.wrapped, c.revision
                    FROM data_keys d JOIN connections c ON c.id = d.connection_id
                    WHERE d.connection_id > ? ORDER BY d.connection_id LIMIT ?
                    """
            ),
            arguments: [after ?? "", limit]
        ).map { row in
            (
                DataKeyRecord(
                    connectionID: row[0],
                    revision: row[1],
                    keyID: row[2],
                    algorithm: row[3],
                    nonce: Self.bytes(row[4]),
                    wrapped: Self.bytes(row[5])
                ),
                row[6]
            )
        }
    }

    /// The secrets of connections with ids in `from...through`, by connection id and then field.
    public func secrets(from: String, through: String) throws -> [String: [SecretRecord]] {
        var secrets: [String: [SecretRecord]] = [:]
        let rows = try Row.fetchCursor(
            self.db.cachedStatement(
                sql: """
                    SELECT connection_id, field, revision, alg, nonce, ciphertext, fingerprint, updated_at
                    FROM secrets WHERE connection_id >= ? AND connection_id <= ? ORDER BY connection_id, field
                    """
            ),
            arguments: [from, through]
        )
        while let row = try rows.next() {
            let record = SecretRecord(
                connectionID: row[0],
                field: row[1],
                revision: row[2],
                algorithm: row[3],
                nonce: Self.bytes(row[4]),
                ciphertext: Self.bytes(row[5]),
                fingerprint: row[6],
                updatedAt: row[7]
            )
            secrets[record.connectionID, default: []].append(record)
        }
        return secrets
    }

    /// Replaces the wrapping of a connection's data key (`key_id`, `alg`, `nonce`, `wrapped` of its row; the
    /// revision stays) and sets its secrets' fingerprints, by field.
    public func rewrapDataKey(_ record: DataKeyRecord, fingerprints: [(field: String, fingerprint: String)]) throws {
        try self.db.cachedStatement(
            sql: "UPDATE data_keys SET key_id = ?, alg = ?, nonce = ?, wrapped = ? WHERE connection_id = ?"
        ).execute(
            arguments: [record.keyID, record.algorithm, Data(record.nonce), Data(record.wrapped), record.connectionID]
        )
        let update = try self.db.cachedStatement(
            sql: "UPDATE secrets SET fingerprint = ? WHERE connection_id = ? AND field = ?"
        )
        for (field, fingerprint) in fingerprints {
            try update.execute(arguments: [fingerprint, record.connectionID, field])
        }
    }
}

// The audit chain's walk reads a million rows: through a row cursor and column positions, not `Codable` (whose
// decoding of a row was most of a walk's time, over 30 s for a million rows).
extension StoreTransaction {
    /// The columns ``auditRecord(_:)`` reads, in its order.
    static let auditColumns =
        "seq, time, actor_uid, actor_pid, actor_comm, actor_unit, action, connection_id, outcome, detail, prev_hash, hash"

    /// The audit row `row` (selected as ``auditColumns``) as a record.
    /// - Throws: `StoreError` `.corrupt` when a column does not hold what the schema says.
    static func auditRecord(_ row: Row) throws -> AuditRecord {
        func value<T: DatabaseValueConvertible>(_ index: Int, _ type: T.Type = T.self) throws -> T {
            guard let value = T.fromDatabaseValue(row[index] as DatabaseValue) else {
                throw StoreError(.corrupt, "audit row has an unreadable column \(index)")
            }
            return value
        }
        func optional(_ index: Int) throws -> String? {
            let raw: DatabaseValue = row[index]
            return raw.isNull ? nil : try value(index, String.self)
        }
        return AuditRecord(
            seq: try value(0),
            entry: NewAuditEntry(
                time: try value(1),
                actorUID: try value(2),
                actorPID: try value(3),
                actorComm: try value(4),
                actorUnit: try optional(5),
                action: try value(6),
                connectionID: try optional(7),
                outcome: try value(8),
                detail: try value(9)
            ),
            prevHash: [UInt8](try value(10, Data.self)),
            hash: [UInt8](try value(11, Data.self))
        )
    }
}
