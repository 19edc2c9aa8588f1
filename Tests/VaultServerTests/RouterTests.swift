import NIOHTTP1
import Testing
import VaultAPI

@testable import VaultServer

@Suite("Route matching")
struct RouterTests {
    static let router = Router([
        Route(.GET, "/v1/health", .sync { _ in .noContent }),
        Route(.POST, "/v1/connections", body: .required, .sync { _ in .noContent }),
        Route(.GET, "/v1/connections", .sync { _ in .noContent }),
        Route(.GET, "/v1/connections/{id}", .sync { _ in .noContent }),
        Route(.PATCH, "/v1/connections/{id}", body: .required, .sync { _ in .noContent }),
        Route(.DELETE, "/v1/connections/{id}", .sync { _ in .noContent }),
        Route(.POST, "/v1/connections/{id}/disable", body: .optional, .sync { _ in .noContent }),
        Route(.PUT, "/v1/connections/{id}/grants", body: .required, .sync { _ in .noContent }),
        Route(.GET, "/v1/audit/verify", .sync { _ in .noContent }),
        Route(.GET, "/v1/connections/{id}/proxy/{path...}", .sync { _ in .noContent }),
    ])

    struct Case: Sendable, CustomTestStringConvertible {
        var method: HTTPMethod
        var path: String
        /// The matched route's name, `405 <allowed>`, or `404`.
        var expected: String
        var parameters: PathParameters = [:]
        var testDescription: String { "\(self.method.rawValue) \(self.path)" }
    }

    static let cases: [Case] = [
        Case(method: .GET, path: "/v1/health", expected: "GET /v1/health"),
        Case(method: .GET, path: "/v1/connections", expected: "GET /v1/connections"),
        Case(method: .POST, path: "/v1/connections", expected: "POST /v1/connections"),
        Case(
            method: .GET,
            path: "/v1/connections/acme",
            expected: "GET /v1/connections/{id}",
            parameters: ["id": "acme"]
        ),
        Case(
            method: .PATCH,
            path: "/v1/connections/a.b-c_d",
            expected: "PATCH /v1/connections/{id}",
            parameters: ["id": "a.b-c_d"]
        ),
        Case(
            method: .DELETE,
            path: "/v1/connections/x",
            expected: "DELETE /v1/connections/{id}",
            parameters: ["id": "x"]
        ),
        Case(
            method: .POST,
            path: "/v1/connections/x/disable",
            expected: "POST /v1/connections/{id}/disable",
            parameters: ["id": "x"]
        ),
        Case(
            method: .PUT,
            path: "/v1/connections/x/grants",
            expected: "PUT /v1/connections/{id}/grants",
            parameters: ["id": "x"]
        ),
        Case(method: .GET, path: "/v1/audit/verify", expected: "GET /v1/audit/verify"),
        // Parameters are taken raw: validating them is the dispatcher's job.
        Case(
            method: .GET,
            path: "/v1/connections/..%2Fetc",
            expected: "GET /v1/connections/{id}",
            parameters: ["id": "..%2Fetc"]
        ),
        // A remainder takes the rest of the path as sent, slashes and all; after its '/' it may be empty.
        Case(
            method: .GET,
            path: "/v1/connections/x/proxy/v2/persons/7",
            expected: "GET /v1/connections/{id}/proxy/{path...}",
            parameters: ["id": "x", "path": "v2/persons/7"]
        ),
        Case(
            method: .GET,
            path: "/v1/connections/x/proxy/a//b/%2e%2e/",
            expected: "GET /v1/connections/{id}/proxy/{path...}",
            parameters: ["id": "x", "path": "a//b/%2e%2e/"]
        ),
        Case(
            method: .GET,
            path: "/v1/connections/x/proxy/",
            expected: "GET /v1/connections/{id}/proxy/{path...}",
            parameters: ["id": "x", "path": ""]
        ),
        Case(method: .GET, path: "/v1/connections/x/proxy", expected: "404"),
        Case(method: .GET, path: "/v1/connections//proxy/a", expected: "404"),
        Case(method: .POST, path: "/v1/connections/x/proxy/a", expected: "405 GET"),
        // Wrong method on a known path.
        Case(method: .PUT, path: "/v1/connections", expected: "405 POST,GET"),
        Case(method: .POST, path: "/v1/connections/x", expected: "405 GET,PATCH,DELETE"),
        Case(method: .GET, path: "/v1/connections/x/disable", expected: "405 POST"),
        Case(method: .HEAD, path: "/v1/health", expected: "405 GET"),
        // Unknown paths.
        Case(method: .GET, path: "/v2/everything", expected: "404"),
        Case(method: .GET, path: "/v1/connections/", expected: "404"),
        Case(method: .GET, path: "/v1/connections//disable", expected: "404"),
        Case(method: .GET, path: "/v1/health/", expected: "404"),
        Case(method: .GET, path: "//v1/health", expected: "404"),
        Case(method: .GET, path: "v1/health", expected: "404"),
        Case(method: .GET, path: "", expected: "404"),
        Case(method: .GET, path: "/", expected: "404"),
        Case(method: .POST, path: "/v1/connections/x/verify", expected: "404"),
    ]

