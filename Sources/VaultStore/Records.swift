import Foundation
import GRDB

// The store's rows as GRDB records: each type names its table and maps its properties to today's columns through
// `CodingKeys`; blobs go through ``BlobColumn`` (a BLOB, never JSON). The schema is the migrator's, unchanged.

/// A connection's plain metadata row. Settings are JSON text; secrets live in `SecretRecord`s.
public struct ConnectionRecord: Sendable, Equatable, Codable {
    public var id: String
    public var provider: String
    public var settingsJSON: String
    public var state: String
    public var revision: Int64
    public var disabledReason: String?
    public var lastError: String?
    public var createdAt: String
    public var updatedAt: String

    public init(
        id: String,
        provider: String,
        settingsJSON: String,
        state: String,
        revision: Int64,
        disabledReason: String? = nil,
        lastError: String? = nil,
        createdAt: String,
        updatedAt: String
    ) {
        self.id = id
        self.provider = provider
        self.settingsJSON = settingsJSON
        self.state = state
        self.revision = revision
        self.disabledReason = disabledReason
        self.lastError = lastError
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, provider, state, revision
        case settingsJSON = "settings"
        case disabledReason = "disabled_reason"
        case lastError = "last_error"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

extension ConnectionRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "connections"
}

/// One encrypted secret field of the current revision. The store never sees its plaintext.
public struct SecretRecord: Sendable, Equatable, Codable {
    public var connectionID: String
    public var field: String
    public var revision: Int64
    public var algorithm: Int
    @BlobColumn public var nonce: [UInt8]
    @BlobColumn public var ciphertext: [UInt8]
    /// Keyed fingerprint shown in admin views (never the value).
    public var fingerprint: String
    /// When the value (not its encryption) last changed.
    public var updatedAt: String

    public init(
        connectionID: String,
        field: String,
        revision: Int64,
        algorithm: Int,
        nonce: [UInt8],
        ciphertext: [UInt8],
        fingerprint: String,
        updatedAt: String
    ) {
        self.connectionID = connectionID
        self.field = field
        self.revision = revision
        self.algorithm = algorithm
        self.nonce = nonce
        self.ciphertext = ciphertext
        self.fingerprint = fingerprint
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case field, revision, nonce, ciphertext, fingerprint
        case connectionID = "connection_id"
        case algorithm = "alg"
        case updatedAt = "updated_at"
    }
}

extension SecretRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "secrets"
}

/// The wrapped data key of a connection's current revision.
public struct DataKeyRecord: Sendable, Equatable, Codable {
    public var connectionID: String
    public var revision: Int64
    public var keyID: Int64
    public var algorithm: Int
    @BlobColumn public var nonce: [UInt8]
    @BlobColumn public var wrapped: [UInt8]

    public init(connectionID: String, revision: Int64, keyID: Int64, algorithm: Int, nonce: [UInt8], wrapped: [UInt8]) {
        self.connectionID = connectionID
        self.revision = revision
        self.keyID = keyID
        self.algorithm = algorithm
        self.nonce = nonce
        self.wrapped = wrapped
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case revision, nonce, wrapped
        case connectionID = "connection_id"
        case keyID = "key_id"
        case algorithm = "alg"
    }
}

extension DataKeyRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "data_keys"
}

/// One grant: a uid, a group name or a systemd unit allowed to ask for a connection's tokens.
/// Read from `grants` (whose `connection_id` it leaves out); written by ``StoreTransaction/replaceGrants(of:with:)``.
public struct GrantRecord: Sendable, Equatable, Hashable, Codable {
    public enum Kind: String, Sendable, Codable, DatabaseValueConvertible { case uid, group, unit }
    public var kind: Kind
    public var value: String

    public init(kind: Kind, value: String) {
        self.kind = kind
        self.value = value
    }
}

extension GrantRecord: FetchableRecord, TableRecord {
    public static let databaseTableName = "grants"
}

/// One grant rule of a connection, at its position in the connection's rules (from 0): its canonical JSON, which
/// only the vault reads. Read from `grant_rules` and written by ``StoreTransaction/replaceGrantRules(of:with:)``.
public struct GrantRuleRecord: Sendable, Equatable, Codable {
    public var position: Int
    public var rule: String

    public init(position: Int, rule: String) {
        self.position = position
        self.rule = rule
    }
}

