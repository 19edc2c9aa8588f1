import VaultAPI

/// Human-readable renderings of the daemon's views. Secrets appear only as `set  fingerprint  updated_at`.
enum ViewRenderer {
    static let none = "-"

    // MARK: - Connections

    static func connection(_ view: ConnectionView) -> String {
        var sections: [String] = []
        var summary = TableFormatter()
        summary.append(["id", view.id])
        summary.append(["provider", view.provider.rawValue])
        summary.append(["state", view.state.rawValue])
        if let reason = view.disabledReason { summary.append(["disabled reason", reason]) }
        summary.append(["revision", String(view.revision)])
        summary.append(["created", view.createdAt])
        summary.append(["updated", view.updatedAt])
        summary.append(["last error", view.lastError ?? Self.none])
        if view.pendingRevocations > 0 {
            summary.append(["pending revocations", "\(view.pendingRevocations) (tokens of a previous state)"])
        }
        if let until = view.tokensValidUntil { summary.append(["old v1 tokens", Self.v1Validity(until)]) }
        sections.append(summary.render())

        var settings = TableFormatter(indent: 2)
        let values = view.settings
        let baseURL = values.apiBaseURL ?? "\(ConnectionSettings.defaultAPIBaseURL) (default)"
        settings.append(["api_base_url", baseURL])
        if let appID = values.appID { settings.append(["app_id", appID]) }
        if let partnerID = values.partnerID { settings.append(["partner_id", partnerID]) }
        if let scope = values.scope { settings.append(["scope", scope]) }
        if let companyID = values.companyID { settings.append(["company_id", companyID]) }
        let permissions = values.permissions ?? []
        settings.append(["permissions", permissions.isEmpty ? Self.none : permissions.joined(separator: ", ")])
        settings.append(["proxy_max_body", Self.proxyMaxBody(values)])
        sections.append("settings\n" + settings.render())

        var secrets = TableFormatter(indent: 2)
        for (field, secret) in view.secrets.sorted(by: { $0.key < $1.key }) {
            secrets.append([field, secret.set ? "set" : "unset", secret.fingerprint, secret.updatedAt])
        }
        sections.append("secrets\n" + (secrets.rows.isEmpty ? "  " + Self.none : secrets.render()))

        sections.append("grants\n" + Self.grants(view.grants))
        return sections.joined(separator: "\n")
    }

