import Logging
import NIOHTTP1
import VaultAPI
import VaultCore

/// The admin socket's routes (DESIGN §7), each a thin translation between HTTP and one `Vault` method.
///
/// Authorization is not checked here: the admin socket's ``RequestDispatcher`` refuses non-admins before any route
/// runs. Path ids are validated by the dispatcher too, before a route can reach the vault.
public struct AdminRoutes: Sendable {
    public let vault: Vault
    public let metrics: ServerMetrics

    /// The largest `limit` of `GET /v1/audit`, and its default.
    static let auditLimits = (default: Int64(100), maximum: Int64(1000))

    public init(vault: Vault, metrics: ServerMetrics) {
        self.vault = vault
        self.metrics = metrics
    }

    /// The route table.
    public var router: Router {
        let vault = self.vault
        let metrics = self.metrics
        return Router([
            HealthRoute.route,
            Route(
                .POST,
                Routes.connections,
                body: .required,
                .async { request in
                    let create = try request.decode(CreateConnectionRequest.self, containsSecrets: true)
                    let view = try await vault.create(create, by: request.caller.auditActor)
                    var response = try Response.json(view, status: .created)
                    response.headers.add(name: "Location", value: Routes.connection(view.id))
                    return response
                }
            ),
            Route(
                .GET,
                Routes.connections,
                .async { _ in
                    try .json(ConnectionList(connections: try await vault.list()))
                }
            ),
            Route(
                .GET,
                "/v1/connections/{id}",
                .async { request in
                    try .json(try await vault.view(request.parameter("id")))
                }
            ),
            Route(
                .PATCH,
                "/v1/connections/{id}",
                body: .required,
                .async { request in
                    let edit = try request.decode(EditConnectionRequest.self, containsSecrets: true)
                    return try .json(try await vault.edit(request.parameter("id"), edit, by: request.caller.auditActor))
                }
            ),
            Route(
                .DELETE,
                "/v1/connections/{id}",
                .async { request in
                    try await vault.disconnect(request.parameter("id"), by: request.caller.auditActor)
                    return .noContent
                }
            ),
            Route(
                .POST,
                "/v1/connections/{id}/disable",
                body: .optional,
                .async { request in
                    let disable = try request.decodeIfPresent(DisableRequest.self) ?? DisableRequest()
                    return try .json(
                        try await vault.disable(
                            request.parameter("id"),
                            reason: disable.reason,
                            by: request.caller.auditActor
                        )
                    )
                }
            ),
            Route(
                .POST,
                "/v1/connections/{id}/enable",
                body: .optional,
                .async { request in
                    _ = try request.decodeIfPresent(EmptyRequest.self)
                    return try .json(try await vault.enable(request.parameter("id"), by: request.caller.auditActor))
                }
            ),
            Route(
                .POST,
                "/v1/connections/{id}/reset",
                body: .required,
                .async { request in
                    let secrets = try request.decode(ResetRequest.self, containsSecrets: true)
                    return try .json(
                        try await vault.reset(request.parameter("id"), secrets: secrets, by: request.caller.auditActor)
                    )
                }
            ),
            Route(
                .PUT,
                "/v1/connections/{id}/grants",
                body: .required,
                .async { request in
                    let grants = try request.decode(GrantsRequest.self)
                    return try .json(
                        try await vault.setGrants(request.parameter("id"), grants, by: request.caller.auditActor)
                    )
                }
            ),
            Route(
                .POST,
                Routes.rotateKey,
                .async { request in
                    try .json(try await vault.rotateMasterKey(by: request.caller.auditActor))
                }
            ),
            Route(
                .GET,
                Routes.audit,
                .async { request in
                    let query = try QueryParameters(request.query, allowed: ["connection", "since", "limit"])
                    let connection = query["connection"].flatMap { $0.isEmpty ? nil : $0 }
                    if let connection, !ConnectionID.isValid(connection) {
                        throw HTTPError(.invalidID, "query parameter 'connection' is not a valid connection id")
                    }
                    let since = try query.integer("since", in: 0...Int64.max)
                    let limit = try query.integer("limit", in: 1...Self.auditLimits.maximum) ?? Self.auditLimits.default
                    let entries = try await vault.audit(connection: connection, since: since, limit: Int(limit))
                    return try .json(AuditList(entries: entries))
                }
            ),
            Route(
                .GET,
                Routes.auditVerify,
                .async { _ in
                    try .json(try await vault.verifyAudit())
                }
            ),
            Route(
                .GET,
                Routes.status,
                .async { _ in
                    var status = try await vault.status()
                    // Without it, unit grants never match (DESIGN §10): say so where the admin looks.
                    status.peerPidfd = Kernel.hasPeerPidfd
                    return try .json(status)
                }
            ),
            Route(
                .GET,
                Routes.metrics,
                .async { request in
                    // Counters stay available even when the database cannot be read right now.
                    let status: StatusView?
                    do {
                        status = try await vault.status()
                    } catch {
                        request.logger.warning("metrics without vault status", metadata: ["error": "\(error)"])
                        status = nil
                    }
                    return .prometheus(metrics.render(status: status))
                }
            ),
        ])
    }
}

/// A body that must be empty or `{}`: `enable` takes no arguments, but a client may send an empty object.
struct EmptyRequest: Decodable {
    init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: [])
    }
}
