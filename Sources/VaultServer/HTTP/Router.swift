import NIOCore
import NIOHTTP1

/// What a route does with a request: answer at once on the event loop, or await.
public enum RouteAction: Sendable {
    /// Runs on the connection's event loop and answers without a task hop: for answers that need nothing but memory
    /// (health, a cached token). Must never block or wait.
    case sync(@Sendable (Request) throws -> Response)
    /// Runs in a task; the answer is written back on the event loop when it is ready.
    case async(@Sendable (Request) async throws -> Response)
    /// Tries `cached` on the event loop first (a cached token); when it returns nil, runs `fallback` in a task.
    case cached(@Sendable (Request) throws -> Response?, fallback: @Sendable (Request) async throws -> Response)
}

/// Whether a route takes a request body.
public enum BodyPolicy: Sendable, Equatable {
    /// Any body is refused with 400 `bad_request`.
    case none
    /// A JSON body or none at all.
    case optional
    /// A JSON body is required; an empty one is 400 `invalid_json`.
    case required
}

/// A path pattern such as `/v1/connections/{id}/grants`: literal segments and `{name}` parameters, each matching
/// exactly one non-empty segment; a last segment `{name...}` matches the rest of the path (one or more segments,
/// kept as sent, joined by `/`).
public struct PathPattern: Sendable, Equatable, CustomStringConvertible {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
        case remainder(String)
    }

    let segments: [Segment]
    /// The pattern as written: the route's name in logs and metrics.
    public let description: String

    /// - Parameter pattern: An absolute path whose segments are literals, `{name}` or, last, `{name...}`.
    public init(_ pattern: String) {
        precondition(pattern.hasPrefix("/"), "route patterns are absolute paths")
        self.description = pattern
        self.segments = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { segment in
            if segment.hasPrefix("{") && segment.hasSuffix("...}") {
                return .remainder(String(segment.dropFirst().dropLast(4)))
            }
            if segment.hasPrefix("{") && segment.hasSuffix("}") {
                return .parameter(String(segment.dropFirst().dropLast()))
            }
            return .literal(String(segment))
        }
        precondition(
            !self.segments.dropLast().contains { if case .remainder = $0 { true } else { false } },
            "only the last segment of a route pattern can be {name...}"
        )
    }

    /// The parameters when `path` (absolute, without its query) matches. Walks the path's UTF-8 once, without
    /// splitting it into an array: this runs for every route tried on every request.
    func match(_ path: Substring) -> [String: String]? {
        let bytes = path.utf8
        guard bytes.first == UInt8(ascii: "/") else { return nil }
        var parameters: [String: String] = [:]
        var start = bytes.index(after: bytes.startIndex)
        for position in self.segments.indices {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.endIndex
            let segment = path[start..<end]
            switch self.segments[position] {
            case .remainder(let name):
                // Everything after the '/' that ends the fixed part, kept as sent.
                parameters[name] = String(path[start...])
                return parameters
            case .literal(let literal):
                // Byte-wise: String equality would compare canonical equivalence, which a path segment never needs.
                guard segment.utf8.elementsEqual(literal.utf8) else { return nil }
            case .parameter(let name):
                guard !segment.isEmpty else { return nil }
                parameters[name] = String(segment)
            }
            if position == self.segments.count - 1 { return end == bytes.endIndex ? parameters : nil }
            // More pattern segments follow: the path must go on after a '/'.
            guard end < bytes.endIndex else { return nil }
            start = bytes.index(after: end)
        }
        return parameters
    }
}

/// One entry of a route table. A class, and immutable: the table is scanned on every request, and passing a route
/// around then costs one reference count instead of a copy of each of its parts.
public final class Route: Sendable {
    public let method: HTTPMethod
    public let pattern: PathPattern
    public let body: BodyPolicy
    public let action: RouteAction

    /// The route's name in logs and metrics: `GET /v1/connections/{id}`. Built once: it is read on every request.
    public let name: String

    public init(_ method: HTTPMethod, _ pattern: String, body: BodyPolicy = .none, _ action: RouteAction) {
        self.name = "\(method.rawValue) \(pattern)"
        self.method = method
        self.pattern = PathPattern(pattern)
        self.body = body
        self.action = action
    }
}

/// The outcome of looking a request up in a ``Router``.
public enum RouteMatch: Sendable {
    case matched(Route, parameters: [String: String])
    /// The path exists, but not with this method; `allowed` lists the methods it has.
    case methodNotAllowed(allowed: [HTTPMethod])
    case notFound
}

/// A small explicit route table: method and path pattern to an action. Routes are tried in order; a table of a few
/// dozen routes is matched faster by a linear scan than by anything that needs hashing the path.
public struct Router: Sendable {
    public private(set) var routes: [Route]

    public init(_ routes: [Route] = []) {
        self.routes = routes
    }

    /// Adds `route` at the end of the table.
    public mutating func add(_ route: Route) {
        precondition(
            !self.routes.contains { $0.method == route.method && $0.pattern == route.pattern },
            "duplicate route \(route.name)"
        )
        self.routes.append(route)
    }

    /// The route for `method` and `path` (without its query).
    public func match(method: HTTPMethod, path: Substring) -> RouteMatch {
        guard path.utf8.first == UInt8(ascii: "/") else { return .notFound }
        var allowed: [HTTPMethod] = []
        for route in self.routes {
            guard let parameters = route.pattern.match(path) else { continue }
            if route.method == method { return .matched(route, parameters: parameters) }
            allowed.append(route.method)
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }
}
