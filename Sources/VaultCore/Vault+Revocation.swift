import Logging
import VaultAPI
import VaultCrypto
import VaultLocks
import VaultStore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How the broker may use a token it has just obtained from Personio.
public enum TokenRecording: Sendable, Equatable {
    /// Recorded for revocation: serve it.
    case recorded
    /// The same token was recorded before (Personio's tokens are stable per credential pair): serve it.
    case alreadyRecorded
    /// The connection was disabled, reset, edited or disconnected while the token was being obtained: the token is
    /// queued for revocation and must not be served.
    case withdrawn
    /// Personio handed out a token of a previous state that still waits for revocation: do not serve it; a later
    /// exchange, after the revocation, gets a fresh one.
    case revocationPending
}

/// A token the revoker should revoke now, opened from its sealed row.
public struct DueRevocation: Sendable {
    public var id: Int64
    public var connectionID: String
    public var revision: Int64
    public var provider: Provider
    /// Access tokens are handed to callers by design and cached in ordinary memory; this one lives for one call.
    public var token: String
    public var settings: ConnectionSettings
    /// Failed attempts so far.
    public var attempts: Int
    /// Wall-clock expiry, seconds since 1970.
    public var expiresAt: Int64
}

/// What one pass of the revoker found in the store.
public struct RevocationPass: Sendable {
    public var due: [DueRevocation]
    /// Rows dropped because their token had expired.
    public var expired: Int
    /// Of those, the ones still pending revocation: withdrawn tokens the revoker gave up on (`token.revoke_failed`,
    /// outcome `expired`).
    public var gaveUp: Int = 0
    /// The earliest wall-clock time (seconds since 1970) at which another pass has work; nil when none is known.
    public var nextEvent: Double?
}

/// Revocation that holds (DESIGN §11): every token the broker obtains is recorded, sealed, before it is served; a
/// disable, reset, edit, needs_reset or disconnect moves the connection's tokens to `pending` in the same transaction
/// as the change; the broker's revoker revokes pending tokens at Personio, retrying until they expire.
extension Vault {
    /// The associated-data field name of a sealed access token.
    static let issuedTokenField = "access_token"

    /// The connection id a token row's data key is bound to: `issued-token:<id>`. A ':' never occurs in a connection
    /// id, so no connection's data key can be taken for a token row's or the other way round.
    static func issuedTokenKeyBinding(_ connectionID: String) -> String { "issued-token:" + connectionID }

    /// Records a token just obtained from Personio for `snapshot`, before anyone is handed it.
    ///
    /// Runs in one store transaction, so it is ordered against every lifecycle change: when the connection is no
    /// longer active at `snapshot`'s revision, the token goes straight to pending revocation (v2), or is kept as
    /// unrevocable (v1), and the broker must not serve it.
    /// - Parameters:
    ///   - snapshot: The connection as it was when its credentials were read for the exchange.
    ///   - token: The access token.
    ///   - expiresAt: Its wall-clock expiry, seconds since 1970.
    public func recordIssuedToken(
        _ snapshot: ConnectionSnapshot,
        token: String,
        expiresAt: Double
    ) async throws -> TokenRecording {
        let api = snapshot.provider == .personioV1 ? "v1" : "v2"
        let settingsJSON = try Self.settingsJSON(snapshot.settings)
        let value = Array(token.utf8).withUnsafeBytes { SecretBytes(copying: $0) }
        return try await self.write { tx -> TokenRecording in
            let current =
                try tx.connection(snapshot.id).map {
                    $0.revision == snapshot.revision && $0.state == ConnectionState.active.rawValue
                } ?? false
            for existing in try tx.issuedTokens(of: snapshot.id) where try self.openIssuedToken(existing) == value {
                switch existing.state {
                case .pending: return .revocationPending
                case .issued, .unrevocable: if current { return .alreadyRecorded }
                }
            }
            let state: IssuedTokenRecord.State = current ? .issued : (api == "v2" ? .pending : .unrevocable)
            let now = Timestamp.now()
            try tx.insertIssuedToken(
                try self.sealIssuedToken(
                    value,
                    id: try tx.nextIssuedTokenID(),
                    snapshot: snapshot,
                    api: api,
                    state: state,
                    settingsJSON: settingsJSON,
                    expiresAt: Int64(expiresAt.rounded(.up)),
                    createdAt: now,
                    withdrawnAt: current ? nil : now
                )
            )
            return current ? .recorded : .withdrawn
        }
    }

    /// Moves the connection's issued tokens to pending revocation; call inside the transaction of the lifecycle
    /// change that withdraws them.
    static func withdrawIssuedTokens(_ tx: StoreTransaction, _ id: String) throws {
        try tx.withdrawIssuedTokens(of: id, at: Timestamp.now())
    }

    // MARK: - The revoker's side

