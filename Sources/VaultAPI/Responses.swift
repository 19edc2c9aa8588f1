/// How a secret appears in an admin view: never its value.
public struct SecretFieldView: Codable, Sendable, Equatable {
    public var set: Bool
    /// Keyed BLAKE2b of the value under a subkey of the master key, first 8 bytes as hex.
    public var fingerprint: String
    public var updatedAt: String

    public init(set: Bool, fingerprint: String, updatedAt: String) {
        self.set = set
        self.fingerprint = fingerprint
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case set, fingerprint
        case updatedAt = "updated_at"
    }
}

/// The masked view of a connection on the admin socket (DESIGN §7).
public struct ConnectionView: Codable, Sendable, Equatable {
    public var id: String
    public var provider: Provider
    public var state: ConnectionState
    public var revision: Int
    public var settings: ConnectionSettings
    public var secrets: [String: SecretFieldView]
    public var grants: Grants
    public var createdAt: String
    public var updatedAt: String
    public var lastError: String?
    public var disabledReason: String?
    /// v1 only (no revoke endpoint): until when tokens already handed out for a previous state of the connection stay
    /// valid at Personio; nil once that time has passed (DESIGN §11).
    public var tokensValidUntil: String?
    /// How many tokens handed out for a previous state still wait for revocation at Personio.
    public var pendingRevocations: Int

    public init(
        id: String,
        provider: Provider,
        state: ConnectionState,
        revision: Int,
        settings: ConnectionSettings,
        secrets: [String: SecretFieldView],
        grants: Grants,
        createdAt: String,
        updatedAt: String,
        lastError: String?,
        disabledReason: String?,
        tokensValidUntil: String? = nil,
        pendingRevocations: Int = 0
    ) {
        self.id = id
        self.provider = provider
        self.state = state
        self.revision = revision
        self.settings = settings
        self.secrets = secrets
        self.grants = grants
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastError = lastError
        self.disabledReason = disabledReason
        self.tokensValidUntil = tokensValidUntil
        self.pendingRevocations = pendingRevocations
    }

    enum CodingKeys: String, CodingKey {
        case id, provider, state, revision, settings, secrets, grants
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case lastError = "last_error"
        case disabledReason = "disabled_reason"
        case tokensValidUntil = "tokens_valid_until"
        case pendingRevocations = "pending_revocations"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.provider = try container.decode(Provider.self, forKey: .provider)
        self.state = try container.decode(ConnectionState.self, forKey: .state)
        self.revision = try container.decode(Int.self, forKey: .revision)
        self.settings = try container.decode(ConnectionSettings.self, forKey: .settings)
        self.secrets = try container.decode([String: SecretFieldView].self, forKey: .secrets)
        self.grants = try container.decode(Grants.self, forKey: .grants)
        self.createdAt = try container.decode(String.self, forKey: .createdAt)
        self.updatedAt = try container.decode(String.self, forKey: .updatedAt)
        self.lastError = try container.decodeIfPresent(String.self, forKey: .lastError)
        self.disabledReason = try container.decodeIfPresent(String.self, forKey: .disabledReason)
        // Added later: a daemon of an earlier version does not send them.
        self.tokensValidUntil = try container.decodeIfPresent(String.self, forKey: .tokensValidUntil)
        self.pendingRevocations = try container.decodeIfPresent(Int.self, forKey: .pendingRevocations) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.id, forKey: .id)
        try container.encode(self.provider, forKey: .provider)
        try container.encode(self.state, forKey: .state)
        try container.encode(self.revision, forKey: .revision)
        try container.encode(self.settings, forKey: .settings)
        try container.encode(self.secrets, forKey: .secrets)
        try container.encode(self.grants, forKey: .grants)
        try container.encode(self.createdAt, forKey: .createdAt)
        try container.encode(self.updatedAt, forKey: .updatedAt)
        // Always present, null when unset: scripts can rely on the member.
        try container.encode(self.lastError, forKey: .lastError)
        try container.encode(self.disabledReason, forKey: .disabledReason)
        try container.encode(self.tokensValidUntil, forKey: .tokensValidUntil)
        try container.encode(self.pendingRevocations, forKey: .pendingRevocations)
    }
}

/// A token handed out for a previous state of a connection that waits for revocation at Personio (`GET /v1/status`).
public struct PendingRevocationView: Codable, Sendable, Equatable {
    public var connection: String
    public var revision: Int64
    /// When the token expires at Personio; the revocation is given up then.
    public var expiresAt: String
    /// Failed attempts so far.
    public var attempts: Int
    public var lastError: String?
    public var nextAttemptAt: String?

