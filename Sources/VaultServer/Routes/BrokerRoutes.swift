import NIOCore
import NIOHTTP1
import PersonioClient
import TokenBroker
import VaultAPI
import VaultCore

/// The token broker's routes: tokens, the caller's connections and the proxy on the app socket; `verify` on the
/// admin socket.
public struct BrokerRoutes: Sendable {
    let broker: TokenBroker

    public init(broker: TokenBroker) {
        self.broker = broker
    }

    /// What the app socket's broker endpoints of the shared table do (`Endpoint.app` but health).
    public var appHandlers: [Endpoint: RouteAction] {
        let broker = self.broker
        var handlers: [Endpoint: RouteAction] = [
            .appConnections: .async { request in
                try .json(AppConnectionList(connections: try await broker.connections(for: request.caller)))
            },
            // A cached token is answered on the event loop: a dictionary lookup, the grant check and two copies.
            .token: .cached(
                { request in
                    let minTTL = try Self.minTTL(request)
                    let now = ContinuousClock.now
                    switch broker.cachedResponse(request.parameter("id"), for: request.caller, minTTL: minTTL, at: now)
                    {
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
            ),
        ]
        for method in Endpoint.proxyMethods {
            handlers[.proxy(method)] = .forward { request, exchange in Self.forward(broker, request, exchange) }
        }
        return handlers
    }

    /// What the admin socket's broker endpoint (`verify`) does.
    public var adminHandlers: [Endpoint: RouteAction] {
        let broker = self.broker
        return [
            .verify: .async { request in
                try .json(
                    Self.verifyResult(try await broker.verify(request.parameter("id"), by: request.caller.auditActor))
                )
            }
        ]
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

    /// The wire answer of a verify; a failure gets the status its code has everywhere else.
    static func verifyResult(_ outcome: VerifyOutcome) -> VerifyResult {
        guard let failure = outcome.failure else {
            return VerifyResult(
                connection: outcome.connection,
                ok: true,
                expiresIn: outcome.expiresIn,
                expiresAt: outcome.expiresAt,
                scope: outcome.scope,
                error: nil,
                state: outcome.state
            )
        }
        return .failed(
            connection: outcome.connection,
            error: ErrorResponse.problem(failure.code, title: failure.title, detail: failure.detail),
            state: outcome.state
        )
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

    /// Forwards the request to the connection's API base with its credential injected, streaming its body there and
    /// the answer back. With the connection's token cached, everything happens on the event loop; otherwise a task
    /// obtains the token (or decrypts the recruiting key) and the request starts when it has.
    static func forward(_ broker: TokenBroker, _ request: Request, _ exchange: ForwardingExchange) {
        let id = request.parameter("id")
        let head = PersonioProxy.RequestHead(
            method: request.method.rawValue,
            path: "/" + request.parameter("path"),
            query: request.query.isEmpty ? nil : String(request.query),
            headers: request.headers.map { ($0.name, $0.value) }
        )
        let caller = request.caller
        do {
            if let grant = try broker.cachedForwardGrant(id, head: head, for: caller) {
                Self.start(broker, grant, exchange)
                return
            }
        } catch {
            exchange.fail(error)
            return
        }
        Task {
            do {
                let grant = try await broker.forwardGrant(id, head: head, for: caller)
                exchange.eventLoop.execute { Self.start(broker, grant, exchange) }
            } catch {
                exchange.eventLoop.execute { exchange.fail(error) }
            }
        }
    }

    private static func start(
        _ broker: TokenBroker,
        _ grant: TokenBroker.ForwardGrant,
        _ exchange: ForwardingExchange
    ) {
        guard exchange.allowBody(upTo: grant.bodyLimit) else { return }
        let upstream = broker.startForward(
            grant,
            body: exchange.requestBody,
            on: exchange.eventLoop,
            writer: exchange
        )
        exchange.attach(upstream)
    }
}