    /// Drops rows whose token has expired (auditing pending ones as given up) and opens the pending rows that are
    /// due at `now` (wall-clock seconds since 1970).
    public func revocationPass(now: Double) async throws -> RevocationPass {
        try await self.write { tx in
            var expired = 0
            var gaveUp = 0
            for row in try tx.issuedTokens() where Double(row.expiresAt) <= now {
                try tx.deleteIssuedToken(row.id)
                expired += 1
                guard row.state == .pending else { continue }
                gaveUp += 1
                try tx.appendAudit(
                    Self.auditEntry(
                        Self.daemonActor,
                        action: "token.revoke_failed",
                        connection: row.connectionID,
                        outcome: "expired",
                        detail: "revision \(row.revision): gave up after \(row.attempts) failed attempts; the token "
                            + "expired at \(Timestamp.format(secondsSince1970: Double(row.expiresAt)))"
                            + (row.lastError.map { "; last error: \($0)" } ?? "")
                    )
                )
            }
            var due: [DueRevocation] = []
            for row in try tx.issuedTokens(state: .pending) where row.nextAttemptAt <= now {
                // A row that does not open (a damaged file) must not stop the others; it goes when it expires.
                guard let token = try? self.openIssuedToken(row) else {
                    self.logger.error(
                        "cannot open a token pending revocation",
                        metadata: ["connection.id": "\(row.connectionID)", "token.row": "\(row.id)"]
                    )
                    continue
                }
                due.append(
                    DueRevocation(
                        id: row.id,
                        connectionID: row.connectionID,
                        revision: row.revision,
                        provider: row.api == "v1" ? .personioV1 : .personioV2,
                        token: token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) },
                        settings: try Self.revocationSettings(row),
                        attempts: row.attempts,
                        expiresAt: row.expiresAt
                    )
                )
            }
            return RevocationPass(due: due, expired: expired, gaveUp: gaveUp, nextEvent: try tx.nextIssuedTokenEvent())
        }
    }

    /// Personio accepted the revocation: the row goes, `token.revoked` is audited.
    public func revocationSucceeded(_ revocation: DueRevocation) async throws {
        try await self.write { tx in
            // Revoked twice (two passes raced): audited once.
            guard try tx.deleteIssuedToken(revocation.id) else { return }
            try tx.appendAudit(
                Self.auditEntry(
                    Self.daemonActor,
                    action: "token.revoked",
                    connection: revocation.connectionID,
                    detail: "revision \(revocation.revision): access token revoked at Personio"
                        + (revocation.attempts > 0 ? " after \(revocation.attempts) failed attempts" : "")
                )
            )
        }
    }

    /// A revocation attempt failed; the next is due at `nextAttemptAt` (wall-clock seconds since 1970). The first
    /// failure of a row is audited as `token.revoke_failed`; later ones only update the row (shown in `status`).
    public func revocationFailed(_ revocation: DueRevocation, error: String, nextAttemptAt: Double) async throws {
        try await self.write { tx in
            guard try tx.issuedTokens(of: revocation.connectionID).contains(where: { $0.id == revocation.id }) else {
                return
            }
            try tx.updateRevocationAttempt(
                revocation.id,
                attempts: revocation.attempts + 1,
                nextAttemptAt: nextAttemptAt,
                lastError: error
            )
            guard revocation.attempts == 0 else { return }
            try tx.appendAudit(
                Self.auditEntry(
                    Self.daemonActor,
                    action: "token.revoke_failed",
                    connection: revocation.connectionID,
                    outcome: "failed",
                    detail: "revision \(revocation.revision): Personio did not accept the revocation: \(error); "
                        + "retrying with back-off until the token expires at "
                        + Timestamp.format(secondsSince1970: Double(revocation.expiresAt))
                )
            )
        }
    }

    /// Puts an attempt off to `until` without counting it (the connection's Personio call budget is spent).
    public func postponeRevocation(_ revocation: DueRevocation, until: Double) async throws {
        try await self.write { tx in
            guard let row = try tx.issuedTokens(of: revocation.connectionID).first(where: { $0.id == revocation.id })
            else { return }
            try tx.updateRevocationAttempt(
                row.id,
                attempts: row.attempts,
                nextAttemptAt: until,
                lastError: row.lastError
            )
        }
    }

    /// Every token waiting for revocation, for `status`.
    func pendingRevocationViews(_ tx: StoreTransaction) throws -> [PendingRevocationView] {
        try tx.issuedTokens(state: .pending).map { row in
            PendingRevocationView(
                connection: row.connectionID,
                revision: row.revision,
                expiresAt: Timestamp.format(secondsSince1970: Double(row.expiresAt)),
                attempts: row.attempts,
                lastError: row.lastError,
                nextAttemptAt: row.attempts > 0 ? Timestamp.format(secondsSince1970: row.nextAttemptAt) : nil
            )
        }
    }

    /// Until when each connection's withdrawn v1 tokens stay valid (those whose time has not passed), for `status`.
    func unrevocableTokens(_ tx: StoreTransaction, now: Int64) throws -> [String: String] {
        var latest: [String: Int64] = [:]
        for row in try tx.issuedTokens(state: .unrevocable) where row.expiresAt > now {
            latest[row.connectionID] = max(latest[row.connectionID] ?? 0, row.expiresAt)
        }
        return latest.mapValues { Timestamp.format(secondsSince1970: Double($0)) }
    }

    static func revocationSettings(_ row: IssuedTokenRecord) throws(VaultError) -> ConnectionSettings {
        do {
            return try VaultJSON.decoder().decode(ConnectionSettings.self, from: Data(row.settingsJSON.utf8))
        } catch {
            throw VaultError(.internalError, "issued token \(row.id) has unreadable settings in the database")
        }
    }

    // MARK: - Sealing

    /// Seals `token` for the row `id` under a fresh data key of the row's own, wrapped by the active master key.
    func sealIssuedToken(
        _ token: SecretBytes,
        id: Int64,
        snapshot: ConnectionSnapshot,
        api: String,
        state: IssuedTokenRecord.State,
        settingsJSON: String,
        expiresAt: Int64,
        createdAt: String,
        withdrawnAt: String?
    ) throws -> IssuedTokenRecord {
        let masterKey = self.masterKey.withLock { $0 }
        let dataKey = Envelope.generateDataKey()
        let box = try Envelope.seal(
            token,
            field: Self.issuedTokenField,
            dataKey: dataKey,
            connectionID: snapshot.id,
            revision: id
        )
        let wrapped = try Envelope.wrap(
            dataKey: dataKey,
            with: masterKey,
            connectionID: Self.issuedTokenKeyBinding(snapshot.id),
            revision: id
        )
        return IssuedTokenRecord(
            id: id,
            connectionID: snapshot.id,
            revision: snapshot.revision,
            api: api,
            state: state,
            settingsJSON: settingsJSON,
            expiresAt: expiresAt,
            keyID: masterKey.id,
            dataKeyAlgorithm: Int(wrapped.algorithm.rawValue),
            dataKeyNonce: wrapped.nonce,
            wrappedDataKey: wrapped.ciphertext,
            algorithm: Int(box.algorithm.rawValue),
            nonce: box.nonce,
            ciphertext: box.ciphertext,
            createdAt: createdAt,
            withdrawnAt: withdrawnAt
        )
    }

    /// The data key of a token row. Runs inside a store transaction.
    func openIssuedTokenKey(_ row: IssuedTokenRecord, with masterKey: MasterKey) throws -> SecretBytes {
        guard row.keyID == masterKey.id else {
            throw VaultError(
                .decryptionFailed,
                "issued token \(row.id) of '\(row.connectionID)' is wrapped by master key \(row.keyID), not \(masterKey.id)"
            )
        }
        return try Envelope.unwrap(
            SealedBox(
                algorithm: try AEADAlgorithm.stored(row.dataKeyAlgorithm),
                nonce: row.dataKeyNonce,
                ciphertext: row.wrappedDataKey
            ),
            with: masterKey,
            connectionID: Self.issuedTokenKeyBinding(row.connectionID),
            revision: row.id
        )
    }

    /// The token of a row. Runs inside a store transaction.
    func openIssuedToken(_ row: IssuedTokenRecord) throws -> SecretBytes {
        let dataKey = try self.openIssuedTokenKey(row, with: self.masterKey.withLock { $0 })
        return try Envelope.open(
            SealedBox(algorithm: try AEADAlgorithm.stored(row.algorithm), nonce: row.nonce, ciphertext: row.ciphertext),
            field: Self.issuedTokenField,
            dataKey: dataKey,
            connectionID: row.connectionID,
            revision: row.id
        )
    }

    /// Re-wraps every token row's data key from `old` to `new` (inside the key rotation's transaction).
    func rewrapIssuedTokens(_ tx: StoreTransaction, from old: MasterKey, to new: MasterKey) throws -> Int {
        var count = 0
        for row in try tx.issuedTokens() {
            let dataKey = try self.openIssuedTokenKey(row, with: old)
            let wrapped = try Envelope.wrap(
                dataKey: dataKey,
                with: new,
                connectionID: Self.issuedTokenKeyBinding(row.connectionID),
                revision: row.id
            )
            try tx.updateIssuedTokenKey(
                row.id,
                keyID: new.id,
                algorithm: Int(wrapped.algorithm.rawValue),
                nonce: wrapped.nonce,
                wrapped: wrapped.ciphertext
            )
            count += 1
        }
        return count
    }
}
