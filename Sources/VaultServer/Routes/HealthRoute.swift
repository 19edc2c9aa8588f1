import NIOHTTP1
import VaultAPI

/// The app socket's routes. For now only health; the token broker adds its routes here (`GET /v1/connections`,
/// `GET /v1/connections/{id}/token`, the proxy) with ``router(adding:)``. A cached token can be answered with a
/// `.sync` route, without leaving the event loop.
public enum AppRoutes {
    /// The app socket's table: health, then `routes`.
    public static func router(adding routes: [Route] = []) -> Router {
        var router = Router([HealthRoute.route])
        for route in routes { router.add(route) }
        return router
    }
}

/// `GET /v1/health` on both sockets: answered on the event loop, from a body encoded and a head built once.
enum HealthRoute {
    static let route = Route(.GET, Routes.health, .sync { _ in Self.response })

    static let response: Response = {
        do {
            return try Response.json(HealthView(status: "ok")).prepared()
        } catch {
            preconditionFailure("encoding a constant cannot fail: \(error)")
        }
    }()
}
