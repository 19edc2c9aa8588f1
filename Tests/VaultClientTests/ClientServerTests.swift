import Foundation
import NIOCore
import NIOPosix
import Synchronization
import TestSupport
import Testing
import VaultAPI

@testable import VaultClient

#if canImport(Glibc)
import Glibc
#endif

/// The async client (on async-http-client) against a tiny in-test server on a real Unix socket.
@Suite(.timeLimit(.minutes(1))) struct ClientServerTests {
    static let statusJSON = """
        {"aead":"aes256gcm","audit_entries":3,"by_state":{"active":1},"connections":1,"database_bytes":4096,\
        "master_key_created_at":"2025-01-01T00:00:00Z","master_key_id":1,"needs_reset":[],"pid":42,\
        "uptime_seconds":5,"version":"0.1.0"}
        """

    static let viewJSON = """
        {"created_at":"2025-01-01T00:00:00Z","disabled_reason":null,"grants":{"groups":[],"uids":[1000],"units":[]},\
        "id":"acme","last_error":null,"provider":"personio-v2","revision":1,"secrets":{"client_secret":\
        {"fingerprint":"0123456789abcdef","set":true,"updated_at":"2025-01-01T00:00:00Z"}},"settings":{},\
        "state":"active","updated_at":"2025-01-01T00:00:00Z"}
        """

    static let tokenJSON = """
        {"access_token":"fake-access-token","api_base_url":"https://api.personio.de","connection":"acme",\
        "expires_at":"2025-01-01T01:00:00Z","expires_in":3600,"headers":{"Authorization":"Bearer fake-access-token"},\
        "scope":null,"token_type":"Bearer"}
        """

    @Test("a problem+json answer surfaces as .problem with the daemon's code and detail")
    func problem() async throws {
        let server = try TestUnixServer { _ in .problem(404, "not_found", detail: "no connection 'nope'") }
        defer { server.stop() }
        let client = AdminClient(socketPath: server.path)
        let error = try #require(await #expect(throws: VaultClientError.self) { try await client.connection("nope") })
        #expect(error.code == .problem)
        #expect(error.problem?.code == .notFound)
        #expect(error.problem?.status == 404)
        #expect(error.description == "no connection 'nope' (not_found)")
        #expect(error == VaultClientError.problem(Problem(status: 404, code: .notFound, title: "", detail: "")))
    }

    @Test("a chunked success answer decodes; the request names the route, Host and closes")
    func chunkedStatus() async throws {
        let body = Array(Self.statusJSON.utf8)
        let server = try TestUnixServer { _ in
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            var bytes = Array(head.utf8)
            for chunk in stride(from: 0, to: body.count, by: 40).map({ body[$0..<min($0 + 40, body.count)] }) {
                bytes += Array((String(chunk.count, radix: 16) + "\r\n").utf8) + chunk + Array("\r\n".utf8)
            }
            return .bytes(bytes + Array("0\r\n\r\n".utf8), close: false)
        }
        defer { server.stop() }
        let status = try await AdminClient(socketPath: server.path).status()
        #expect(status.masterKeyID == 1)
        #expect(status.byState == ["active": 1])
        let request = try #require(server.requests.first)
        #expect(request.requestLine == "GET /v1/status HTTP/1.1")
        #expect(request.header("Host") == "localhost")
        #expect(request.header("Connection") == "close")
    }

    @Test("a create request carries the secret only in its body, with a matching Content-Length")
    func createRequestOnTheWire() async throws {
        let server = try TestUnixServer { _ in .response(201, "Created", body: Self.viewJSON) }
        defer { server.stop() }
        let request = CreateConnectionRequest(
            id: "acme",
            provider: .personioV2,
            secrets: SecretsInput([
                .clientID: SecretInput(bytes: Array("fake-id-1".utf8)),
                .clientSecret: SecretInput(bytes: Array("fake-secret-1\"x".utf8)),
            ])
        )
        let view = try await AdminClient(socketPath: server.path).createConnection(request)
        #expect(view.id == "acme")
        let received = try #require(server.requests.first)
        #expect(received.requestLine == "POST /v1/connections HTTP/1.1")
        #expect(received.header("Content-Type") == "application/json")
        #expect(received.header("Content-Length") == String(received.body.count))
        #expect(!received.head.contains("fake-secret-1"))
        let body = String(decoding: received.body, as: UTF8.self)
        #expect(body.components(separatedBy: #""fake-secret-1\"x""#).count == 2)
    }

    @Test("every admin route sends the method, target and body the server expects")
    func adminRoutes() async throws {
        let server = try TestUnixServer { request in
            switch request.requestLine {
            case let line where line.hasPrefix("DELETE"):
                .bytes(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8), close: false)
            case let line where line.contains("/v1/audit/verify"):
                .response(200, "OK", body: #"{"entries":4,"intact":true}"#)
            case let line where line.contains("/verify "):
                .response(200, "OK", body: #"{"connection":"a b","ok":true,"state":"active","expires_in":60}"#)
            case let line where line.contains("/v1/keys/rotate"):
                .response(200, "OK", body: #"{"key_id":2,"rewrapped_data_keys":3}"#)
            case let line where line.contains("/v1/audit"): .response(200, "OK", body: #"{"entries":[]}"#)
            case let line where line.hasPrefix("GET /v1/connections "):
                .response(200, "OK", body: #"{"connections":[]}"#)
            default: .response(200, "OK", body: Self.viewJSON)
            }
        }
        defer { server.stop() }
        let client = AdminClient(socketPath: server.path)
        _ = try await client.connections()
        _ = try await client.disable("a b", reason: "audit week")
        _ = try await client.enable("a b")
        _ = try await client.verify("a b")
        try await client.disconnect("a b")
        _ = try await client.setGrants("a b", Grants(uids: [7]))
        _ = try await client.rotateKey()
        _ = try await client.audit(connection: "a b", since: 5, limit: 10)
        _ = try await client.verifyAudit()
        _ = try await client.reset(
            "a b",
            secrets: SecretsInput([.clientSecret: SecretInput(bytes: Array("fake-secret-2".utf8))])
        )
        let lines = server.requests.map(\.requestLine)
        #expect(
            lines == [
                "GET /v1/connections HTTP/1.1",
                "POST /v1/connections/a%20b/disable HTTP/1.1",
                "POST /v1/connections/a%20b/enable HTTP/1.1",
                "POST /v1/connections/a%20b/verify HTTP/1.1",
                "DELETE /v1/connections/a%20b HTTP/1.1",
                "PUT /v1/connections/a%20b/grants HTTP/1.1",
                "POST /v1/keys/rotate HTTP/1.1",
                "GET /v1/audit?connection=a%20b&since=5&limit=10 HTTP/1.1",
                "GET /v1/audit/verify HTTP/1.1",
                "POST /v1/connections/a%20b/reset HTTP/1.1",
            ]
        )
        let bodies = server.requests.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(bodies[1] == #"{"reason":"audit week"}"#)
        #expect(bodies[2] == "")
        #expect(server.requests[2].header("Content-Length") == "0")
        #expect(bodies[5] == #"{"groups":[],"rules":[],"uids":[7],"units":[]}"#)
        #expect(bodies[9] == #"{"client_secret":"fake-secret-2"}"#)
    }

    @Test("the async token call asks the app socket with min_ttl and decodes the token")
    func asyncToken() async throws {
        let server = try TestUnixServer { _ in .response(200, "OK", body: Self.tokenJSON) }
        defer { server.stop() }
        let token = try await AppClient(socketPath: server.path).token("acme", minTTL: 60)
        #expect(token.accessToken == "fake-access-token")
        #expect(token.headers["Authorization"] == "Bearer fake-access-token")
        #expect(server.requests.first?.requestLine == "GET /v1/connections/acme/token?min_ttl=60 HTTP/1.1")
    }

    @Test("no answer within the time-out is .timedOut, promptly")
    func timeout() async throws {
        let server = try TestUnixServer { _ in .silence }
        defer { server.stop() }
        let started = ContinuousClock.now
        let error = try #require(
            await #expect(throws: VaultClientError.self) {
                try await AdminClient(socketPath: server.path, timeout: .milliseconds(300)).status()
            }
        )
        #expect(error.code == .timedOut)
        #expect(error.message.contains("300 ms"))
        // Far below the 30 s default it must not fall back to; the margin is for a saturated machine (the container
        // suites boot beside this one in `make test`, and event loops were seen to fire timers 5 s late).
        #expect(ContinuousClock.now - started < .seconds(15))
    }

    @Test("cancelling the awaiting task ends the call at once and closes its connection")
    func cancellation() async throws {
        let server = try TestUnixServer { _ in .silence }
        defer { server.stop() }
        let task = Task { try await AdminClient(socketPath: server.path).status() }
        // Cancel once the request is on the wire: the call is then waiting for an answer that never comes.
        try await Self.waitUntil { server.requests.count == 1 }
        let started = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(ContinuousClock.now - started < .seconds(5))
        // The server sees the client close the connection: nothing is left waiting on either side.
        try await Self.waitUntil { server.closedCount == 1 }
    }

    @Test("a client on an event loop group of the caller's works and is shut down when the body returns")
    func ownEventLoopGroup() async throws {
        let server = try TestUnixServer { request in
            request.requestLine.hasPrefix("GET /v1/connections ")
                ? .response(200, "OK", body: #"{"connections":[]}"#) : .response(200, "OK", body: #"{"status":"ok"}"#)
        }
        defer { server.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let status = try await AppClient.withClient(socketPath: server.path, eventLoopGroup: group) { client in
            try await client.health().status
        }
        #expect(status == "ok")
        let admin = try await AdminClient.withClient(socketPath: server.path, eventLoopGroup: group) { client in
            try await client.connections().connections.count
        }
        #expect(admin == 0)
        try await group.shutdownGracefully()
    }

    @Test("every request goes out on a connection of its own that asks the server to close it")
    func oneConnectionPerRequest() async throws {
        let server = try TestUnixServer { _ in .response(200, "OK", body: #"{"status":"ok"}"#) }
        defer { server.stop() }
        let client = AppClient(socketPath: server.path)
        for _ in 0..<3 { #expect(try await client.health().status == "ok") }
        #expect(server.requests.count == 3)
        #expect(server.requests.allSatisfy { $0.header("Connection") == "close" })
        try await Self.waitUntil { server.closedCount == 3 }
    }

    @Test("a missing socket is .cannotConnect naming the path, the OS error and the override")
    func missingSocket() async throws {
        let path = "/tmp/cv-missing-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let started = ContinuousClock.now
        let error = try #require(
            await #expect(throws: VaultClientError.self) { try await AdminClient(socketPath: path).status() }
        )
        // At once, not after the time-out: a failed connect is not retried.
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(error.code == .cannotConnect)
        #expect(error.osError == ENOENT)
        #expect(error.message.contains(path))
        #expect(error.message.contains("No such file or directory"))
        #expect(error.message.contains("--admin-socket"))
        #expect(error.message.contains("CONNVAULT_ADMIN_SOCKET"))
        let appError = try #require(
            await #expect(throws: VaultClientError.self) { try await AppClient(socketPath: path).health() }
        )
        #expect(appError.message.contains("CONNVAULT_APP_SOCKET"))
    }

    @Test("a socket file nobody listens on is .cannotConnect (refused)")
    func refused() async throws {
        let server = try TestUnixServer { _ in .hangUp }
        let path = server.path
        // Leave a bound, no longer listening socket file behind.
        let directory = server.directory
        server.stopKeepingFile()
        defer {
            unlink(path)
            rmdir(directory)
        }
        let error = try #require(
            await #expect(throws: VaultClientError.self) { try await AdminClient(socketPath: path).status() }
        )
        #expect(error.code == .cannotConnect)
        #expect(error.osError == ECONNREFUSED)
    }

    static let badAnswers: [(String, TestReply)] = [
        ("garbage", .bytes(Array("hello there\r\n\r\n".utf8), close: true)),
        ("hang-up without answer", .hangUp),
        ("HTML error page", .response(502, "Bad Gateway", contentType: "text/html", body: "<h1>bad</h1>")),
        ("JSON that is not the expected type", .response(200, "OK", body: #"{"surprise":true}"#)),
    ]

    @Test("answers that are not the daemon's are .invalidResponse", arguments: badAnswers)
    func invalidAnswers(_ name: String, _ reply: TestReply) async throws {
        let server = try TestUnixServer { _ in reply }
        defer { server.stop() }
        let error = try #require(
            await #expect(throws: VaultClientError.self, "\(name)") {
                try await AdminClient(socketPath: server.path).status()
            }
        )
        #expect(error.code == .invalidResponse)
        #expect(error.socketPath == server.path)
    }

    /// Waits until `condition` holds, checking every 10 ms, for at most `timeout`.
    static func waitUntil(
        timeout: Duration = .seconds(10),
        _ condition: () -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("the condition did not hold within \(timeout)", sourceLocation: sourceLocation)
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
