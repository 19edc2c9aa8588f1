/// One route of the daemon's HTTP API (DESIGN §7): method, path template, socket and whether it takes a body.
///
/// ``Endpoint/app`` and ``Endpoint/admin`` are the whole table, spelled once: the server builds its routers from
/// them and the clients build their request targets from them, so a path can never differ between the two.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// The methods the API uses.
    public enum Method: String, Sendable, Hashable, CaseIterable {
        case GET, POST, PUT, PATCH, DELETE
    }

    /// Whether a route takes a request body.
    public enum Body: Sendable, Hashable {
        /// Any body is refused.
        case none
        /// A JSON body or none at all.
        case optional
        /// A JSON body is required.
        case required
    }

    public let method: Method
    public let template: PathTemplate
    public let socket: SocketKind
    public let body: Body

    public init(_ method: Method, _ template: PathTemplate, on socket: SocketKind, body: Body = .none) {
        self.method = method
        self.template = template
        self.socket = socket
        self.body = body
    }

    /// `GET /v1/connections/{id}`: the route's name in logs and metrics.
    public var description: String { "\(self.method.rawValue) \(self.template)" }

    /// The concrete path for `values`, one per `{name}` of the template in order, each percent-encoded.
    public func path(_ values: String...) -> String {
        self.template.path(values)
    }

    /// The path for `values` followed by `?name=value&…`, each value encoded; nil values are left out.
    public func target(_ values: String..., query: [(String, String?)]) -> String {
        let items = query.compactMap { name, value in value.map { "\(name)=\(PathTemplate.encode($0))" } }
        let path = self.template.path(values)
        return items.isEmpty ? path : path + "?" + items.joined(separator: "&")
    }

    /// The template's parameters when `method` and `path` (without its query) are this route's; values as sent.
    public func match(method: String, path: Substring) -> [String: String]? {
        guard method == self.method.rawValue else { return nil }
        return self.template.match(path)
    }
}

// MARK: - The table

extension Endpoint {
    // MARK: App socket

    public static let appHealth = Endpoint(.GET, "/v1/health", on: .app)
    /// The caller's connections (metadata and the rule it matched).
    public static let appConnections = Endpoint(.GET, "/v1/connections", on: .app)
    /// A bearer token; `?min_ttl=SECONDS`.
    public static let token = Endpoint(.GET, "/v1/connections/{id}/token", on: .app)
    /// The methods the proxy forwards.
    public static let proxyMethods: [Method] = [.GET, .POST, .PUT, .PATCH, .DELETE]

    /// A request forwarded to Personio with the connection's credentials added.
    public static func proxy(_ method: Method) -> Endpoint {
        Endpoint(method, "/v1/connections/{id}/proxy/{path...}", on: .app, body: .optional)
    }

    // MARK: Admin socket

    public static let adminHealth = Endpoint(.GET, "/v1/health", on: .admin)
    public static let createConnection = Endpoint(.POST, "/v1/connections", on: .admin, body: .required)
    public static let listConnections = Endpoint(.GET, "/v1/connections", on: .admin)
    public static let showConnection = Endpoint(.GET, "/v1/connections/{id}", on: .admin)
    public static let editConnection = Endpoint(.PATCH, "/v1/connections/{id}", on: .admin, body: .required)
    public static let disconnect = Endpoint(.DELETE, "/v1/connections/{id}", on: .admin)
    public static let disable = Endpoint(.POST, "/v1/connections/{id}/disable", on: .admin, body: .optional)
    public static let enable = Endpoint(.POST, "/v1/connections/{id}/enable", on: .admin, body: .optional)
    public static let reset = Endpoint(.POST, "/v1/connections/{id}/reset", on: .admin, body: .required)
    public static let setGrants = Endpoint(.PUT, "/v1/connections/{id}/grants", on: .admin, body: .required)
    public static let verify = Endpoint(.POST, "/v1/connections/{id}/verify", on: .admin, body: .optional)
    public static let rotateKey = Endpoint(.POST, "/v1/keys/rotate", on: .admin)
    /// `?connection=&since=&limit=`.
    public static let audit = Endpoint(.GET, "/v1/audit", on: .admin)
    public static let auditVerify = Endpoint(.GET, "/v1/audit/verify", on: .admin)
    public static let status = Endpoint(.GET, "/v1/status", on: .admin)
    /// Prometheus text.
    public static let metrics = Endpoint(.GET, "/metrics", on: .admin)

    /// Every route of the app socket, in the order the server tries them.
    public static let app: [Endpoint] = [appHealth, appConnections, token] + proxyMethods.map(proxy)

    /// Every route of the admin socket, in the order the server tries them.
    public static let admin: [Endpoint] = [
        adminHealth, createConnection, listConnections, showConnection, editConnection, disconnect, disable, enable,
        reset, setGrants, rotateKey, audit, auditVerify, status, metrics, verify,
    ]

    /// The routes of `socket`.
    public static func all(on socket: SocketKind) -> [Endpoint] {
        switch socket {
        case .app: Self.app
        case .admin: Self.admin
        }
    }
}

// MARK: - Path templates

/// A path such as `/v1/connections/{id}/grants`: literal segments and `{name}` parameters, each standing for exactly
/// one non-empty segment; a last segment `{name...}` stands for the rest of the path (one or more segments).
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
        case remainder(String)
    }

    public let segments: [Segment]
    /// The template as written.
    public let description: String

    /// - Parameter template: An absolute path whose segments are literals, `{name}` or, last, `{name...}`.
    public init(_ template: String) {
        precondition(template.hasPrefix("/"), "path templates are absolute paths")
        self.description = template
        self.segments = template.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { segment in
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
            "only the last segment of a path template can be {name...}"
        )
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// The names of the parameters, in order.
    public var parameterNames: [String] {
        self.segments.compactMap { segment in
            switch segment {
            case .literal: nil
            case .parameter(let name), .remainder(let name): name
            }
        }
    }

    /// The concrete path: each `{name}` replaced by the next of `values`, percent-encoded so that a value can never
    /// add a segment, a query or a space; a `{name...}` value keeps its `/` and has each segment encoded.
    public func path(_ values: [String]) -> String {
        precondition(values.count == self.parameterNames.count, "\(self) takes \(self.parameterNames.count) values")
        var remaining = values[...]
        var path = ""
        for segment in self.segments {
            path += "/"
            switch segment {
            case .literal(let literal):
                path += literal
            case .parameter:
                path += Self.encode(remaining.removeFirst())
            case .remainder:
                path += remaining.removeFirst().split(separator: "/", omittingEmptySubsequences: false)
                    .map { Self.encode(String($0)) }.joined(separator: "/")
            }
        }
        return path
    }

    /// The parameters when `path` (absolute, without its query) matches, values as sent (not percent-decoded).
    public func match(_ path: Substring) -> [String: String]? {
        guard path.hasPrefix("/") else { return nil }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        var parameters: [String: String] = [:]
        for (position, segment) in self.segments.enumerated() {
            guard position < parts.count else { return nil }
            switch segment {
            case .literal(let literal):
                guard parts[position] == literal else { return nil }
            case .parameter(let name):
                guard !parts[position].isEmpty else { return nil }
                parameters[name] = String(parts[position])
            case .remainder(let name):
                parameters[name] = parts[position...].joined(separator: "/")
                return parameters
            }
        }
        return parts.count == self.segments.count ? parameters : nil
    }

    /// `value` with every byte outside RFC 3986 `unreserved` percent-encoded.
    public static func encode(_ value: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var result = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return result
    }
}
