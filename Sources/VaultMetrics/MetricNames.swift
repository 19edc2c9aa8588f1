/// The name and help text of every series `GET /metrics` serves (docs/http-api.md lists them).
public enum MetricNames {
    public static let httpRequests = "connvault_http_requests_total"
    public static let connections = "connvault_connections"
    public static let auditEntries = "connvault_audit_entries"
    public static let masterKeyID = "connvault_master_key_id"
    public static let uptime = "connvault_process_uptime_seconds"
    public static let upstreamExchanges = "connvault_upstream_exchanges_total"
    public static let tokenCacheHits = "connvault_token_cache_hits_total"
    public static let tokenCacheMisses = "connvault_token_cache_misses_total"
    public static let tokenCacheHitsByRule = "connvault_token_cache_hits_by_rule_total"
    public static let proxiedRequests = "connvault_proxied_requests_total"
    public static let revocations = "connvault_revocations_total"
    public static let pendingRevocations = "connvault_revocations_pending"

    /// The `# HELP` line of each name. A series the daemon creates under a name missing here gets no help line.
    public static let help: [String: String] = [
        httpRequests: "HTTP requests answered, by socket, route and status.",
        connections: "Connections by lifecycle state.",
        auditEntries: "Rows in the audit trail.",
        masterKeyID: "The active master key's id.",
        uptime: "Seconds since the daemon started.",
        upstreamExchanges: "Exchanges with Personio, by kind (token, verify, revoke) and outcome.",
        tokenCacheHits: "Token requests answered from the cache.",
        tokenCacheMisses: "Token requests that waited for a token exchange with Personio.",
        tokenCacheHitsByRule: "Token requests answered from the cache, by connection and grant rule.",
        proxiedRequests: "Proxied requests by the status class of Personio's answer (unanswered: none came).",
        revocations: "Withdrawn tokens whose revocation ended: revoked at Personio, or failed (expired first).",
        pendingRevocations: "Withdrawn tokens waiting to be revoked at Personio.",
    ]
}
