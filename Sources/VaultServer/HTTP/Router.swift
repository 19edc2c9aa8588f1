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
    /// Runs on the connection's event loop as soon as the request head is read, before its body: the route streams
    /// the body onward and writes the answer through the ``ForwardingExchange`` (the proxy). Must never block.
    case forward(@Sendable (Request, ForwardingExchange) -> Void)
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
        /// A fixed segment, as UTF-8: compared byte-wise (a path segment never needs canonical equivalence).
        case literal([UInt8])
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
            return .literal(Array(segment.utf8))
        }
        precondition(
            !self.segments.dropLast().contains { if case .remainder = $0 { true } else { false } },
            "only the last segment of a route pattern can be {name...}"
        )
    }

    /// The parameters when `path` (absolute, without its query, as UTF-8) matches. Walks the bytes without
    /// splitting them, and makes the parameters' strings only once the whole path matched: this runs for every route
    /// tried on every request, and most routes tried fail on a literal after a parameter (`/v1/connections/{id}/…`).
    func match(_ path: UnsafeBufferPointer<UInt8>) -> PathParameters? {
        guard self.matches(path) else { return nil }
        var parameters = PathParameters()
        var start = 1
        for segment in self.segments {
            var end = start
            while end < path.count && path[end] != UInt8(ascii: "/") { end += 1 }
            switch segment {
            case .remainder(let name):
                // Everything after the '/' that ends the fixed part, kept as sent.
                parameters.append(name, Self.string(path, start..<path.count))
                return parameters
            case .literal:
                break
            case .parameter(let name):
                parameters.append(name, Self.string(path, start..<end))
            }
            start = end + 1
        }
        return parameters
    }

    /// Whether `path` matches: its segments against the literals, a non-empty one for each parameter, and as many
    /// as the pattern has (one or more for a remainder).
    private func matches(_ path: UnsafeBufferPointer<UInt8>) -> Bool {
        guard path.first == UInt8(ascii: "/") else { return false }
        var start = 1
        for position in self.segments.indices {
            var end = start
            while end < path.count && path[end] != UInt8(ascii: "/") { end += 1 }
            switch self.segments[position] {
            case .remainder:
                return true
            case .literal(let literal):
                guard end - start == literal.count, Self.bytes(of: path, at: start, equal: literal) else {
                    return false
                }
            case .parameter:
                guard end > start else { return false }
            }
            if position == self.segments.count - 1 { return end == path.count }
            // More pattern segments follow: the path must go on after a '/'.
            guard end < path.count else { return false }
            start = end + 1
        }
        return true
    }

    /// Whether `path` holds `literal` from `start` on (which the caller has checked it has room for). A plain loop:
    /// `elementsEqual` on the slice was left a generic call out of line.
    private static func bytes(of path: UnsafeBufferPointer<UInt8>, at start: Int, equal literal: [UInt8]) -> Bool {
        literal.withUnsafeBufferPointer { literal in
            for index in literal.indices where path[start + index] != literal[index] { return false }
            return true
        }
    }

    /// The bytes in `range` of `path` as a string; they come from a `String`, so they are valid UTF-8 cut at '/'.
    private static func string(_ path: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: path[range]), as: UTF8.self)
    }
}

/// The `{name}` values of a matched route, as sent (not percent-decoded).
///
/// The vault's patterns have one or two parameters; those are held inline, so that matching a route allocates
/// nothing for short values (a dictionary would allocate for every route tried that gets as far as its first
/// parameter).
public struct PathParameters: Sendable, Equatable, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    private var first: (name: String, value: String)?
    private var second: (name: String, value: String)?
    private var more: [(name: String, value: String)] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { self.append(name, value) }
    }

    mutating func append(_ name: String, _ value: String) {
        if self.first == nil {
            self.first = (name, value)
        } else if self.second == nil {
            self.second = (name, value)
        } else {
            self.more.append((name, value))
        }
    }

    /// The value of `{name}`, or nil when the route has no such parameter.
    public subscript(name: String) -> String? {
        if let first = self.first, first.name == name { return first.value }
        if let second = self.second, second.name == name { return second.value }
        return self.more.first { $0.name == name }?.value
    }

    /// Every parameter, in pattern order.
    public var all: [(name: String, value: String)] {
        [self.first, self.second].compactMap { $0 } + self.more
    }

    /// Equal when the same names have the same values, whatever their order.
    public static func == (lhs: PathParameters, rhs: PathParameters) -> Bool {
        let left = lhs.all
        let right = rhs.all
        return left.count == right.count
            && left.allSatisfy { parameter in
                right.contains { $0.name == parameter.name && $0.value == parameter.value }
            }
    }

    public var description: String {
        "[" + self.all.map { "\($0.name): \($0.value)" }.joined(separator: ", ") + "]"
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
    case matched(Route, parameters: PathParameters)
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
        // `withUTF8` hands out the bytes in place (it copies only a string that has no contiguous UTF-8).
        var path = path
        return path.withUTF8 { self.match(method: method, bytes: $0) }
    }

    private func match(method: HTTPMethod, bytes: UnsafeBufferPointer<UInt8>) -> RouteMatch {
        guard bytes.first == UInt8(ascii: "/") else { return .notFound }
        var allowed: [HTTPMethod] = []
        for route in self.routes {
            guard let parameters = route.pattern.match(bytes) else { continue }
            if route.method.isSame(as: method) { return .matched(route, parameters: parameters) }
            allowed.append(route.method)
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }
}

extension HTTPMethod {
    /// `==`, told by the cases for the five methods the vault routes. NIO's `==` builds and compares both methods'
    /// `rawValue` strings (about 150 instructions), and the router compares once per request.
    func isSame(as other: HTTPMethod) -> Bool {
        switch (self, other) {
        case (.GET, .GET), (.POST, .POST), (.PUT, .PUT), (.PATCH, .PATCH), (.DELETE, .DELETE):
            return true
        case (.RAW, _), (_, .RAW):
            return self == other
        case (.GET, _), (.POST, _), (.PUT, _), (.PATCH, _), (.DELETE, _), (_, .GET), (_, .POST), (_, .PUT), (_, .PATCH),
            (_, .DELETE):
            return false
        default:
            return self == other
        }
    }
}
