import NIOHTTP1
import VaultAPI

/// `GET /v1/health` on both sockets: answered on the event loop, from a body encoded and a head built once.
enum HealthRoute {
    static let action = RouteAction.sync { _ in Self.response }

    static let response: Response = {
        do {
            return try Response.json(HealthView(status: "ok")).prepared()
        } catch {
            preconditionFailure("encoding a constant cannot fail: \(error)")
        }
    }()
}