extension GrantRuleRecord: FetchableRecord, TableRecord {
    public static let databaseTableName = "grant_rules"
}

/// A master key's row: its id, when it was made, whether it is the active one, and its check value.
public struct MasterKeyRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var createdAt: String
    public var state: String
    @BlobColumn public var checkValue: [UInt8]

    public init(id: Int64, createdAt: String, state: String, checkValue: [UInt8]) {
        self.id = id
        self.createdAt = createdAt
        self.state = state
        self.checkValue = checkValue
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, state
        case createdAt = "created_at"
        case checkValue = "check_value"
    }
}

extension MasterKeyRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "master_keys"
}

/// One row of the audit trail, hash-chained to the one before: an ``NewAuditEntry`` as the store numbered and chained
/// it. The entry's fields read as the record's own (`record.action`).
@dynamicMemberLookup
public struct AuditRecord: Sendable, Equatable, Codable {
    public var seq: Int64
    public var entry: NewAuditEntry
    @BlobColumn public var prevHash: [UInt8]
    @BlobColumn public var hash: [UInt8]

    public init(seq: Int64, entry: NewAuditEntry, prevHash: [UInt8], hash: [UInt8]) {
        self.seq = seq
        self.entry = entry
        self.prevHash = prevHash
        self.hash = hash
    }

    public subscript<Value>(dynamicMember field: KeyPath<NewAuditEntry, Value>) -> Value {
        self.entry[keyPath: field]
    }

    /// The row's own columns; the entry's are ``NewAuditEntry/CodingKeys``, in the same flat row.
    enum CodingKeys: String, CodingKey, ColumnExpression {
        case seq
        case prevHash = "prev_hash"
        case hash
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.seq = try container.decode(Int64.self, forKey: .seq)
        self.entry = try NewAuditEntry(from: decoder)
        self._prevHash = try container.decode(BlobColumn.self, forKey: .prevHash)
        self._hash = try container.decode(BlobColumn.self, forKey: .hash)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.seq, forKey: .seq)
        try self.entry.encode(to: encoder)
        try container.encode(self._prevHash, forKey: .prevHash)
        try container.encode(self._hash, forKey: .hash)
    }
}

extension AuditRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "audit"
}

/// An audit row before the store numbers and chains it.
public struct NewAuditEntry: Sendable, Equatable, Codable {
    public var time: String
    public var actorUID: Int64
    public var actorPID: Int64
    public var actorComm: String
    public var actorUnit: String?
    public var action: String
    public var connectionID: String?
    public var outcome: String
    public var detail: String

    public init(
        time: String,
        actorUID: Int64,
        actorPID: Int64,
        actorComm: String,
        actorUnit: String?,
        action: String,
        connectionID: String?,
        outcome: String,
        detail: String
    ) {
        self.time = time
        self.actorUID = actorUID
        self.actorPID = actorPID
        self.actorComm = actorComm
        self.actorUnit = actorUnit
        self.action = action
        self.connectionID = connectionID
        self.outcome = outcome
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case time, action, outcome, detail
        case actorUID = "actor_uid"
        case actorPID = "actor_pid"
        case actorComm = "actor_comm"
        case actorUnit = "actor_unit"
        case connectionID = "connection_id"
    }
}

/// A BLOB column holding bytes (a nonce, ciphertext, a wrapped key, a hash): stored as SQLite BLOB, as `Data` was
/// bound before, never as the JSON array `Codable` would make of `[UInt8]`. The store only ever sees ciphertext.
@propertyWrapper
public struct BlobColumn: Sendable, Hashable, Codable, DatabaseValueConvertible {
    public var wrappedValue: [UInt8]

    public init(wrappedValue: [UInt8]) { self.wrappedValue = wrappedValue }

    public var databaseValue: DatabaseValue { Data(self.wrappedValue).databaseValue }

    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> BlobColumn? {
        if dbValue.isNull { return BlobColumn(wrappedValue: []) }
        return Data.fromDatabaseValue(dbValue).map { BlobColumn(wrappedValue: [UInt8]($0)) }
    }

    public init(from decoder: any Decoder) throws {
        self.wrappedValue = [UInt8](try decoder.singleValueContainer().decode(Data.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(self.wrappedValue))
    }
}
