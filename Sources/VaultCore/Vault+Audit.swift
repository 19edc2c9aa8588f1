import VaultAPI
import VaultCrypto
import VaultStore

#if canImport(Glibc)
import Glibc
#endif

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Vault {
    /// Audit rows, oldest first, after `since` and written at or after `from` (RFC 3339 UTC, whole seconds, as
    /// ``AuditSince`` spells it), optionally of one connection (also after it was disconnected).
    public func audit(connection: String?, since: Int64?, from: String? = nil, limit: Int) async throws -> [AuditEntry]
    {
        if let connection, !ConnectionID.isValid(connection) { throw Self.invalidID }
        let limit = max(1, min(limit, 1000))
        return try await self.read { tx in
            try tx.audit(connection: connection, since: since, from: from, limit: limit).map(Self.auditEntryView)
        }
    }

    /// Walks the hash chain: intact, or where it breaks and why.
    public func verifyAudit() async throws -> AuditVerification {
        let report = try await self.read { tx in try tx.verifyAuditChain() }
        return AuditVerification(
            intact: report.brokenAt == nil,
            entries: report.entries,
            head: report.head.map(Hashing.hex),
            brokenAt: report.brokenAt,
            reason: report.reason
        )
    }

    /// Counts, key and database facts for `connvaultctl status`.
    public func status() async throws -> StatusView {
        let now = Int64(Date().timeIntervalSince1970)
        let (counts, needsReset, auditCount, key, pending, unrevocable) = try await self.read { tx in
            (
                try tx.connectionCountsByState(),
                try tx.connections().filter { $0.state == ConnectionState.needsReset.rawValue }.map(\.id),
                try tx.auditCount(),
                try tx.activeMasterKey(),
                try self.pendingRevocationViews(tx),
                try self.unrevocableTokens(tx, now: now)
            )
        }
        var byState: [String: Int] = [:]
        for state in ConnectionState.allCases { byState[state.rawValue] = counts[state.rawValue] ?? 0 }
        let uptime = ContinuousClock.now - self.startedAt
        return StatusView(
            version: Self.version,
            pid: getpid(),
            uptimeSeconds: Int(uptime.components.seconds),
            connections: counts.values.reduce(0, +),
            byState: byState,
            needsReset: needsReset,
            masterKeyID: key?.id ?? 0,
            masterKeyCreatedAt: key?.createdAt ?? "",
            aead: AEADAlgorithm.preferred.description,
            auditEntries: auditCount,
            databaseBytes: self.database.fileSize(),
            pendingRevocations: pending,
            tokensValidUntil: unrevocable
        )
    }

    /// `PRAGMA integrity_check` of the database ("ok" when sound).
    public func integrityCheck() async throws -> String {
        try await self.database.integrityCheck()
    }
}

extension Vault {
    /// Records the outcome of `verify` (which changes no connection state by itself).
    public func recordVerification(_ id: String, by actor: AuditActor, ok: Bool, detail: String) async throws {
        _ = try await self.write { tx in
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "connection.verify",
                    connection: id,
                    outcome: ok ? "ok" : "failed",
                    detail: detail
                )
            )
        }
    }
}

extension Vault {
    /// Records that Personio's answer to a proxied request carried the credential the proxy injected, and that the
    /// caller got it overwritten (`proxy.credential_echo`). The detail names the kind of credential, never its value.
    package func recordCredentialEcho(_ id: String, by actor: AuditActor, kind: String) async throws {
        _ = try await self.write { tx in
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "proxy.credential_echo",
                    connection: id,
                    outcome: "scrubbed",
                    detail: "the answer carried the injected \(kind); every occurrence was overwritten with '*'"
                )
            )
        }
    }
}