    /// `2097152 (2 MiB)`, `1536`, or `67108864 (64 MiB, default)` when the setting is not set.
    static func proxyMaxBody(_ settings: ConnectionSettings) -> String {
        let bytes = settings.effectiveProxyMaxBody
        let units: [(factor: Int, name: String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        var notes: [String] = []
        if let unit = units.first(where: { bytes % $0.factor == 0 && bytes >= $0.factor }) {
            notes.append("\(bytes / unit.factor) \(unit.name)")
        }
        if settings.proxyMaxBody == nil { notes.append("default") }
        return notes.isEmpty ? "\(bytes)" : "\(bytes) (\(notes.joined(separator: ", ")))"
    }

    static func grants(_ grants: Grants) -> String {
        var table = TableFormatter(indent: 2)
        table.append(["uids", Self.list(grants.uids.map(String.init))])
        table.append(["groups", Self.list(grants.groups)])
        table.append(["units", Self.list(grants.units)])
        if grants.rules.isEmpty { table.append(["rules", Self.none]) }
        for (index, rule) in grants.rules.enumerated() {
            table.append(["rule \(index + 1)", "callers: " + Self.ruleCallers(rule)])
            table.append(["", "may: " + Self.ruleAllows(rule)])
        }
        return table.render()
    }

    /// `unit=hr-export.service, exe=/usr/bin/python3`: who a rule names, every selector of which must hold.
    static func ruleCallers(_ rule: GrantRule) -> String {
        var parts: [String] = []
        if let uid = rule.uid { parts.append("uid=\(uid)") }
        if let group = rule.group { parts.append("group=\(group)") }
        if let unit = rule.unit { parts.append("unit=\(unit)") }
        if let exe = rule.exe { parts.append("exe=\(exe)") }
        if let hash = rule.exeSHA256 { parts.append("exe_sha256=\(hash)") }
        return parts.joined(separator: ", ")
    }

    /// `scope personio:persons:read; proxy GET /v2/persons, GET /v2/persons/*; proxy only; 60 per minute`: what a
    /// rule lets its callers do.
    static func ruleAllows(_ rule: GrantRule) -> String {
        var parts: [String] = []
        parts.append("scope " + (rule.scope ?? "(the connection's)"))
        if let proxy = rule.proxy {
            parts.append(proxy.isEmpty ? "no proxied request" : "proxy " + proxy.joined(separator: ", "))
        } else {
            parts.append("proxy any path")
        }
        parts.append(rule.token == false ? "no token (proxy only)" : "token")
        if let rate = rule.ratePerMinute { parts.append("\(rate) per minute") }
        return parts.joined(separator: "; ")
    }

    static func connectionList(_ list: ConnectionList) -> String {
        guard !list.connections.isEmpty else { return "no connections" }
        var table = TableFormatter(header: ["ID", "PROVIDER", "STATE", "REVISION", "GRANTS", "UPDATED", "LAST ERROR"])
        for view in list.connections {
            let grantCount =
                view.grants.uids.count + view.grants.groups.count + view.grants.units.count + view.grants.rules.count
            table.append([
                view.id, view.provider.rawValue, view.state.rawValue, String(view.revision), String(grantCount),
                view.updatedAt, view.lastError ?? Self.none,
            ])
        }
        return table.render()
    }

    /// One line after a state change: `acme: disabled (revision 4)`, and a second for a v1 connection whose tokens
    /// already handed out stay valid (v1 has no revocation).
    static func stateLine(_ view: ConnectionView) -> String {
        var line = "\(TableFormatter.sanitize(view.id)): \(view.state.rawValue) (revision \(view.revision))"
        if let until = view.tokensValidUntil { line += "\n" + Self.v1Validity(until) }
        return line
    }

    /// Personio v1 cannot revoke a token: say until when the ones already handed out keep working.
    static func v1Validity(_ until: String) -> String {
        "v1 tokens already handed out stay valid until \(TableFormatter.sanitize(until)) (Personio v1 cannot revoke them)"
    }

    // MARK: - Vault

    static func audit(_ list: AuditList) -> String {
        guard !list.entries.isEmpty else { return "no audit entries" }
        var table = TableFormatter(header: ["SEQ", "TIME", "ACTOR", "ACTION", "CONNECTION", "OUTCOME", "DETAIL"])
        for entry in list.entries {
            var actor = "\(entry.actor.comm)[\(entry.actor.pid)] uid=\(entry.actor.uid)"
            if let unit = entry.actor.unit { actor += " \(unit)" }
            table.append([
                String(entry.seq), entry.time, actor, entry.action, entry.connection ?? Self.none, entry.outcome,
                entry.detail.isEmpty ? Self.none : entry.detail,
            ])
        }
        return table.render()
    }

    static func auditVerification(_ verification: AuditVerification) -> String {
        if verification.intact {
            let head = verification.head.map { ", head \($0)" } ?? ""
            return "audit trail intact: \(verification.entries) entries\(head)"
        }
        return "audit trail broken" + Self.breakDescription(verification)
    }

    static func breakDescription(_ verification: AuditVerification) -> String {
        let location = verification.brokenAt.map { " at seq \($0)" } ?? ""
        let reason = verification.reason.map { ": \(TableFormatter.sanitize($0))" } ?? ""
        return location + reason
    }

    static func status(_ status: StatusView) -> String {
        var table = TableFormatter()
        table.append(["version", status.version])
        table.append(["pid", String(status.pid)])
        table.append(["uptime", Self.duration(status.uptimeSeconds)])
        let states = status.byState.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        table.append(["connections", states.isEmpty ? String(status.connections) : "\(status.connections) (\(states))"])
        table.append(["needs reset", Self.list(status.needsReset)])
        table.append(["master key", "id \(status.masterKeyID), created \(status.masterKeyCreatedAt)"])
        table.append(["aead", status.aead])
        table.append(["audit entries", String(status.auditEntries)])
        table.append(["database", "\(status.databaseBytes) bytes"])
        table.append(["pending revocations", String(status.pendingRevocations.count)])
        var sections = [table.render()]
        if !status.pendingRevocations.isEmpty {
            var pending = TableFormatter(header: [
                "CONNECTION", "REVISION", "EXPIRES", "ATTEMPTS", "NEXT", "LAST ERROR",
            ])
            for row in status.pendingRevocations {
                pending.append([
                    row.connection, String(row.revision), row.expiresAt, String(row.attempts),
                    row.nextAttemptAt ?? Self.none, row.lastError ?? Self.none,
                ])
            }
            sections.append("pending revocations\n" + pending.render())
        }
        for (connection, until) in status.tokensValidUntil.sorted(by: { $0.key < $1.key }) {
            sections.append("\(TableFormatter.sanitize(connection)): " + Self.v1Validity(until))
        }
        return sections.joined(separator: "\n")
    }

    static func keyRotation(_ result: KeyRotationResult) -> String {
        "master key rotated: new key id \(result.keyID), \(result.rewrappedDataKeys) data keys re-wrapped"
    }

    static func verification(_ result: VerifyResult) -> String {
        var line = "\(TableFormatter.sanitize(result.connection)): credentials accepted by Personio"
        if let expiresIn = result.expiresIn { line += "; token valid for \(expiresIn) s" }
        if let scope = result.scope { line += " (scope \(TableFormatter.sanitize(scope)))" }
        return line
    }

    // MARK: - Helpers

    static func list(_ items: [String]) -> String {
        items.isEmpty ? Self.none : items.joined(separator: ", ")
    }

    static func duration(_ seconds: Int) -> String {
        let days = seconds / 86_400
        let hours = seconds % 86_400 / 3_600
        let minutes = seconds % 3_600 / 60
        if days > 0 { return "\(days)d \(hours)h \(minutes)m" }
        if hours > 0 { return "\(hours)h \(minutes)m" }
        if minutes > 0 { return "\(minutes)m \(seconds % 60)s" }
        return "\(seconds)s"
    }
}