    public init(
        connection: String,
        revision: Int64,
        expiresAt: String,
        attempts: Int,
        lastError: String?,
        nextAttemptAt: String?
    ) {
        self.connection = connection
        self.revision = revision
        self.expiresAt = expiresAt
        self.attempts = attempts
        self.lastError = lastError
        self.nextAttemptAt = nextAttemptAt
    }

    enum CodingKeys: String, CodingKey {
        case connection, revision, attempts
        case expiresAt = "expires_at"
        case lastError = "last_error"
        case nextAttemptAt = "next_attempt_at"
    }
}

/// `GET /v1/connections` on the admin socket.
public struct ConnectionList: Codable, Sendable, Equatable {
    public var connections: [ConnectionView]
    public init(connections: [ConnectionView]) { self.connections = connections }
}

/// Who did something, from the socket's peer credentials.
public struct AuditActor: Codable, Sendable, Equatable {
    public var uid: UInt32
    public var pid: Int32
    public var comm: String
    public var unit: String?

    public init(uid: UInt32, pid: Int32, comm: String, unit: String? = nil) {
        self.uid = uid
        self.pid = pid
        self.comm = comm
        self.unit = unit
    }
}

/// One row of the audit trail.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var seq: Int64
    public var time: String
    public var actor: AuditActor
    public var action: String
    public var connection: String?
    public var outcome: String
    public var detail: String
    public var hash: String

    public init(
        seq: Int64,
        time: String,
        actor: AuditActor,
        action: String,
        connection: String?,
        outcome: String,
        detail: String,
        hash: String
    ) {
        self.seq = seq
        self.time = time
        self.actor = actor
        self.action = action
        self.connection = connection
        self.outcome = outcome
        self.detail = detail
        self.hash = hash
    }
}

/// `GET /v1/audit`.
public struct AuditList: Codable, Sendable, Equatable {
    public var entries: [AuditEntry]
    public init(entries: [AuditEntry]) { self.entries = entries }
}

/// `GET /v1/audit/verify`: whether the hash chain is intact, and where it breaks.
public struct AuditVerification: Codable, Sendable, Equatable {
    public var intact: Bool
    public var entries: Int
    public var head: String?
    public var brokenAt: Int64?
    public var reason: String?

    public init(intact: Bool, entries: Int, head: String?, brokenAt: Int64?, reason: String?) {
        self.intact = intact
        self.entries = entries
        self.head = head
        self.brokenAt = brokenAt
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case intact, entries, head, reason
        case brokenAt = "broken_at"
    }
}

/// `POST /v1/keys/rotate`.
public struct KeyRotationResult: Codable, Sendable, Equatable {
    public var keyID: Int64
    public var rewrappedDataKeys: Int

    public init(keyID: Int64, rewrappedDataKeys: Int) {
        self.keyID = keyID
        self.rewrappedDataKeys = rewrappedDataKeys
    }

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id"
        case rewrappedDataKeys = "rewrapped_data_keys"
    }
}

/// `GET /v1/status`.
public struct StatusView: Codable, Sendable, Equatable {
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Int
    public var connections: Int
    public var byState: [String: Int]
    public var needsReset: [String]
    public var masterKeyID: Int64
    public var masterKeyCreatedAt: String
    public var aead: String
    public var auditEntries: Int
    public var databaseBytes: Int64
    /// Tokens handed out for a previous state of their connection that wait for revocation (DESIGN §11).
    public var pendingRevocations: [PendingRevocationView]
    /// v1 connections (by id, disconnected ones too) whose tokens handed out before a disable, reset, edit or
    /// disconnect stay valid until the given time (v1 has no revoke endpoint).
    public var tokensValidUntil: [String: String]
    /// Whether this kernel pins callers with `SO_PEERPIDFD` (Linux 6.5 and later); `false`: unit grants never match
    /// (DESIGN §10). nil from a daemon that does not say.
    public var peerPidfd: Bool?
    /// Whether `exe` and `exe_sha256` selectors can match callers of every uid: `SO_PEERPIDFD`, and the daemon may
    /// read other uids' `/proc/PID/exe` (root or `CAP_SYS_PTRACE`); `false`: they match only callers of the daemon's
    /// own uid, or none without a pidfd (DESIGN §10). nil from a daemon that does not say.
    public var peerExe: Bool?

