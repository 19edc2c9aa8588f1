import CVaultShims
import Logging
import NIOCore
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

    /// `GET /v1/connections` of `connections` at once: the bytes `Response.json(ConnectionList(connections:))` would
    /// send, written by ``JSONWriter`` without `JSONEncoder`'s document of the whole list, a few hundred views at a
    /// time into the body (docs/decisions.md, "The connection list without JSONEncoder"). The route streams the
    /// same bytes instead (``streamedListResponse(first:pageSize:next:)``); this is what tests compare it with.
    static func listResponse(_ connections: [ConnectionView]) -> Response {
        let chunk = 256
        var writer = JSONWriter(reservingCapacity: 64 * 1024)
        var body = ByteBufferAllocator().buffer(capacity: max(64, connections.count * 560))
        writer.raw(#"{"connections":["#)
        for (index, view) in connections.enumerated() {
            if index > 0 { writer.raw(",") }
            view.writeJSON(to: &writer)
            if index % chunk == chunk - 1 {
                body.writeBytes(writer.bytes)
                writer.bytes.removeAll(keepingCapacity: true)
            }
        }
        writer.raw("]}")
        body.writeBytes(writer.bytes)
        return Response(status: .ok, headers: ["Content-Type": "application/json"], body: body)
    }

    /// Connections per page of a streamed list: some 550 KB of JSON, a few MB of views.
    static let listPageSize = 1000

    /// `GET /v1/connections`, streamed: the bytes of ``listResponse(_:)`` for the pages `first`, `next(first's last
    /// id)`, … (each of `pageSize` views, but the last), written and sent one page at a time, so that the daemon
    /// never holds more than a page of views and a page of JSON, however many connections there are, and produces
    /// no faster than the client reads; the route sends a list of less than one page whole instead (docs/decisions.md, "The streamed connection list"). The first page is read
    /// before the head is sent, so that a failure there is still a problem answer; a later read that fails cuts
    /// the body short (the connection closes, and the client sees an incomplete answer).
    static func streamedListResponse(
        first: [ConnectionView],
        pageSize: Int,
        next: @escaping @Sendable (_ after: String) async throws -> [ConnectionView]
    ) -> Response {
        Response(status: .ok, headers: ["Content-Type": "application/json"]) { body in
            var writer = JSONWriter(reservingCapacity: 64 * 1024)
            writer.raw(#"{"connections":["#)
            var page = first
            var listed = 0
            var written = 0
            while true {
                for view in page {
                    if listed > 0 { writer.raw(",") }
                    view.writeJSON(to: &writer)
                    listed += 1
                }
                let after = page.count == pageSize ? page.last?.id : nil
                page = []
                if after == nil { writer.raw("]}") }
                written += writer.bytes.count
                try await body.write(ByteBuffer(bytes: writer.bytes))
                writer.bytes.removeAll(keepingCapacity: true)
                guard let after else { break }
                page = try await next(after)
            }
            // glibc keeps the pages of a large list's views and JSON; give them back (BENCHMARKS.md, "Scale").
            if written > 1 << 20 { _ = cv_release_free_memory() }
        }
    }

    /// What each admin endpoint of the shared table (`Endpoint.admin`) does, but `verify`, which the token broker
    /// answers (``BrokerRoutes/adminHandlers``). The router is built from the table, in its order, in one place:
    /// ``Router/init(_:handlers:)``.
    public var handlers: [Endpoint: RouteAction] {
        let vault = self.vault
        let metrics = self.metrics
        return [
            .adminHealth: HealthRoute.action,
            .createConnection:
                .async { request in
                    let create = try request.decode(CreateConnectionRequest.self, containsSecrets: true)
                    let view = try await vault.create(create, by: request.caller.auditActor)
                    var response = try Response.json(view, status: .created)
                    response.headers.add(name: "Location", value: Endpoint.showConnection.path(view.id))
                    return response
                },
            .listConnections:
                .async { _ in
                    let pageSize = Self.listPageSize
                    let first = try await vault.listPage(after: nil, limit: pageSize)
                    // A list of less than a page is small: sent whole, with its Content-Length, as before.
                    guard first.count == pageSize else { return Self.listResponse(first) }
                    return Self.streamedListResponse(first: first, pageSize: pageSize) { after in
                        try await vault.listPage(after: after, limit: pageSize)
                    }
                },
            .showConnection:
                .async { request in
                    try .json(try await vault.view(request.parameter("id")))
                },
            .editConnection:
                .async { request in
                    let edit = try request.decode(EditConnectionRequest.self, containsSecrets: true)
                    return try .json(try await vault.edit(request.parameter("id"), edit, by: request.caller.auditActor))
                },
            .disconnect:
                .async { request in
                    try await vault.disconnect(request.parameter("id"), by: request.caller.auditActor)
                    return .noContent
                },
            .disable:
                .async { request in
                    let disable = try request.decodeIfPresent(DisableRequest.self) ?? DisableRequest()
                    return try .json(
                        try await vault.disable(
                            request.parameter("id"),
                            reason: disable.reason,
                            by: request.caller.auditActor
                        )
                    )
                },
            .enable:
                .async { request in
                    _ = try request.decodeIfPresent(EmptyRequest.self)
                    return try .json(try await vault.enable(request.parameter("id"), by: request.caller.auditActor))
                },
            .reset:
                .async { request in
                    let secrets = try request.decode(ResetRequest.self, containsSecrets: true)
                    return try .json(
                        try await vault.reset(request.parameter("id"), secrets: secrets, by: request.caller.auditActor)
                    )
                },
            .setGrants:
                .async { request in
                    let grants = try request.decode(GrantsRequest.self)
                    return try .json(
                        try await vault.setGrants(request.parameter("id"), grants, by: request.caller.auditActor)
                    )
                },
            .rotateKey:
                .async { request in
                    try .json(try await vault.rotateMasterKey(by: request.caller.auditActor))
                },
            .audit:
                .async { request in
                    let query = try QueryParameters(request.query, allowed: ["connection", "since", "limit"])
                    let connection = query["connection"].flatMap { $0.isEmpty ? nil : $0 }
                    if let connection, !ConnectionID.isValid(connection) {
                        throw HTTPError(.invalidID, "query parameter 'connection' is not a valid connection id")
                    }
                    // A sequence number, or a date or UTC time: "which programs got acme's tokens since the 1st".
                    let since = try query["since"].map { text throws(HTTPError) in
                        guard let since = AuditSince(text) else {
                            throw HTTPError(.badRequest, "query parameter 'since' must be \(AuditSince.expected)")
                        }
                        return since
                    }
                    let limit = try query.integer("limit", in: 1...Self.auditLimits.maximum) ?? Self.auditLimits.default
                    var sequence: Int64?
                    var from: String?
                    switch since {
                    case .sequence(let value): sequence = value
                    case .time(let time): from = time
                    case nil: break
                    }
                    let entries = try await vault.audit(
                        connection: connection,
                        since: sequence,
                        from: from,
                        limit: Int(limit)
                    )
                    return try .json(AuditList(entries: entries))
                },
            .auditVerify:
                .async { _ in
                    try .json(try await vault.verifyAudit())
                },
            .status:
                .async { _ in
                    var status = try await vault.status()
                    // Without it, unit grants never match (DESIGN §10): say so where the admin looks.
                    status.peerPidfd = Kernel.hasPeerPidfd
                    // Executable selectors need the pidfd too, and ptrace read access to other uids' processes.
                    status.peerExe = Kernel.hasPeerPidfd && ExecutableIdentity.canReadOtherUsers
                    return try .json(status)
                },
            .metrics:
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
                },
        ]
    }
}

/// A body that must be empty or `{}`: `enable` takes no arguments, but a client may send an empty object.
struct EmptyRequest: Decodable {
    init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(allowed: [])
    }
}