    @Test("method and path select the route, 405 lists the allowed methods, anything else is 404", arguments: cases)
    func match(_ testCase: Case) {
        switch Self.router.match(method: testCase.method, path: Substring(testCase.path)) {
        case .matched(let route, let parameters):
            #expect(route.name == testCase.expected)
            #expect(parameters == testCase.parameters)
        case .methodNotAllowed(let allowed):
            #expect("405 \(allowed.map(\.rawValue).joined(separator: ","))" == testCase.expected)
        case .notFound:
            #expect(testCase.expected == "404")
        }
    }

    @Test("parameters past the second are kept too; values are as sent, of any length; order does not matter")
    func manyParameters() throws {
        let router = Router([Route(.GET, "/a/{x}/b/{y}/{z}", .sync { _ in .noContent })])
        let long = "ünïcode-and-longer-than-fifteen-bytes"
        guard case .matched(_, let parameters) = router.match(method: .GET, path: Substring("/a/1/b/\(long)/%2e"))
        else {
            Issue.record("no match")
            return
        }
        #expect(parameters == ["z": "%2e", "x": "1", "y": long])
        #expect(parameters["y"] == long)
        #expect(parameters["z"] == "%2e")
        #expect(parameters["w"] == nil)
        #expect(parameters != ["x": "1", "y": long, "z": "other"])
        #expect(parameters != ["x": "1", "y": long])
    }

    @Test("each socket's router is the shared route table, in its order, with the names metrics and logs use")
    func sharedTable() {
        for socket in [SocketKind.app, .admin] {
            let endpoints = Endpoint.all(on: socket)
            let handlers = Dictionary(
                uniqueKeysWithValues: endpoints.map { ($0, RouteAction.sync { _ in .noContent }) }
            )
            let router = Router(socket, handlers: handlers)
            #expect(router.routes.map(\.name) == endpoints.map(\.description))
            #expect(router.routes.map(\.name).contains("GET /v1/connections/{id}/token") == (socket == .app))
            #expect(router.routes.map(\.name).contains("POST /v1/connections/{id}/verify") == (socket == .admin))
            for endpoint in endpoints {
                let path = endpoint.template.path(endpoint.template.parameterNames.map { _ in "acme" })
                guard
                    case .matched(let route, _) = router.match(
                        method: HTTPMethod(rawValue: endpoint.method.rawValue),
                        path: Substring(path)
                    )
                else {
                    Issue.record("\(endpoint) does not match its own path \(path)")
                    continue
                }
                #expect(route.name == endpoint.description)
            }
        }
    }

    @Test("request targets split into path and query")
    func split() {
        #expect(RequestDispatcher.split("/v1/audit?since=3&limit=5") == ("/v1/audit", "since=3&limit=5"))
        #expect(RequestDispatcher.split("/v1/audit") == ("/v1/audit", ""))
        #expect(RequestDispatcher.split("/v1/audit?") == ("/v1/audit", ""))
        #expect(RequestDispatcher.split("/v1/health#x") == ("/v1/health", ""))
        #expect(RequestDispatcher.split("/a?b=1#c?d") == ("/a", "b=1"))
        #expect(RequestDispatcher.split("/a#b?c") == ("/a", ""))
        #expect(RequestDispatcher.split("/a?b?c") == ("/a", "b?c"))
        #expect(RequestDispatcher.split("/ä/ö?ü=é") == ("/ä/ö", "ü=é"))
        #expect(RequestDispatcher.split("") == ("", ""))
    }

    @Test("methods compared by case agree with NIO's ==, raw spellings included")
    func methodsCompareAsNIODoes() {
        let names = [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "X-KIND",
        ]
        let methods =
            names.map { HTTPMethod(rawValue: $0) } + [.RAW(value: "GET"), .RAW(value: "POST"), .RAW(value: "X")]
        for left in methods {
            for right in methods {
                #expect(left.isSame(as: right) == (left == right), "\(left.rawValue) and \(right.rawValue)")
            }
        }
    }

    @Test("application/json with parameters and any case is JSON; nothing else is")
    func mediaTypes() {
        #expect(RequestDispatcher.isJSON("application/json"))
        #expect(RequestDispatcher.isJSON("Application/JSON; charset=utf-8"))
        #expect(RequestDispatcher.isJSON(" application/json ;charset=UTF-8"))
        #expect(!RequestDispatcher.isJSON("application/jsonx"))
        #expect(!RequestDispatcher.isJSON("text/plain"))
        #expect(!RequestDispatcher.isJSON("application/x-www-form-urlencoded"))
    }
}
