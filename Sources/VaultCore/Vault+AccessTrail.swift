import VaultAPI
import VaultStore

extension Vault {
    /// Records that a caller identity (uid, unit, executable) received an access token of connection `id` for the
    /// first time (`token.issued`, DESIGN §10). The detail names the identity, the rule and the token's expiry,
    /// never the token.
    package func recordTokenIssued(_ id: String, to actor: AuditActor, detail: String) async throws {
        _ = try await self.write { tx in
            try tx.appendAudit(
                Self.auditEntry(actor, action: "token.issued", connection: id, outcome: "ok", detail: detail)
            )
        }
    }

    /// Records proxied or token requests of connection `id` refused by policy (`proxy.refused`): `reason` is the
    /// problem code answered (`not_allowed`, `rate_limited`, `token_not_exportable`); the detail says how many
    /// requests the row stands for (the broker coalesces a looping caller's refusals).
    package func recordProxyRefused(_ id: String, by actor: AuditActor, reason: String, detail: String) async throws {
        _ = try await self.write { tx in
            try tx.appendAudit(
                Self.auditEntry(actor, action: "proxy.refused", connection: id, outcome: reason, detail: detail)
            )
        }
    }
}
