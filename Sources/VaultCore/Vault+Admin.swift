import Logging
import VaultAPI
import VaultCrypto
import VaultStore

/// The admin operations (DESIGN §5, §7). Each change commits together with its audit row.
extension Vault {
    // MARK: - Create, read

    /// Creates a connection from a validated request: revision 1, every secret sealed under a fresh data key.
    public func create(_ request: CreateConnectionRequest, by actor: AuditActor) async throws -> ConnectionView {
        guard ConnectionID.isValid(request.id) else { throw Self.invalidID }
        try Self.validate(request.settings, for: request.provider)
        try self.checkTransport(request.settings)
        let values = try Self.secretValues(request.secrets, provider: request.provider)
        for field in request.provider.requiredSecrets where values[field] == nil {
            throw VaultError(.missingSecret, "\(field.rawValue) is required for \(request.provider.rawValue)")
        }
        let grants = try Self.validated(request.grants)
        try Self.checkScopes(grants.rules, provider: request.provider, settings: request.settings)
        let settingsJSON = try Self.settingsJSON(request.settings)
        let view = try await self.write { tx in
            if try tx.connection(request.id) != nil {
                throw VaultError(.alreadyExists, "connection '\(request.id)' already exists")
            }
            let now = Timestamp.now()
            let record = ConnectionRecord(
                id: request.id,
                provider: request.provider.rawValue,
                settingsJSON: settingsJSON,
                state: ConnectionState.active.rawValue,
                revision: 1,
                createdAt: now,
                updatedAt: now
            )
            try tx.insertConnection(record)
            try self.sealRevision(
                tx,
                id: request.id,
                revision: 1,
                values: values,
                previous: [],
                changed: Set(values.keys)
            )
            try Self.storeGrants(tx, of: request.id, grants)
            var detail = "provider \(request.provider.rawValue); secrets \(Self.fieldList(values.keys)); revision 1"
            if !grants.isEmpty { detail += "; grants: \(Self.grantsDescription(grants))" }
            try tx.appendAudit(
                Self.auditEntry(actor, action: "connection.create", connection: request.id, detail: detail)
            )
            return try self.view(tx, record)
        }
        self.logger.info(
            "connection created",
            metadata: ["connection.id": "\(request.id)", "actor.uid": "\(actor.uid)"]
        )
        self.notify(ConnectionChange(id: request.id, kind: .created, revision: 1))
        return view
    }

    /// Every connection, masked.
    public func list() async throws -> [ConnectionView] {
        try await self.read { tx in try self.views(tx) }
    }

    /// A page of the list: the masked views of up to `limit` connections with ids after `after` (nil: from the
    /// first), in id order; fewer than `limit` (or none) when the list ends there.
    ///
    /// Each page is one read of its own, so that a streamed list of 100,000 connections never holds the database's
    /// one queue for longer than a page (a token miss waits for one page, not the whole list). A view is what its
    /// connection was at its page's read; the pages together list every connection that existed throughout, each
    /// once, in id order, and a connection added or disconnected meanwhile is listed or not by where its id falls
    /// (docs/decisions.md, "The streamed connection list").
    public func listPage(after: String?, limit: Int) async throws -> [ConnectionView] {
        precondition(limit > 0, "a page holds at least one connection")
        return try await self.read { tx in try self.views(tx, after: after, limit: limit) }
    }

