import VaultAPI
import VaultCrypto
import VaultStore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Vault {
    /// The masked admin view: secrets only as set / fingerprint / updated_at.
    func view(_ tx: StoreTransaction, _ record: ConnectionRecord) throws -> ConnectionView {
        try Self.view(
            record,
            secrets: try tx.secrets(of: record.id).map {
                SecretSummary(
                    connectionID: $0.connectionID,
                    field: $0.field,
                    fingerprint: $0.fingerprint,
                    updatedAt: $0.updatedAt
                )
            },
            grants: try Self.grants(tx, of: record.id),
            tokens: IssuedTokenSummary(
                pending: try tx.pendingRevocationCount(of: record.id),
                unrevocableUntil: try tx.unrevocableUntil(of: record.id, now: Self.unixNow())
            )
        )
    }

    /// Every connection's masked view, from one read of each table (``StoreTransaction/secretSummaries()`` and its
    /// siblings) rather than five queries per connection; each view is the one ``view(_:_:)`` makes.
    func views(_ tx: StoreTransaction) throws -> [ConnectionView] {
        let records = try tx.connections()
        var secrets: [String: [SecretSummary]] = [:]
        for secret in try tx.secretSummaries() { secrets[secret.connectionID, default: []].append(secret) }
        let grants = try tx.allGrants()
        let rules = try tx.allGrantRules()
        let tokens = try tx.issuedTokenSummaries(now: Self.unixNow())
        return try Self.views(records, secrets: secrets, grants: grants, rules: rules, tokens: tokens)
    }

    /// The masked views of up to `limit` connections after id `after` (nil: from the first), in id order: the views
    /// ``views(_:)`` makes for them, from one read of each table over the page's id range.
    func views(_ tx: StoreTransaction, after: String?, limit: Int) throws -> [ConnectionView] {
        let records = try tx.connections(after: after, limit: limit)
        guard let first = records.first?.id, let last = records.last?.id else { return [] }
        let secrets = try tx.secretSummaries(from: first, through: last)
        let grants = try tx.grants(from: first, through: last)
        let rules = try tx.grantRules(from: first, through: last)
        let tokens = try tx.issuedTokenSummaries(from: first, through: last, now: Self.unixNow())
        return try Self.views(records, secrets: secrets, grants: grants, rules: rules, tokens: tokens)
    }

    /// The views of `records`, from what one read of each table gave, keyed by connection id.
    private static func views(
        _ records: [ConnectionRecord],
        secrets: [String: [SecretSummary]],
        grants: [String: [GrantRecord]],
        rules: [String: [GrantRuleRecord]],
        tokens: [String: IssuedTokenSummary]
    ) throws -> [ConnectionView] {
        try records.map { record in
            try Self.view(
                record,
                secrets: secrets[record.id] ?? [],
                grants: try Self.grants(of: record.id, records: grants[record.id] ?? [], rules: rules[record.id] ?? []),
                tokens: tokens[record.id] ?? IssuedTokenSummary(pending: 0, unrevocableUntil: nil)
            )
        }
    }

    static func view(
        _ record: ConnectionRecord,
        secrets: [SecretSummary],
        grants: Grants,
        tokens: IssuedTokenSummary
    ) throws -> ConnectionView {
        var fields: [String: SecretFieldView] = [:]
        for secret in secrets {
            fields[secret.field] = SecretFieldView(
                set: true,
                fingerprint: secret.fingerprint,
                updatedAt: secret.updatedAt
            )
        }
        return ConnectionView(
            id: record.id,
            provider: try Self.provider(record),
            state: try Self.state(record),
            revision: Int(record.revision),
            settings: try Self.settings(record),
            secrets: fields,
            grants: grants,
            createdAt: record.createdAt,
            updatedAt: record.updatedAt,
            lastError: record.lastError,
            disabledReason: record.disabledReason,
            tokensValidUntil: tokens.unrevocableUntil.map { Timestamp.format(secondsSince1970: Double($0)) },
            pendingRevocations: tokens.pending
        )
    }

    static func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func provider(_ record: ConnectionRecord) throws(VaultError) -> Provider {
        guard let provider = Provider(rawValue: record.provider) else {
            throw VaultError(.internalError, "connection '\(record.id)' has unknown provider in the database")
        }
        return provider
    }

    static func state(_ record: ConnectionRecord) throws(VaultError) -> ConnectionState {
        guard let state = ConnectionState(rawValue: record.state) else {
            throw VaultError(.internalError, "connection '\(record.id)' has unknown state in the database")
        }
        return state
    }

    static func settings(_ record: ConnectionRecord) throws(VaultError) -> ConnectionSettings {
        // The vault's own form without JSONDecoder (a quarter of a large list's time); anything else as before.
        if let settings = StoredSettings.decode(record.settingsJSON) { return settings }
        do {
            return try VaultJSON.decoder().decode(ConnectionSettings.self, from: Data(record.settingsJSON.utf8))
        } catch {
            throw VaultError(.internalError, "connection '\(record.id)' has unreadable settings in the database")
        }
    }

    static func settingsJSON(_ settings: ConnectionSettings) throws(VaultError) -> String {
        do {
            return String(decoding: try VaultJSON.encoder().encode(settings), as: UTF8.self)
        } catch {
            throw VaultError(.internalError, "cannot encode settings")
        }
    }

    static func auditEntryView(_ record: AuditRecord) -> AuditEntry {
        AuditEntry(
            seq: record.seq,
            time: record.time,
            actor: AuditActor(
                uid: UInt32(truncatingIfNeeded: record.actorUID),
                pid: Int32(truncatingIfNeeded: record.actorPID),
                comm: record.actorComm,
                unit: record.actorUnit
            ),
            action: record.action,
            connection: record.connectionID,
            outcome: record.outcome,
            detail: record.detail,
            hash: Hashing.hex(record.hash)
        )
    }
}