    public init(
        version: String,
        pid: Int32,
        uptimeSeconds: Int,
        connections: Int,
        byState: [String: Int],
        needsReset: [String],
        masterKeyID: Int64,
        masterKeyCreatedAt: String,
        aead: String,
        auditEntries: Int,
        databaseBytes: Int64,
        pendingRevocations: [PendingRevocationView] = [],
        tokensValidUntil: [String: String] = [:]
    ) {
        self.version = version
        self.pid = pid
        self.uptimeSeconds = uptimeSeconds
        self.connections = connections
        self.byState = byState
        self.needsReset = needsReset
        self.masterKeyID = masterKeyID
        self.masterKeyCreatedAt = masterKeyCreatedAt
        self.aead = aead
        self.auditEntries = auditEntries
        self.databaseBytes = databaseBytes
        self.pendingRevocations = pendingRevocations
        self.tokensValidUntil = tokensValidUntil
    }

    enum CodingKeys: String, CodingKey {
        case version, pid, connections, aead
        case uptimeSeconds = "uptime_seconds"
        case byState = "by_state"
        case needsReset = "needs_reset"
        case masterKeyID = "master_key_id"
        case masterKeyCreatedAt = "master_key_created_at"
        case auditEntries = "audit_entries"
        case databaseBytes = "database_bytes"
        case pendingRevocations = "pending_revocations"
        case tokensValidUntil = "tokens_valid_until"
        case peerPidfd = "peer_pidfd"
        case peerExe = "peer_exe"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.version = try container.decode(String.self, forKey: .version)
        self.pid = try container.decode(Int32.self, forKey: .pid)
        self.uptimeSeconds = try container.decode(Int.self, forKey: .uptimeSeconds)
        self.connections = try container.decode(Int.self, forKey: .connections)
        self.byState = try container.decode([String: Int].self, forKey: .byState)
        self.needsReset = try container.decode([String].self, forKey: .needsReset)
        self.masterKeyID = try container.decode(Int64.self, forKey: .masterKeyID)
        self.masterKeyCreatedAt = try container.decode(String.self, forKey: .masterKeyCreatedAt)
        self.aead = try container.decode(String.self, forKey: .aead)
        self.auditEntries = try container.decode(Int.self, forKey: .auditEntries)
        self.databaseBytes = try container.decode(Int64.self, forKey: .databaseBytes)
        // Added later: a daemon of an earlier version does not send them.
        self.pendingRevocations =
            try container.decodeIfPresent([PendingRevocationView].self, forKey: .pendingRevocations) ?? []
        self.tokensValidUntil = try container.decodeIfPresent([String: String].self, forKey: .tokensValidUntil) ?? [:]
        self.peerPidfd = try container.decodeIfPresent(Bool.self, forKey: .peerPidfd)
        self.peerExe = try container.decodeIfPresent(Bool.self, forKey: .peerExe)
    }
}

/// `GET /v1/connections/{id}/token` on the app socket (DESIGN §7).
public struct TokenResponse: Codable, Sendable, Equatable {
    public var connection: String
    public var tokenType: String
    public var accessToken: String
    public var expiresAt: String
    public var expiresIn: Int
    public var scope: String?
    public var apiBaseURL: String
    /// Headers to send with the token, ready to use (`Authorization`, `X-Personio-App-ID`, …).
    public var headers: [String: String]

    public init(
        connection: String,
        tokenType: String,
        accessToken: String,
        expiresAt: String,
        expiresIn: Int,
        scope: String?,
        apiBaseURL: String,
        headers: [String: String]
    ) {
        self.connection = connection
        self.tokenType = tokenType
        self.accessToken = accessToken
        self.expiresAt = expiresAt
        self.expiresIn = expiresIn
        self.scope = scope
        self.apiBaseURL = apiBaseURL
        self.headers = headers
    }

    /// Written out so that `scope` is sent as `null` when Personio gave none (clients may look for the member).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.connection, forKey: .connection)
        try container.encode(self.tokenType, forKey: .tokenType)
        try container.encode(self.accessToken, forKey: .accessToken)
        try container.encode(self.expiresAt, forKey: .expiresAt)
        try container.encode(self.expiresIn, forKey: .expiresIn)
        try container.encode(self.scope, forKey: .scope)
        try container.encode(self.apiBaseURL, forKey: .apiBaseURL)
        try container.encode(self.headers, forKey: .headers)
    }

    /// The members of the token body, as sent (the broker's cached answer is cut from this encoding).
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case connection, scope, headers
        case tokenType = "token_type"
        case accessToken = "access_token"
        case expiresAt = "expires_at"
        case expiresIn = "expires_in"
        case apiBaseURL = "api_base_url"
    }
}

/// A connection as an app sees it in `GET /v1/connections` on the app socket: metadata only.
public struct AppConnectionView: Codable, Sendable, Equatable {
    public var id: String
    public var provider: Provider
    public var state: ConnectionState
    public var apiBaseURL: String
    public var scope: String?
    /// Whether this caller may have the access token (the provider hands one out, and its rule is not proxy-only).
    public var tokenExportable: Bool
    /// What the rule that lets this caller use the connection allows it (DESIGN §10); nothing about other rules.
    /// nil from a daemon that does not say.
    public var rule: AppRuleView?

