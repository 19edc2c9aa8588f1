import Testing
import VaultAPI

/// The one route table (`VaultAPI/Routes.swift`) that server and clients share.
@Suite struct RoutesTests {
    /// DESIGN §7 and docs/http-api.md, route by route.
    static let documented: [SocketKind: Set<String>] = [
        .app: [
            "GET /v1/health", "GET /v1/connections", "GET /v1/connections/{id}/token",
            "GET /v1/connections/{id}/proxy/{path...}", "POST /v1/connections/{id}/proxy/{path...}",
            "PUT /v1/connections/{id}/proxy/{path...}", "PATCH /v1/connections/{id}/proxy/{path...}",
            "DELETE /v1/connections/{id}/proxy/{path...}",
        ],
        .admin: [
            "GET /v1/health", "POST /v1/connections", "GET /v1/connections", "GET /v1/connections/{id}",
            "PATCH /v1/connections/{id}", "DELETE /v1/connections/{id}", "POST /v1/connections/{id}/disable",
            "POST /v1/connections/{id}/enable", "POST /v1/connections/{id}/reset", "PUT /v1/connections/{id}/grants",
            "POST /v1/connections/{id}/verify", "POST /v1/keys/rotate", "GET /v1/audit", "GET /v1/audit/verify",
            "GET /v1/status", "GET /metrics",
        ],
    ]

    @Test("the table lists exactly the documented routes of each socket, each once", arguments: SocketKind.allCases)
    func table(_ socket: SocketKind) {
        let routes = Endpoint.all(on: socket)
        #expect(Set(routes.map(\.description)) == Self.documented[socket])
        #expect(Set(routes).count == routes.count)
        #expect(routes.allSatisfy { $0.socket == socket })
    }

    @Test(
        "every route builds a concrete path that it matches, with the values back as sent",
        arguments: Endpoint.app + Endpoint.admin
    )
    func buildsAndMatches(_ endpoint: Endpoint) throws {
        let names = endpoint.template.parameterNames
        let values = names.map { $0 == "path" ? "v2/persons/7" : "acme-\($0)" }
        let path = endpoint.template.path(values)
        #expect(!path.contains("{"))
        let matched = try #require(endpoint.match(method: endpoint.method.rawValue, path: path[...]))
        #expect(matched == Dictionary(uniqueKeysWithValues: zip(names, values)))
        let otherMethod = Endpoint.Method.allCases.first { $0 != endpoint.method }!
        #expect(endpoint.match(method: otherMethod.rawValue, path: path[...]) == nil)
    }

    @Test("a route matches no path of another route of its socket with the same method")
    func noOverlap() {
        for socket in SocketKind.allCases {
            let routes = Endpoint.all(on: socket)
            for route in routes {
                let path = route.template.path(route.template.parameterNames.map { _ in "x" })
                let matching = routes.filter { $0.match(method: route.method.rawValue, path: path[...]) != nil }
                #expect(matching == [route], "\(route) on \(socket)")
            }
        }
    }

    @Test(
        "values become one percent-encoded segment; only the proxy path keeps its slashes",
        arguments: [
            ("acme", "acme"), ("a/b", "a%2Fb"), ("a b", "a%20b"), ("..", ".."), ("x?y#z", "x%3Fy%23z"),
            ("ü", "%C3%BC"),
        ]
    )
    func encoding(_ value: String, _ encoded: String) {
        #expect(Endpoint.token.path(value) == "/v1/connections/\(encoded)/token")
        #expect(Endpoint.proxy(.GET).path(value, "v2/a b") == "/v1/connections/\(encoded)/proxy/v2/a%20b")
    }

    @Test("paths that are not a route's do not match it")
    func mismatches() {
        #expect(Endpoint.showConnection.match(method: "GET", path: "/v1/connections/") == nil)
        #expect(Endpoint.showConnection.match(method: "GET", path: "/v1/connections/a/b") == nil)
        #expect(Endpoint.token.match(method: "GET", path: "/v1/connections/a/token/x") == nil)
        #expect(Endpoint.proxy(.GET).match(method: "GET", path: "/v1/connections/a/proxy") == nil)
        #expect(Endpoint.status.match(method: "GET", path: "v1/status") == nil)
        #expect(
            Endpoint.proxy(.GET).match(method: "GET", path: "/v1/connections/a/proxy/v2/persons")?["path"]
                == "v2/persons"
        )
    }
}
