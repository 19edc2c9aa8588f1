import NIOHTTP1
import VaultAPI

extension Route {
    /// The route for `endpoint` of the shared table (VaultAPI's `Endpoint`): its method, path and body rule, so
    /// that server and clients cannot disagree about them.
    public convenience init(_ endpoint: Endpoint, _ action: RouteAction) {
        let body: BodyPolicy =
            switch endpoint.body {
            case .none: .none
            case .optional: .optional
            case .required: .required
            }
        self.init(HTTPMethod(rawValue: endpoint.method.rawValue), endpoint.template.description, body: body, action)
    }
}

extension Router {
    /// The router of `socket`: every endpoint the shared table lists for it, in the table's order, each with its
    /// handler. The one place a socket's routes are assembled; an endpoint without a handler, or a handler for an
    /// endpoint the socket does not have, is a programming error found at start-up (and by the route table test).
    public init(_ socket: SocketKind, handlers: [Endpoint: RouteAction]) {
        let endpoints = Endpoint.all(on: socket)
        let unknown = handlers.keys.filter { !endpoints.contains($0) }
        precondition(unknown.isEmpty, "handlers for endpoints the \(socket) socket does not have: \(unknown)")
        self.init(
            endpoints.map { endpoint in
                guard let action = handlers[endpoint] else {
                    preconditionFailure("no handler for \(endpoint) on the \(socket) socket")
                }
                return Route(endpoint, action)
            }
        )
    }

    /// The handlers of several parts of the server for one socket, as one table; each endpoint belongs to one part.
    public static func merged(_ parts: [Endpoint: RouteAction]...) -> [Endpoint: RouteAction] {
        parts.reduce(into: [:]) { all, part in
            all.merge(part) { _, _ in preconditionFailure("an endpoint with two handlers") }
        }
    }
}