    /// One connection, masked. - Throws: `not_found`.
    public func view(_ id: String) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        return try await self.read { tx in
            guard let record = try tx.connection(id) else { throw VaultError.notFound(id) }
            return try self.view(tx, record)
        }
    }

    // MARK: - Edit, reset

    /// Changes settings, secrets and/or grants. Every edit writes a new revision: fresh data key, fresh nonces,
    /// every secret re-encrypted; the old revision's data key is destroyed.
    public func edit(
        _ id: String,
        _ request: EditConnectionRequest,
        by actor: AuditActor
    ) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        guard !request.settings.isEmpty || !request.secrets.isEmpty || request.grants != nil else {
            throw VaultError(.badRequest, "the edit changes nothing: give settings, secrets or grants")
        }
        let grants = try request.grants.map { grants throws(VaultError) in try Self.validated(grants) }
        let (view, revision) = try await self.write { tx in
            guard var record = try tx.connection(id) else { throw VaultError.notFound(id) }
            let provider = try Self.provider(record)
            let previous = try Self.settings(record)
            let settings = request.settings.applied(to: previous)
            try Self.validate(settings, for: provider)
            if request.settings.apiBaseURL != .keep { try self.checkTransport(settings) }
            let newValues = try Self.secretValues(request.secrets, provider: provider)
            if settings.effectiveAPIBaseURL != previous.effectiveAPIBaseURL {
                try Self.requireSecrets(newValues, provider: provider)
            }
            if let grants {
                try Self.checkScopes(grants.rules, provider: provider, settings: settings)
            } else if !request.settings.isEmpty {
                // The stored rules must still narrow the connection's scope: refused rather than left dead.
                try Self.checkScopes(
                    try Self.grants(tx, of: id).rules,
                    provider: provider,
                    settings: settings,
                    context: "the new settings do not fit the grant rules: "
                )
            }
            try self.sealNextRevision(tx, &record, replacing: newValues)
            record.settingsJSON = try Self.settingsJSON(settings)
            if let grants { try Self.storeGrants(tx, of: id, grants) }
            try Self.withdrawIssuedTokens(tx, id)
            try tx.updateConnection(record)
            var changes: [String] = []
            if !request.settings.isEmpty { changes.append("settings") }
            if !newValues.isEmpty { changes.append("secrets \(Self.fieldList(newValues.keys))") }
            if let grants { changes.append("grants: \(Self.grantsDescription(grants))") }
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "connection.edit",
                    connection: id,
                    detail: "\(changes.joined(separator: ", ")); revision \(record.revision)"
                )
            )
            return (try self.view(tx, record), record.revision)
        }
        if !request.secrets.isEmpty { try? await self.database.checkpointTruncate() }
        self.notify(ConnectionChange(id: id, kind: .edited, revision: revision))
        return view
    }

    /// Replaces the credentials (unchanged fields are kept, e.g. the client id), bumps the revision, clears the
    /// last error and returns the connection to `active`.
    public func reset(_ id: String, secrets: SecretsInput, by actor: AuditActor) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        let (view, revision) = try await self.write { tx in
            guard var record = try tx.connection(id) else { throw VaultError.notFound(id) }
            let provider = try Self.provider(record)
            let newValues = try Self.secretValues(secrets, provider: provider)
            let secretField: SecretField = provider == .personioRecruiting ? .recruitingToken : .clientSecret
            guard newValues[secretField] != nil else {
                throw VaultError(.missingSecret, "a reset needs the new \(secretField.rawValue)")
            }
            guard case .changed(let state) = try Lifecycle.transition(from: try Self.state(record), .reset) else {
                throw VaultError(.internalError, "reset did not change the state")
            }
            try self.sealNextRevision(tx, &record, replacing: newValues)
            record.state = state.rawValue
            record.lastError = nil
            record.disabledReason = nil
            try Self.withdrawIssuedTokens(tx, id)
            try tx.updateConnection(record)
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "connection.reset",
                    connection: id,
                    detail: "secrets \(Self.fieldList(newValues.keys)); revision \(record.revision)"
                )
            )
            return (try self.view(tx, record), record.revision)
        }
        try? await self.database.checkpointTruncate()
        self.logger.info(
            "connection reset",
            metadata: ["connection.id": "\(id)", "connection.revision": "\(revision)"]
        )
        self.notify(ConnectionChange(id: id, kind: .reset, revision: revision))
        return view
    }

    // MARK: - Disable, enable

    /// Stops token issue for the connection; reversible with `enable`. Idempotent.
    public func disable(_ id: String, reason: String?, by actor: AuditActor) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        if let reason, reason.utf8.count > 500 || reason.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            throw VaultError(.badRequest, "reason must be at most 500 characters on one line")
        }
        let (view, changed) = try await self.transition(id, .disable, by: actor) { record in
            record.disabledReason = reason
            return reason.map { "reason: \($0)" } ?? "no reason given"
        }
        if changed { self.notify(ConnectionChange(id: id, kind: .disabled, revision: Int64(view.revision))) }
        return view
    }

    /// Resumes token issue for a disabled connection. Idempotent; refused in `needs_reset`.
    public func enable(_ id: String, by actor: AuditActor) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        let (view, changed) = try await self.transition(id, .enable, by: actor) { record in
            record.disabledReason = nil
            return ""
        }
        if changed { self.notify(ConnectionChange(id: id, kind: .enabled, revision: Int64(view.revision))) }
        return view
    }

    /// Records that Personio rejected the credentials of `revision`: the connection moves to `needs_reset`.
    /// Ignored when the connection has moved on to another revision since (a reset raced the rejection).
    public func markNeedsReset(_ id: String, revision: Int64, error: String) async throws {
        let changed = try await self.write { tx -> Bool in
            guard var record = try tx.connection(id), record.revision == revision else { return false }
            guard
                case .changed(let state) = try Lifecycle.transition(from: try Self.state(record), .credentialsRejected)
            else {
                return false
            }
            record.state = state.rawValue
            record.lastError = error
            record.updatedAt = Timestamp.now()
            try Self.withdrawIssuedTokens(tx, id)
            try tx.updateConnection(record)
            try tx.appendAudit(
                Self.auditEntry(
                    Self.daemonActor,
                    action: "connection.needs_reset",
                    connection: id,
                    outcome: "rejected",
                    detail: "Personio rejected the credentials of revision \(revision): \(error)"
                )
            )
            return true
        }
        if changed {
            self.logger.warning("connection needs reset", metadata: ["connection.id": "\(id)", "error": "\(error)"])
            self.notify(ConnectionChange(id: id, kind: .needsReset, revision: revision))
        }
    }

    /// Records the last upstream error of a connection without changing its state (shown in `show`).
    public func recordLastError(_ id: String, revision: Int64, error: String?) async throws {
        try await self.write { tx in
            guard var record = try tx.connection(id), record.revision == revision, record.lastError != error else {
                return
            }
            record.lastError = error
            try tx.updateConnection(record)
        }
    }

    /// Applies a lifecycle action; writes the record and an audit row only when the state changes.
    private func transition(
        _ id: String,
        _ action: Lifecycle.Action,
        by actor: AuditActor,
        update: @escaping @Sendable (inout ConnectionRecord) -> String
    ) async throws -> (ConnectionView, Bool) {
        try await self.write { tx in
            guard var record = try tx.connection(id) else { throw VaultError.notFound(id) }
            switch try Lifecycle.transition(from: try Self.state(record), action) {
            case .unchanged:
                return (try self.view(tx, record), false)
            case .changed(let state):
                let from = record.state
                record.state = state.rawValue
                record.updatedAt = Timestamp.now()
                let detail = update(&record)
                if state != .active { try Self.withdrawIssuedTokens(tx, id) }
                try tx.updateConnection(record)
                try tx.appendAudit(
                    Self.auditEntry(
                        actor,
                        action: "connection.\(action.rawValue)",
                        connection: id,
                        detail: "\(from) -> \(state.rawValue)\(detail.isEmpty ? "" : "; " + detail)"
                    )
                )
                return (try self.view(tx, record), true)
            }
        }
    }

    // MARK: - Disconnect, grants

    /// Deletes the connection with its data key and ciphertexts (crypto-shred: without the data key nothing can be
    /// decrypted), then checkpoints the WAL so no copy lingers there. Only the audit trail remains.
    public func disconnect(_ id: String, by actor: AuditActor) async throws {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        try await self.write { tx in
            guard let record = try tx.connection(id) else { throw VaultError.notFound(id) }
            // The tokens outlive the connection until they are revoked (or, v1, expire).
            try Self.withdrawIssuedTokens(tx, id)
            try tx.deleteConnection(id)
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "connection.disconnect",
                    connection: id,
                    detail: "provider \(record.provider); revision \(record.revision); secrets shredded"
                )
            )
        }
        do {
            try await self.database.checkpointTruncate()
        } catch {
            self.logger.warning("WAL checkpoint after disconnect failed", metadata: ["error": "\(error)"])
        }
        self.logger.info("connection disconnected", metadata: ["connection.id": "\(id)", "actor.uid": "\(actor.uid)"])
        self.notify(ConnectionChange(id: id, kind: .disconnected, revision: nil))
    }

    /// Replaces who may ask for the connection's tokens.
    public func setGrants(_ id: String, _ grants: Grants, by actor: AuditActor) async throws -> ConnectionView {
        guard ConnectionID.isValid(id) else { throw Self.invalidID }
        let grants = try Self.validated(grants)
        let view = try await self.write { tx in
            guard var record = try tx.connection(id) else { throw VaultError.notFound(id) }
            try Self.checkScopes(grants.rules, provider: try Self.provider(record), settings: try Self.settings(record))
            record.updatedAt = Timestamp.now()
            try Self.storeGrants(tx, of: id, grants)
            try tx.updateConnection(record)
            try tx.appendAudit(
                Self.auditEntry(
                    actor,
                    action: "connection.grants",
                    connection: id,
                    detail: Self.grantsDescription(grants)
                )
            )
            return try self.view(tx, record)
        }
        self.notify(ConnectionChange(id: id, kind: .grantsChanged, revision: Int64(view.revision)))
        return view
    }

    // MARK: - Validation

    static let invalidID = VaultError(
        .invalidID,
        "connection ids are 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )

    static func validate(_ settings: ConnectionSettings, for provider: Provider) throws(VaultError) {
        if let first = settings.validationErrors(for: provider).first {
            throw VaultError(.invalidSetting, "\(first.field) \(first.reason)")
        }
    }

    /// Refuses a plain `http://` API base unless the daemon runs with `--dev` or `--allow-insecure-upstream`.
    func checkTransport(_ settings: ConnectionSettings) throws(VaultError) {
        guard !self.configuration.allowInsecureUpstream, settings.effectiveAPIBaseURL.hasPrefix("http://") else {
            return
        }
        throw VaultError(
            .invalidSetting,
            "api_base_url uses plain http://, which connvaultd accepts only with --dev or --allow-insecure-upstream"
        )
    }

    /// Refuses an edit that sends the connection's credentials somewhere new without them: an admin sees secrets
    /// only as fingerprints, and must not be able to redirect a secret they do not know to a listener of their own.
    /// The provider cannot be edited at all, so the API base is the only destination an edit can change.
    static func requireSecrets(_ values: SecretValues, provider: Provider) throws(VaultError) {
        let missing = provider.requiredSecrets.filter { values[$0] == nil }
        guard !missing.isEmpty else { return }
        throw VaultError(
            .secretsRequired,
            "changing api_base_url needs the connection's secrets again: give \(Self.fieldList(provider.requiredSecrets)) with the edit"
        )
    }

    static func fieldList(_ fields: some Sequence<SecretField>) -> String {
        fields.map(\.rawValue).sorted().joined(separator: ",")
    }
}
