/// A connection's plain metadata row. Settings are JSON text; secrets live in `SecretRecord`s.
public struct ConnectionRecord: Sendable, Equatable {
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
}

/// One encrypted secret field of the current revision. The store never sees its plaintext.
public struct SecretRecord: Sendable, Equatable {
    public var connectionID: String
    public var field: String
    public var revision: Int64
    public var algorithm: Int
    public var nonce: [UInt8]
    public var ciphertext: [UInt8]
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
}

/// The wrapped data key of a connection's current revision.
public struct DataKeyRecord: Sendable, Equatable {
    public var connectionID: String
    public var revision: Int64
    public var keyID: Int64
    public var algorithm: Int
    public var nonce: [UInt8]
    public var wrapped: [UInt8]

    public init(connectionID: String, revision: Int64, keyID: Int64, algorithm: Int, nonce: [UInt8], wrapped: [UInt8]) {
        self.connectionID = connectionID
        self.revision = revision
        self.keyID = keyID
        self.algorithm = algorithm
        self.nonce = nonce
        self.wrapped = wrapped
    }
}

/// One grant: a uid, a group name or a systemd unit allowed to ask for a connection's tokens.
public struct GrantRecord: Sendable, Equatable, Hashable {
    public enum Kind: String, Sendable { case uid, group, unit }
    public var kind: Kind
    public var value: String

    public init(kind: Kind, value: String) {
        self.kind = kind
        self.value = value
    }
}

/// A master key's row: its id, when it was made, whether it is the active one, and its check value.
public struct MasterKeyRecord: Sendable, Equatable {
    public var id: Int64
    public var createdAt: String
    public var state: String
    public var checkValue: [UInt8]

    public init(id: Int64, createdAt: String, state: String, checkValue: [UInt8]) {
        self.id = id
        self.createdAt = createdAt
        self.state = state
        self.checkValue = checkValue
    }
}

/// One row of the audit trail, hash-chained to the one before: an ``NewAuditEntry`` as the store numbered and chained
/// it. The entry's fields read as the record's own (`record.action`).
@dynamicMemberLookup
public struct AuditRecord: Sendable, Equatable {
    public var seq: Int64
    public var entry: NewAuditEntry
    public var prevHash: [UInt8]
    public var hash: [UInt8]

    public init(seq: Int64, entry: NewAuditEntry, prevHash: [UInt8], hash: [UInt8]) {
        self.seq = seq
        self.entry = entry
        self.prevHash = prevHash
        self.hash = hash
    }

    public subscript<Value>(dynamicMember field: KeyPath<NewAuditEntry, Value>) -> Value {
        self.entry[keyPath: field]
    }
}

/// An audit row before the store numbers and chains it.
public struct NewAuditEntry: Sendable, Equatable {
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
}