    public init(
        id: String,
        provider: Provider,
        state: ConnectionState,
        apiBaseURL: String,
        scope: String?,
        tokenExportable: Bool,
        rule: AppRuleView? = nil
    ) {
        self.id = id
        self.provider = provider
        self.state = state
        self.apiBaseURL = apiBaseURL
        self.scope = scope
        self.tokenExportable = tokenExportable
        self.rule = rule
    }

    enum CodingKeys: String, CodingKey {
        case id, provider, state, scope, rule
        case apiBaseURL = "api_base_url"
        case tokenExportable = "token_exportable"
    }
}

/// The narrowing of the rule a caller matched, as the app socket shows it to that caller: its scope, proxy
/// allow-list, whether the token is handed out, and its budget. The one-selector rules of `uids`, `groups` and
/// `units` narrow nothing (every member nil, `token` true).
public struct AppRuleView: Codable, Sendable, Equatable {
    /// The scope the rule narrows tokens to; nil: the connection's.
    public var scope: String?
    /// The `METHOD /path` patterns the proxy allows; nil: any path under the API base.
    public var proxy: [String]?
    /// Whether the access token is handed out (false: proxy only).
    public var token: Bool
    /// Proxied requests and token misses per minute for this caller; nil: no budget of its own.
    public var ratePerMinute: Int?

    public init(scope: String? = nil, proxy: [String]? = nil, token: Bool = true, ratePerMinute: Int? = nil) {
        self.scope = scope
        self.proxy = proxy
        self.token = token
        self.ratePerMinute = ratePerMinute
    }

    enum CodingKeys: String, CodingKey {
        case scope, proxy, token
        case ratePerMinute = "rate_per_minute"
    }
}

/// `GET /v1/connections` on the app socket.
public struct AppConnectionList: Codable, Sendable, Equatable {
    public var connections: [AppConnectionView]
    public init(connections: [AppConnectionView]) { self.connections = connections }
}

/// `POST /v1/connections/{id}/verify` on the admin socket.
public struct VerifyResult: Codable, Sendable, Equatable {
    public var connection: String
    public var ok: Bool
    public var expiresIn: Int?
    public var expiresAt: String?
    public var scope: String?
    /// Personio's error, never containing a secret.
    public var error: Problem?
    public var state: ConnectionState

    public init(
        connection: String,
        ok: Bool,
        expiresIn: Int?,
        expiresAt: String?,
        scope: String?,
        error: Problem?,
        state: ConnectionState
    ) {
        self.connection = connection
        self.ok = ok
        self.expiresIn = expiresIn
        self.expiresAt = expiresAt
        self.scope = scope
        self.error = error
        self.state = state
    }

    /// A verification that did not succeed: `error` says why.
    public static func failed(connection: String, error: Problem, state: ConnectionState) -> VerifyResult {
        VerifyResult(
            connection: connection,
            ok: false,
            expiresIn: nil,
            expiresAt: nil,
            scope: nil,
            error: error,
            state: state
        )
    }

    enum CodingKeys: String, CodingKey {
        case connection, ok, scope, error, state
        case expiresIn = "expires_in"
        case expiresAt = "expires_at"
    }
}

/// `GET /v1/health`.
public struct HealthView: Codable, Sendable, Equatable {
    public var status: String
    public init(status: String) { self.status = status }
}

/// Ready-made paths of the shared route table (`Endpoint`, Routes.swift), for tests and scripts.
public enum Routes {
    // Paths built from the shared table (`Endpoint`) with the id put in as given, not percent-encoded: for callers
    // that send a raw path on purpose (tests of the server's own id checks). Clients use `Endpoint.path(_:)`.
    public static let connections = Endpoint.listConnections.template.description
    public static func connection(_ id: String) -> String { Self.raw(Endpoint.showConnection, id) }
    public static func action(_ id: String, _ action: String) -> String { Self.connection(id) + "/" + action }
    public static func token(_ id: String) -> String { Self.raw(Endpoint.token, id) }
    public static let rotateKey = Endpoint.rotateKey.template.description
    public static let audit = Endpoint.audit.template.description
    public static let auditVerify = Endpoint.auditVerify.template.description
    public static let status = Endpoint.status.template.description
    public static let health = Endpoint.adminHealth.template.description
    public static let metrics = Endpoint.metrics.template.description

    static func raw(_ endpoint: Endpoint, _ id: String) -> String {
        endpoint.template.description.replacing("{id}", with: id)
    }
}
