import Foundation
import GRDB

/// An access token the daemon handed out, as the store keeps it until it is revoked or has expired: sealed under a
/// data key of the row's own, which the master key wraps. The store never sees the token.
public struct IssuedTokenRecord: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable, DatabaseValueConvertible {
        /// The connection is still in the state (and revision) that obtained it.
        case issued
        /// The connection was disabled, reset, edited or disconnected since: revoke it at Personio.
        case pending
        /// A v1 token withdrawn the same way: v1 has no revoke endpoint, so it stays valid until it expires.
        case unrevocable
    }

    /// Assigned by ``StoreTransaction/insertIssuedToken(_:)`` when 0; part of the associated data of its seal.
    public var id: Int64
    public var connectionID: String
    public var revision: Int64
    /// `v1` or `v2`.
    public var api: String
    public var state: State
    /// The plain settings needed to revoke (API base URL, app and partner ids), as JSON.
    public var settingsJSON: String
    /// Wall-clock expiry, seconds since 1970.
    public var expiresAt: Int64
    public var keyID: Int64
    public var dataKeyAlgorithm: Int
    @BlobColumn public var dataKeyNonce: [UInt8]
    @BlobColumn public var wrappedDataKey: [UInt8]
    public var algorithm: Int
    @BlobColumn public var nonce: [UInt8]
    @BlobColumn public var ciphertext: [UInt8]
    /// Failed revocation attempts so far.
    public var attempts: Int
    /// Wall-clock seconds since 1970 before which no further attempt is made.
    public var nextAttemptAt: Double
    public var lastError: String?
    public var createdAt: String
    public var withdrawnAt: String?

    public init(
        id: Int64,
        connectionID: String,
        revision: Int64,
        api: String,
        state: State,
        settingsJSON: String,
        expiresAt: Int64,
        keyID: Int64,
        dataKeyAlgorithm: Int,
        dataKeyNonce: [UInt8],
        wrappedDataKey: [UInt8],
        algorithm: Int,
        nonce: [UInt8],
        ciphertext: [UInt8],
        attempts: Int = 0,
        nextAttemptAt: Double = 0,
        lastError: String? = nil,
        createdAt: String,
        withdrawnAt: String? = nil
    ) {
        self.id = id
        self.connectionID = connectionID
        self.revision = revision
        self.api = api
        self.state = state
        self.settingsJSON = settingsJSON
        self.expiresAt = expiresAt
        self.keyID = keyID
        self.dataKeyAlgorithm = dataKeyAlgorithm
        self.dataKeyNonce = dataKeyNonce
        self.wrappedDataKey = wrappedDataKey
        self.algorithm = algorithm
        self.nonce = nonce
        self.ciphertext = ciphertext
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.createdAt = createdAt
        self.withdrawnAt = withdrawnAt
    }

    enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, revision, api, state, nonce, ciphertext, attempts
        case connectionID = "connection_id"
        case settingsJSON = "settings"
        case expiresAt = "expires_at"
        case keyID = "key_id"
        case dataKeyAlgorithm = "dek_alg"
        case dataKeyNonce = "dek_nonce"
        case wrappedDataKey = "dek_wrapped"
        case algorithm = "alg"
        case nextAttemptAt = "next_attempt_at"
        case lastError = "last_error"
        case createdAt = "created_at"
        case withdrawnAt = "withdrawn_at"
    }
}

extension IssuedTokenRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "issued_tokens"
}

extension StoreTransaction {
    // MARK: - Issued tokens

    /// The id the next inserted token row gets (its seal is bound to it, so it is needed before the insert).
    public func nextIssuedTokenID() throws -> Int64 {
        (try Int64.fetchOne(self.db, sql: "SELECT MAX(id) FROM issued_tokens") ?? 0) + 1
    }

    public func insertIssuedToken(_ record: IssuedTokenRecord) throws {
        try record.insert(self.db)
    }

    /// Token rows, oldest first: of one connection and/or in one state when given.
    public func issuedTokens(
        of connectionID: String? = nil,
        state: IssuedTokenRecord.State? = nil
    ) throws
        -> [IssuedTokenRecord]
    {
        typealias Columns = IssuedTokenRecord.CodingKeys
        var request = IssuedTokenRecord.all()
        if let connectionID {
            request = request.filter(Columns.connectionID == connectionID)
        }
        if let state {
            request = request.filter(Columns.state == state)
        }
        return try request.order(Columns.id).fetchAll(self.db)
    }

    /// Moves every `issued` token of the connection to `pending` (v2) or `unrevocable` (v1), in the transaction of
    /// the lifecycle change that withdraws them.
    /// - Returns: How many rows moved.
    @discardableResult
    public func withdrawIssuedTokens(of connectionID: String, at time: String) throws -> Int {
        try self.db.execute(
            sql: """
                UPDATE issued_tokens SET state = CASE api WHEN 'v2' THEN 'pending' ELSE 'unrevocable' END,
                    withdrawn_at = ?, next_attempt_at = 0
                WHERE connection_id = ? AND state = 'issued'
                """,
            arguments: [time, connectionID]
        )
        return self.db.changesCount
    }

    /// The latest expiry (seconds since 1970) of the connection's unrevocable (v1) tokens still valid at `now`.
    public func unrevocableUntil(of connectionID: String, now: Int64) throws -> Int64? {
        try Int64.fetchOne(
            self.db,
            sql:
                "SELECT MAX(expires_at) FROM issued_tokens WHERE connection_id = ? AND state = 'unrevocable' AND expires_at > ?",
            arguments: [connectionID, now]
        )
    }

    /// How many of the connection's tokens wait for revocation.
    public func pendingRevocationCount(of connectionID: String) throws -> Int {
        try Int.fetchOne(
            self.db,
            sql: "SELECT COUNT(*) FROM issued_tokens WHERE connection_id = ? AND state = 'pending'",
            arguments: [connectionID]
        ) ?? 0
    }

    /// The earliest moment (seconds since 1970) at which a row needs attention: a pending row's next attempt, or any
    /// row's expiry. Nil when there are no rows.
    public func nextIssuedTokenEvent() throws -> Double? {
        try Double.fetchOne(
            self.db,
            sql: """
                SELECT MIN(t) FROM (
                    SELECT MIN(next_attempt_at) AS t FROM issued_tokens WHERE state = 'pending'
                    UNION ALL SELECT MIN(expires_at) AS t FROM issued_tokens)
                """
        )
    }

    /// - Returns: Whether there was such a row.
    @discardableResult
    public func deleteIssuedToken(_ id: Int64) throws -> Bool {
        try IssuedTokenRecord.deleteOne(self.db, key: id)
    }

    /// Records a failed revocation attempt.
    public func updateRevocationAttempt(_ id: Int64, attempts: Int, nextAttemptAt: Double, lastError: String?) throws {
        try self.db.execute(
            sql: "UPDATE issued_tokens SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            arguments: [attempts, nextAttemptAt, lastError, id]
        )
    }

    /// Replaces the wrapped data key of a token row (a master key rotation).
    public func updateIssuedTokenKey(
        _ id: Int64,
        keyID: Int64,
        algorithm: Int,
        nonce: [UInt8],
        wrapped: [UInt8]
    )
        throws
    {
        try self.db.execute(
            sql: "UPDATE issued_tokens SET key_id = ?, dek_alg = ?, dek_nonce = ?, dek_wrapped = ? WHERE id = ?",
            arguments: [keyID, algorithm, Data(nonce), Data(wrapped), id]
        )
    }
}
