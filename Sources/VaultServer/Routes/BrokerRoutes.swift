import NIOCore
import NIOHTTP1
import PersonioAuth
import VaultAPI
import VaultCore

/// The token broker's routes: tokens, the caller's connections and the proxy on the app socket; `verify` on the
/// admin socket.
public struct BrokerRoutes: Sendable {
    let broker: TokenBroker

    public init(broker: TokenBroker) {
        self.broker = broker
    }

    /// The app socket's broker routes (added to ``AppRoutes/router(adding:)``).
    public var appRoutes: [Route] {
        let broker = self.broker
        var routes = [
            Route(
                .GET,
                Routes.connections,
                .async { request in
                    try .json(AppConnectionList(connections: try await broker.connections(for: request.caller)))
                }
            ),
            // A cached token is answered on the event loop: a dictionary lookup, the grant check and two copies.
            Route(
                .GET,
                "/v1/connections/{id}/token",
                .cached(
                    { request in
                        let minTTL = try Self.minTTL(request)
                        let now = ContinuousClock.now
                        switch broker.cachedResponse(
                            request.parameter("id"),
                            for: request.caller,
                            minTTL: minTTL,
                            at: now
                        ) {
                        case .token(let prepared): return Self.tokenResponse(prepared, at: now)
                        case .refused(let error): throw error
                        case nil: return nil
                        }
                    },
                    fallback: { request in
                        let prepared = try await broker.token(
                            request.parameter("id"),
                            for: request.caller,
                            minTTL: try Self.minTTL(request)
                        )
                        return Self.tokenResponse(prepared)
                    }
                )
            ),
        ]
        for method in [HTTPMethod.GET, .POST, .PUT, .PATCH, .DELETE] {
            routes.append(
                Route(
                    method,
                    "/v1/connections/{id}/proxy/{path...}",
                    body: .optional,
                    .async { request in
                        try await Self.proxy(broker, request)
                    }
                )
            )
        }
        return routes
    }

    /// `POST /v1/connections/{id}/verify` for the admin socket.
    public var verifyRoute: Route {
        let broker = self.broker
        return Route(
            .POST,
            "/v1/connections/{id}/verify",
            body: .optional,
            .async { request in
                try .json(try await broker.verify(request.parameter("id"), by: request.caller.auditActor))
            }
        )
    }

    // MARK: - Tokens

    static func minTTL(_ request: Request) throws(HTTPError) -> Int {
        if request.query.isEmpty { return 0 }
        let query = try QueryParameters(request.query, allowed: ["min_ttl"])
        return Int(try query.integer("min_ttl", in: 0...86_400) ?? 0)
    }

    /// The answer for `prepared` at `now`: rendered once per second of `expires_in` (body and head, see
    /// ``Response/prepared()``) and shared by every request in that second.
    static func tokenResponse(_ prepared: PreparedTokenResponse, at now: ContinuousClock.Instant = .now) -> Response {
        let expiresIn = prepared.expiresIn(at: now)
        return prepared.rendering(expiresIn: expiresIn) {
            RenderedTokenResponse(response: Self.render(prepared, expiresIn: expiresIn))
        }.response
    }

    static func render(_ prepared: PreparedTokenResponse, expiresIn: Int) -> Response {
        let number = String(expiresIn)
        var body = ByteBuffer()
        body.reserveCapacity(prepared.prefix.count + number.utf8.count + prepared.suffix.count)
        body.writeBytes(prepared.prefix)
        body.writeString(number)
        body.writeBytes(prepared.suffix)
        return Response(status: .ok, headers: Self.jsonHeaders, body: body).prepared()
    }

    /// A rendered token answer, kept by its ``PreparedTokenResponse`` for the second it is valid in.
    final class RenderedTokenResponse: Sendable {
        let response: Response
        init(response: Response) { self.response = response }
    }

    static let jsonHeaders: HTTPHeaders = ["Content-Type": "application/json"]

    // MARK: - Proxy

    /// Forwards the request to the connection's API base with its auth injected, and streams the answer back.
    static func proxy(_ broker: TokenBroker, _ request: Request) async throws -> Response {
        let rawPath = "/" + request.parameter("path")
        let query = request.query.isEmpty ? nil : String(request.query)
        let path: String
        switch PersonioProxy.validatedPath(rawPath, query: query) {
        case .success(let validated): path = validated
        case .failure(let error): throw HTTPError(.badRequest, "proxy path refused: \(error)")
        }
        let headers = request.headers.map { ($0.name, $0.value) }
        let forwarded = ProxyRequest(
            method: request.method.rawValue,
            path: path,
            query: query,
            headers: headers,
            body: request.body.isEmpty ? nil : request.body.bytes()
        )
        let upstream = try await broker.proxy(request.parameter("id"), request: forwarded, for: request.caller)
        // Personio's own answers (2xx-4xx, 429 with its Retry-After included) go back as they are; a failure on
        // Personio's side becomes the vault's problem+json, without relaying a body nobody vetted.
        if upstream.status >= 500 {
            let retryAfter = upstream.header("Retry-After").flatMap { Int($0) }
            if upstream.status == 503 {
                throw VaultError(
                    .upstreamUnavailable,
                    "Personio is unavailable (HTTP 503)",
                    retryAfter: retryAfter ?? 5
                )
            }
            throw VaultError(.upstreamError, "Personio failed to answer the proxied request (HTTP \(upstream.status))")
        }
        var responseHeaders = HTTPHeaders()
        for (name, value) in upstream.headers { responseHeaders.add(name: name, value: value) }
        var response = Response(status: HTTPResponseStatus(statusCode: upstream.status), headers: responseHeaders)
        response.stream = ResponseStream(upstream.body)
        return response
    }
}
