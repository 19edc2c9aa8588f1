import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// What a caller of `/v1/connections/{id}/proxy/{path}` may expect of the vault as a reverse proxy (issue 11, items 3
/// and 5; the list in docs/http-api.md's proxy section, the reasons in docs/decisions.md, "Proxy semantics"), each
/// property proved against the built `connvaultd --dev` in front of a real HTTP/1.1 upstream on 127.0.0.1 that records
/// every request byte for byte: method, path and query unchanged; no hop-by-hop header either way; the caller's own
/// credentials and identification replaced; redirects relayed, never followed; rate-limit headers relayed; time-outs,
/// server errors and disconnects; a 401 and the cached token.
///
/// Serialized: three tests measure time (the proxy's time-out, a disconnect's cancellation, the token's minimum
/// refetch interval), and a dozen daemons starting at once on two cores would stretch it.
@Suite("Proxy semantics end to end", .offCooperativePool, .serialized, .timeLimit(.minutes(3)))
struct ProxySemanticsEndToEndTests {
    static let clientID = "CANARY-proxy-semantics-client"
    static let secret = "CANARY-proxy-semantics-secret-0001"
    static let recruitingKey = "CANARY-proxy-semantics-recruiting-key"
    /// The broker's `RefreshPolicy.minimumRefetchInterval`: a token younger than this is kept after a 401.
    static let minimumRefetchInterval: Duration = .seconds(10)

    // MARK: - Fixture

    /// A running `connvaultd --dev` with connection `acme` (`personio-v2`, granted to uid 0, which the tests run
    /// as) whose `api_base_url` is ``upstream``.
    struct Vault: Sendable {
        let upstream: ProxyUpstream
        let daemon: DaemonProcess

        /// Adds another connection pointing at the upstream (or below it, with `pathPrefix`).
        func addV2(_ id: String, pathPrefix: String = "", options: [String] = []) async throws {
            let arguments =
                [
                    "add", id, "--provider", "personio-v2", "--client-id", ProxySemanticsEndToEndTests.clientID,
                    "--api-base-url", self.upstream.baseURL + pathPrefix, "--allow-uid", "0",
                ] + options + ["--secret-stdin"]
            let added = try await Blocking.run { [daemon = self.daemon] in
                try daemon.ctl(arguments, stdin: ProxySemanticsEndToEndTests.secret + "\n")
            }
            try #require(added.status == 0, "\(added)")
        }

        /// Sends one request on the app socket, exactly as written: `Host` and, unless `headers` has one,
        /// `Connection: close`, then `headers` in order, then `Content-Length` and `body` when there is one.
        func send(
            _ method: String,
            _ target: String,
            headers: [(String, String)] = [],
            body: String? = nil,
            timeout: Duration = .seconds(20)
        ) async throws -> RawHTTP.Response {
            var request = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
            if !headers.contains(where: { $0.0.lowercased() == "connection" }) { request += "Connection: close\r\n" }
            for (name, value) in headers { request += "\(name): \(value)\r\n" }
            if let body { request += "Content-Length: \(body.utf8.count)\r\n" }
            request += "\r\n" + (body ?? "")
            return try await Blocking.run { [socket = self.daemon.appSocket, request] in
                try RawHTTP.request(socket: socket, request, timeout: timeout)
            }
        }

        /// `method /v1/connections/{id}/proxy{path}` (see ``send(_:_:headers:body:timeout:)``).
        func proxy(
            _ method: String = "GET",
            _ path: String,
            connection id: String = "acme",
            headers: [(String, String)] = [],
            body: String? = nil,
            timeout: Duration = .seconds(20)
        ) async throws -> RawHTTP.Response {
            try await self.send(
                method,
                ProxySemanticsEndToEndTests.proxyTarget(id, path),
                headers: headers,
                body: body,
                timeout: timeout
            )
        }

        /// The requests the upstream received other than token exchanges and revocations.
        var resourceRequests: [ProxyUpstream.Request] {
            self.upstream.requests.filter {
                !$0.path.hasSuffix("/v2/auth/token") && !$0.path.hasSuffix("/v2/auth/revoke")
            }
        }

        /// The requests the upstream received for `path` (without query).
        func requests(to path: String) -> [ProxyUpstream.Request] {
            self.upstream.requests.filter { $0.path == path }
        }

        /// Token exchanges the upstream answered at its own `/v2/auth/token`.
        var tokenExchanges: Int { self.requests(to: "/v2/auth/token").count }
    }

    static func proxyTarget(_ id: String, _ path: String) -> String { "/v1/connections/\(id)/proxy\(path)" }

    /// Runs `body` with a fresh upstream and daemon (`arguments`); ends both and removes the directory afterwards,
    /// whether `body` returns or throws.
    static func withVault(
        _ arguments: [String] = ["--dev", "--log-level", "debug"],
        options: [String] = [],
        _ body: (Vault) async throws -> Void
    ) async throws {
        let upstream = try ProxyUpstream()
        let directory: TemporaryDirectory
        do {
            directory = try TemporaryDirectory(prefix: "cvps")
        } catch {
            upstream.shutdown()
            throw error
        }
        let vault = Vault(upstream: upstream, daemon: DaemonProcess(directory: directory, arguments: arguments))
        do {
            try await Blocking.run { [daemon = vault.daemon] in try daemon.start() }
            try await vault.addV2("acme", options: options)
            try await body(vault)
        } catch {
            await Self.tearDown(vault)
            throw error
        }
        await Self.tearDown(vault)
    }

    private static func tearDown(_ vault: Vault) async {
        _ = try? await Blocking.run { [daemon = vault.daemon] in daemon.stop() }
        vault.upstream.shutdown()
        vault.daemon.directory.remove()
    }

    /// A JSON answer to `POST …/v2/auth/token` for an upstream path the ``ProxyUpstream`` does not answer itself.
    static func tokenAnswer(_ token: String) -> String {
        #"{"access_token":"\#(token)","token_type":"Bearer","expires_in":3600,"scope":"personio:persons:read"}"#
    }

    // MARK: - 1. Method, path and query

    @Test("GET, POST, PUT, PATCH and DELETE are forwarded with their method, target and body")
    func methodsAreForwarded() async throws {
        try await Self.withVault { vault in
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let body: String? = ["POST", "PUT", "PATCH"].contains(method) ? #"{"method":"\#(method)"}"# : nil
                let headers: [(String, String)] = body == nil ? [] : [("Content-Type", "application/json")]
                let before = vault.resourceRequests.count
                let response = try await vault.proxy(
                    method,
                    "/v2/persons/42?mode=\(method)",
                    headers: headers,
                    body: body
                )
                #expect(response.status == 200, "\(method): \(response.raw)")
                let seen = vault.resourceRequests.dropFirst(before)
                #expect(seen.count == 1, "\(method): the upstream saw \(seen.map { "\($0.method) \($0.target)" })")
                let request = try #require(seen.first, "\(method) never reached the upstream")
                #expect(request.method == method)
                #expect(request.target == "/v2/persons/42?mode=\(method)", "\(method): \(request.target)")
                #expect(request.bodyBytes == (body?.utf8.count ?? 0), "\(method): \(request.bodyBytes) body bytes")
                #expect(request.body == Array((body ?? "").utf8), "\(method)")
            }
        }
    }

    @Test("HEAD, OPTIONS, CONNECT and TRACE are answered 405 by the vault and never sent")
    func otherMethodsAreRefused() async throws {
        try await Self.withVault { vault in
            let accepted = try await vault.proxy("GET", "/v2/persons")
            #expect(accepted.status == 200, "\(accepted.raw)")
            let before = vault.resourceRequests.count
            for method in ["HEAD", "OPTIONS", "CONNECT", "TRACE"] {
                let response = try await vault.proxy(method, "/v2/persons")
                #expect(response.status == 405, "\(method): \(response.raw)")
                let allowed = Set(
                    (response.header("Allow") ?? "").split(separator: ",").map {
                        $0.trimmingCharacters(in: .whitespaces)
                    }
                )
                #expect(allowed == ["GET", "POST", "PUT", "PATCH", "DELETE"], "\(method): \(response.head)")
            }
            let sent = vault.resourceRequests.dropFirst(before).map { "\($0.method) \($0.target)" }
            #expect(sent.isEmpty, "refused methods reached the upstream: \(sent)")
        }
    }

    /// Request targets (path and query under the API base) that pass the traversal checks and must reach the
    /// upstream byte for byte: percent-encoded segments in either case, encoded reserved characters (which RFC 3986
    /// does not make equivalent to the plain ones), `+`, and queries with repeated keys, empty values and escapes.
    static let verbatimTargets = [
        "/v2/persons/caf%C3%A9",
        "/v2/persons/caf%c3%a9",
        "/v2/documents/a+b",
        "/v2/documents/annual%20report%202026.pdf",
        "/v2/documents/a%2Bb",
        "/v2/documents/x%3Bv%3D1",
        "/v2/documents/%41bc",
        "/v2/documents/%E2%9C%93~_-.!$&'()*+,;=:@",
        "/v2/persons?id=1&id=2&id=3",
        "/v2/persons?name=&flag&empty=&=x",
        "/v2/persons?q=caf%C3%A9&q2=caf%c3%a9&u=%E2%9C%93&plus=a+b&enc=%2B%26%3D%3F",
        "/v2/persons/caf%C3%A9?filter%5Bemail%5D=a+b%40example.com&sort=-created_at,+id",
    ]

    /// Targets with bytes a URI cannot carry as they are (RFC 3986: `[` and `]` only in a host, `{`, `|`, `^`, … never),
    /// and what reaches the upstream: those bytes percent-encoded, every other byte (escapes included) as sent.
    static let encodedTargets = [
        (
            "/v2/persons/caf%C3%A9?filter[email]=a+b%40example.com&sort=-created_at,+id",
            "/v2/persons/caf%C3%A9?filter%5Bemail%5D=a+b%40example.com&sort=-created_at,+id"
        ),
        ("/v2/persons?ids[]=1&ids[]=2&x={a|b}", "/v2/persons?ids%5B%5D=1&ids%5B%5D=2&x=%7Ba%7Cb%7D"),
        ("/v2/documents/a{b}|c", "/v2/documents/a%7Bb%7D%7Cc"),
    ]

    @Test("paths and queries arrive byte-identical, under the base URL's own path prefix when it has one")
    func targetsArriveVerbatim() async throws {
        try await Self.withVault { vault in
            let prefix = "/api/personio"
            vault.upstream.register(
                path: prefix + "/v2/auth/token",
                headers: [("Content-Type", "application/json")],
                body: Self.tokenAnswer("CANARY-prefixed-token")
            )
            try await vault.addV2("prefixed", pathPrefix: prefix)

            for (connection, expectedPrefix) in [("acme", ""), ("prefixed", prefix)] {
                for (target, arrives) in Self.verbatimTargets.map({ ($0, $0) }) + Self.encodedTargets {
                    let before = vault.resourceRequests.count
                    let response = try await vault.proxy("GET", target, connection: connection)
                    #expect(response.status == 200, "\(connection) \(target): \(response.raw)")
                    let seen = vault.resourceRequests.dropFirst(before).map(\.target)
                    #expect(
                        seen == [expectedPrefix + arrives],
                        "\(connection): sent \(target), the upstream received \(seen)"
                    )
                }
            }
            let prefixed = vault.resourceRequests.filter { $0.path.hasPrefix(prefix + "/") }
            #expect(prefixed.allSatisfy { $0.header("Authorization") == "Bearer CANARY-prefixed-token" })
        }
    }

    // MARK: - 2. Hop-by-hop headers

    @Test("a caller's hop-by-hop headers are not sent upstream; a chunked body is re-framed, not relayed")
    func requestHopByHopHeadersStay() async throws {
        try await Self.withVault { vault in
            let response = try await vault.proxy(
                "GET",
                "/v2/persons",
                headers: [
                    ("Connection", "close"),
                    ("Keep-Alive", "timeout=5, max=100"),
                    ("TE", "trailers"),
                    ("Upgrade", "websocket"),
                    ("Proxy-Authorization", "Basic Q0FOQVJZLXByb3h5LWF1dGg="),
                    ("Proxy-Connection", "keep-alive"),
                    ("X-Personio-Trace", "trace-1"),
                ]
            )
            #expect(response.status == 200, "\(response.raw)")
            let request = try #require(vault.requests(to: "/v2/persons").last, "nothing reached the upstream")
            for name in ["Keep-Alive", "TE", "Upgrade", "Proxy-Authorization", "Proxy-Connection"] {
                #expect(request.headers(name).isEmpty, "\(name) went upstream: \(request.headers)")
            }
            // The vault's own HTTP client may manage its upstream connection; the caller's tokens must not be there.
            #expect(
                request.headers("Connection").allSatisfy { !$0.lowercased().contains("close") },
                "the caller's Connection went upstream: \(request.headers)"
            )
            #expect(request.header("Host") == "127.0.0.1:\(vault.upstream.port)", "\(request.headers)")
            #expect(request.header("X-Personio-Trace") == "trace-1", "\(request.headers)")

            // A chunked body arrives whole; the upstream sees the vault's framing of it, one coding at most.
            let chunked = try await Blocking.run { [socket = vault.daemon.appSocket] in
                try RawHTTP.request(
                    socket: socket,
                    "POST \(Self.proxyTarget("acme", "/v2/documents")) HTTP/1.1\r\nHost: localhost\r\n"
                        + "Connection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + "6\r\n{\"a\":1\r\n1\r\n}\r\n0\r\n\r\n"
                )
            }
            #expect(chunked.status == 200, "\(chunked.raw)")
            let upload = try #require(vault.requests(to: "/v2/documents").last, "the chunked POST never arrived")
            #expect(upload.body == Array(#"{"a":1}"#.utf8), "\(upload.bodyBytes) bytes: \(upload.body)")
            let codings = upload.headers("Transfer-Encoding")
            #expect(codings.isEmpty || codings == ["chunked"], "\(upload.headers)")
            #expect(
                codings.isEmpty != upload.headers("Content-Length").isEmpty,
                "framing headers: \(upload.headers)"
            )
        }
    }

    @Test("a header the caller names in Connection is not sent upstream")
    func requestConnectionNominatedHeadersStay() async throws {
        try await Self.withVault { vault in
            let response = try await vault.proxy(
                "GET",
                "/v2/persons",
                headers: [
                    ("Connection", "close, X-Personio-Hop"),
                    ("X-Personio-Hop", "hop-1"),
                    ("X-Personio-Trace", "trace-1"),
                ]
            )
            #expect(response.status == 200, "\(response.raw)")
            let request = try #require(vault.requests(to: "/v2/persons").last, "nothing reached the upstream")
            #expect(request.headers("X-Personio-Hop").isEmpty, "X-Personio-Hop went upstream: \(request.headers)")
            #expect(request.header("X-Personio-Trace") == "trace-1", "\(request.headers)")
        }
    }

    @Test("the upstream's hop-by-hop headers are not relayed; a chunked answer is re-framed")
    func responseHopByHopHeadersStay() async throws {
        try await Self.withVault { vault in
            vault.upstream.register(
                path: "/v2/hop",
                headers: [
                    ("Content-Type", "text/plain"),
                    ("Connection", "keep-alive"),
                    ("Keep-Alive", "timeout=5, max=100"),
                    ("Upgrade", "h2c"),
                    ("Proxy-Authenticate", "Basic realm=\"CANARY-upstream\""),
                    ("X-RateLimit-Remaining", "5"),
                    ("Cache-Control", "public, max-age=600"),
                    ("Transfer-Encoding", "chunked"),
                ],
                body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            let response = try await vault.proxy("GET", "/v2/hop")
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.content == "hello world", "\(response.raw)")
            let head = response.head.lowercased()
            for name in ["keep-alive", "upgrade", "proxy-authenticate"] {
                #expect(!head.contains("\r\n\(name):"), "\(name) came back: \(response.head)")
            }
            #expect(!head.contains("h2c") && !head.contains("canary-upstream"), "\(response.head)")
            // The vault answers `Connection: close` to a caller that asked for it, whatever the upstream said.
            let connection = Self.headerValues("Connection", in: response.head)
            #expect(connection.allSatisfy { !$0.lowercased().contains("keep-alive") }, "\(response.head)")
            let codings = Self.headerValues("Transfer-Encoding", in: response.head)
            #expect(codings.isEmpty || codings == ["chunked"], "\(response.head)")
            #expect(response.header("X-RateLimit-Remaining") == "5", "\(response.head)")
            // Answers with HR data are never cached on the way, whatever Personio says.
            #expect(Self.headerValues("Cache-Control", in: response.head) == ["no-store"], "\(response.head)")
        }
    }

    @Test("an HTTP/1.0 caller that keeps its connection alive gets a chunked answer ended by the connection")
    func anHTTP10AnswerWithoutALengthEndsItsConnection() async throws {
        try await Self.withVault { vault in
            vault.upstream.register(
                path: "/v2/chunked",
                headers: [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")],
                body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            // HTTP/1.0 has no chunks: the body's end can only be the connection's, whatever the caller asked for.
            let request =
                "GET \(Self.proxyTarget("acme", "/v2/chunked")) HTTP/1.0\r\nHost: localhost\r\n"
                + "Connection: keep-alive\r\n\r\n"
            let started = ContinuousClock.now
            let response = try await Blocking.run { [socket = vault.daemon.appSocket] in
                try RawHTTP.request(socket: socket, request, timeout: .seconds(8))
            }
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.head.hasPrefix("HTTP/1.0 200"), "\(response.head)")
            #expect(response.body == "hello world", "\(response.raw)")
            #expect(Self.headerValues("Transfer-Encoding", in: response.head).isEmpty, "\(response.head)")
            #expect(Self.headerValues("Connection", in: response.head) == ["close"], "\(response.head)")
            #expect(elapsed < .seconds(5), "the connection stayed open after a body only its end could end")
        }
    }

    @Test("a header the upstream names in Connection is not relayed")
    func responseConnectionNominatedHeadersStay() async throws {
        try await Self.withVault { vault in
            vault.upstream.register(
                path: "/v2/hop",
                headers: [
                    ("Content-Type", "application/json"),
                    ("Connection", "keep-alive, X-RateLimit-Hop"),
                    ("X-RateLimit-Hop", "hop-1"),
                    ("X-RateLimit-Remaining", "5"),
                ],
                body: "{}"
            )
            let response = try await vault.proxy("GET", "/v2/hop")
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.header("X-RateLimit-Hop") == nil, "\(response.head)")
            #expect(response.header("X-RateLimit-Remaining") == "5", "\(response.head)")
        }
    }

    // MARK: - 3. The caller's credentials and identification

    @Test("a caller's Authorization, X-Company-Id and identification headers are replaced; other X-Personio-* pass")
    func callerCredentialsAreReplaced() async throws {
        try await Self.withVault(options: ["--app-id", "ACME_SYNC", "--partner-id", "ACME_PARTNER"]) { vault in
            try await vault.addV2("bare")
            let added = try await Blocking.run { [daemon = vault.daemon, upstream = vault.upstream] in
                try daemon.ctl(
                    [
                        "add", "jobs", "--provider", "personio-recruiting", "--company-id", "123", "--api-base-url",
                        upstream.baseURL, "--allow-uid", "0", "--secret-stdin",
                    ],
                    stdin: Self.recruitingKey + "\n"
                )
            }
            try #require(added.status == 0, "\(added)")
            let callerHeaders = [
                ("Authorization", "Bearer CANARY-caller-token"),
                ("authorization", "Basic Q0FOQVJZLWNhbGxlcg=="),
                ("X-Company-Id", "999"),
                ("X-Personio-App-ID", "CALLER_APP"),
                ("x-personio-partner-id", "CALLER_PARTNER"),
                ("X-Personio-Request-Id", "request-1"),
            ]

            for (connection, path) in [("acme", "/v2/persons"), ("bare", "/v2/persons"), ("jobs", "/v1/recruiting/x")] {
                let before = vault.resourceRequests.count
                let response = try await vault.proxy("GET", path, connection: connection, headers: callerHeaders)
                #expect(response.status == 200, "\(connection): \(response.raw)")
                let request = try #require(vault.resourceRequests.dropFirst(before).first, "\(connection): not sent")
                let expected: (authorization: String, company: [String], app: [String], partner: [String]) =
                    switch connection {
                    case "acme": ("Bearer upstream-token-1", [], ["ACME_SYNC"], ["ACME_PARTNER"])
                    case "bare": ("Bearer upstream-token-2", [], [], [])
                    default: ("Bearer \(Self.recruitingKey)", ["123"], [], [])
                    }
                #expect(
                    request.headers("Authorization") == [expected.authorization],
                    "\(connection): \(request.headers)"
                )
                #expect(request.headers("X-Company-Id") == expected.company, "\(connection): \(request.headers)")
                #expect(request.headers("X-Personio-App-ID") == expected.app, "\(connection): \(request.headers)")
                #expect(
                    request.headers("X-Personio-Partner-ID") == expected.partner,
                    "\(connection): \(request.headers)"
                )
                #expect(request.headers("X-Personio-Request-Id") == ["request-1"], "\(connection): \(request.headers)")
                #expect(
                    !response.raw.contains("upstream-token-") && !response.raw.contains(Self.recruitingKey),
                    "\(connection): a credential came back: \(response.raw)"
                )
            }
        }
    }

    // MARK: - 4. Redirects

    @Test("a redirect is relayed with its status, Location and body, and never followed")
    func redirectsAreRelayedNotFollowed() async throws {
        let elsewhere = try ProxyUpstream()
        defer { elsewhere.shutdown() }
        try await Self.withVault { vault in
            for (status, method) in [(301, "GET"), (302, "GET"), (303, "POST"), (307, "POST"), (308, "PUT")] {
                let path = "/v2/moved/\(status)"
                let location = "\(elsewhere.baseURL)/v2/elsewhere/\(status)?from=proxy"
                let body = #"{"moved":\#(status)}"#
                vault.upstream.register(
                    path: path,
                    status: status,
                    headers: [("Content-Type", "application/json"), ("Location", location)],
                    body: body
                )
                let sent: String? = method == "GET" ? nil : #"{"note":"sent once"}"#
                let response = try await vault.proxy(
                    method,
                    path,
                    headers: sent == nil ? [] : [("Content-Type", "application/json")],
                    body: sent
                )
                #expect(response.status == status, "\(status): \(response.raw)")
                #expect(response.header("Location") == location, "\(status): \(response.head)")
                #expect(response.content == body, "\(status): \(response.raw)")
                let seen = vault.requests(to: path)
                #expect(seen.count == 1, "\(status): the upstream saw \(seen.count) requests for \(path)")
                #expect(seen.first?.method == method, "\(status)")
            }
            // The answers above are complete; a redirect followed would have been sent before them.
            let followed = elsewhere.requests.map { "\($0.method) \($0.target) \($0.headers)" }
            #expect(followed.isEmpty, "the vault followed a redirect: \(followed)")
            #expect(elsewhere.snapshot.connections == 0, "the vault connected to the Location's host")
        }
    }

    // MARK: - 5. Rate-limit headers

    @Test("Retry-After and X-RateLimit-* are relayed on a 429 and on a 200")
    func rateLimitHeadersAreRelayed() async throws {
        try await Self.withVault { vault in
            let limits = [
                ("X-RateLimit-Limit", "150"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1767225600"),
            ]
            vault.upstream.register(
                path: "/v2/limited",
                status: 429,
                headers: [("Content-Type", "application/json"), ("Retry-After", "7")] + limits,
                body: #"{"errors":[{"title":"Too many requests"}]}"#
            )
            vault.upstream.register(
                path: "/v2/fine",
                headers: [
                    ("Content-Type", "application/json"), ("Retry-After", "3"), ("X-RateLimit-Remaining", "149"),
                ],
                body: #"{"_data":[]}"#
            )
            let limited = try await vault.proxy("GET", "/v2/limited")
            #expect(limited.status == 429, "\(limited.raw)")
            #expect(limited.header("Retry-After") == "7", "\(limited.head)")
            for (name, value) in limits {
                #expect(limited.header(name) == value, "\(name): \(limited.head)")
            }
            #expect(limited.content == #"{"errors":[{"title":"Too many requests"}]}"#, "\(limited.raw)")

            let fine = try await vault.proxy("GET", "/v2/fine")
            #expect(fine.status == 200, "\(fine.raw)")
            #expect(fine.header("Retry-After") == "3", "\(fine.head)")
            #expect(fine.header("X-RateLimit-Remaining") == "149", "\(fine.head)")
            #expect(vault.requests(to: "/v2/limited").count == 1, "the vault retried a 429")
        }
    }

    // MARK: - 6. Time-outs and server errors

    @Test("a response head later than --proxy-timeout is answered 503 upstream_unavailable with Retry-After")
    func lateResponseHeadTimesOut() async throws {
        try await Self.withVault(["--dev", "--log-level", "debug", "--proxy-timeout", "2"]) { vault in
            vault.upstream.register(path: "/v2/slow", body: "{}", delay: .seconds(30))
            let start = ContinuousClock.now
            let response = try await vault.proxy("GET", "/v2/slow", timeout: .seconds(40))
            let elapsed = ContinuousClock.now - start
            #expect(response.status == 503, "after \(elapsed): \(response.raw)")
            #expect(response.mediaType == "application/problem+json", "\(response.head)")
            #expect(response.problem?.code == .upstreamUnavailable, "\(response.content)")
            #expect(response.header("Retry-After").flatMap { Int($0) }.map { $0 >= 1 } == true, "\(response.head)")
            #expect(elapsed >= .milliseconds(1900), "answered after \(elapsed), before the 2 s time-out")
            #expect(elapsed < .seconds(20), "answered after \(elapsed): the time-out was not applied")
            #expect(vault.requests(to: "/v2/slow").count == 1)
        }
    }

    @Test("an upstream 503 becomes 503 upstream_unavailable with Retry-After; other 5xx become 502 upstream_error")
    func serverErrorsBecomeProblems() async throws {
        try await Self.withVault { vault in
            for status in [500, 502, 503, 504] {
                vault.upstream.register(
                    path: "/v2/failing/\(status)",
                    status: status,
                    headers: [("Content-Type", "application/json"), ("Retry-After", "11")],
                    body: #"{"personio_trace_id":"CANARY-trace"}"#
                )
                let response = try await vault.proxy("GET", "/v2/failing/\(status)")
                #expect(response.mediaType == "application/problem+json", "\(status): \(response.head)")
                #expect(!response.content.contains("CANARY-trace"), "\(status): the upstream's body came back")
                if status == 503 {
                    #expect(response.status == 503, "\(response.raw)")
                    #expect(response.problem?.code == .upstreamUnavailable, "\(response.content)")
                    #expect(
                        response.header("Retry-After").flatMap { Int($0) }.map { $0 >= 1 } == true,
                        "\(response.head)"
                    )
                } else {
                    #expect(response.status == 502, "\(status): \(response.raw)")
                    #expect(response.problem?.code == .upstreamError, "\(status): \(response.content)")
                }
                #expect(vault.requests(to: "/v2/failing/\(status)").count == 1, "\(status) was retried")
            }
        }
    }

    /// Answers whose framing two parsers could read differently: the shapes of response splitting.
    static let unframeable: [(name: String, headers: [(String, String)], body: String)] = [
        (
            "Content-Length with Transfer-Encoding",
            [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            "0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nCANARY-split!"
        ),
        ("two lengths", [("Content-Length", "13"), ("Content-Length", "0")], "CANARY-split!"),
        ("a tab after the length", [("Content-Length", "13\t")], "CANARY-split!"),
        ("a coding other than chunked", [("Transfer-Encoding", "gzip, chunked")], "d\r\nCANARY-split!\r\n0\r\n\r\n"),
        ("a bare LF in a value", [("X-A", "b\nContent-Length: 0"), ("Content-Length", "13")], "CANARY-split!"),
    ]

    @Test("an answer whose framing is not plain HTTP/1.1 is 502 upstream_error, nothing of it relayed")
    func unframeableAnswersAreNotRelayed() async throws {
        try await Self.withVault { vault in
            vault.upstream.register(path: "/v2/fine", headers: [("Content-Type", "application/json")], body: "{}")
            for (index, answer) in Self.unframeable.enumerated() {
                vault.upstream.register(path: "/v2/split/\(index)", headers: answer.headers, body: answer.body)
                let response = try await vault.proxy("GET", "/v2/split/\(index)")
                #expect(response.status == 502, "\(answer.name): \(response.raw)")
                #expect(response.problem?.code == .upstreamError, "\(answer.name): \(response.content)")
                #expect(response.mediaType == "application/problem+json", "\(answer.name): \(response.head)")
                #expect(!response.raw.contains("CANARY-split"), "\(answer.name): the answer came back")
                // The next request goes out on a connection of its own and is answered as usual.
                let next = try await vault.proxy("GET", "/v2/fine")
                #expect(next.status == 200 && next.content == "{}", "after \(answer.name): \(next.raw)")
            }
        }
    }

    /// Requests whose framing two parsers could read differently, each hiding a second request to the proxy route in
    /// what its own framing would leave over: the shapes of request smuggling, as a local user would send them.
    static let smuggling: [(name: String, headers: String, body: String)] = [
        ("Content-Length with Transfer-Encoding", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
        ("two lengths", "Content-Length: 0\r\nContent-Length: 61\r\n", ""),
        ("a tab after the length", "Content-Length: 0\t\r\n", ""),
        ("a tab before the coding", "Transfer-Encoding:\tchunked\r\n", "0\r\n\r\n"),
        ("a coding other than chunked", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        ("a space before the colon", "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n"),
        ("obs-fold", "X-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n"),
        ("a bare LF in a value", "X-A: b\nContent-Length: 0\r\n", ""),
        ("a tab after keep-alive", "Connection: keep-alive\t\r\nContent-Length: 0\r\n", ""),
    ]

    @Test("a caller's request whose framing is not plain HTTP/1.1 is 400, and nothing of it reaches Personio")
    func smuggledRequestsAreRefused() async throws {
        try await Self.withVault { vault in
            vault.upstream.register(path: "/v2/fine", headers: [("Content-Type", "application/json")], body: "{}")
            let hidden = "GET \(Self.proxyTarget("acme", "/v2/smuggled")) HTTP/1.1\r\nHost: localhost\r\n\r\n"
            for shape in Self.smuggling {
                let request =
                    "POST \(Self.proxyTarget("acme", "/v2/fine")) HTTP/1.1\r\nHost: localhost\r\n\(shape.headers)\r\n"
                    + shape.body + hidden
                let response = try await Blocking.run { [socket = vault.daemon.appSocket] in
                    try RawHTTP.request(socket: socket, request, timeout: .seconds(10))
                }
                #expect(response.status == 400, "\(shape.name): \(response.raw)")
                #expect(response.mediaType == "application/problem+json", "\(shape.name): \(response.head)")
                #expect(response.header("Connection") == "close", "\(shape.name): \(response.head)")
                #expect(
                    response.problem?.detail.hasPrefix("the request is not valid HTTP/1.1: ") == true,
                    "\(shape.name): \(response.body)"
                )
            }
            #expect(vault.requests(to: "/v2/fine").isEmpty, "a refused request went out")
            #expect(vault.requests(to: "/v2/smuggled").isEmpty, "a hidden request went out")
            // The daemon goes on serving.
            let next = try await vault.proxy("GET", "/v2/fine")
            #expect(next.status == 200 && next.content == "{}", "\(next.raw)")
        }
    }

    // MARK: - 7. A caller that disconnects

    @Test("a caller that disconnects mid-request cancels the upstream request")
    func disconnectCancelsUpstream() async throws {
        try await Self.withVault { vault in
            // Much longer than the cancellation may take: a vault that waits for the answer is seen waiting.
            vault.upstream.register(path: "/v2/slow", body: "{}", delay: .seconds(30))
            let socket = vault.daemon.appSocket
            let cancelledAfter = try await Blocking.run { [upstream = vault.upstream] () throws -> Duration? in
                let connection = try BlockingHTTPConnection(socketPath: socket, timeout: .seconds(5))
                defer { connection.close() }
                let request = "GET \(Self.proxyTarget("acme", "/v2/slow")) HTTP/1.1\r\nHost: localhost\r\n\r\n"
                try connection.send(Array(request.utf8))
                guard upstream.wait(timeout: .seconds(15), until: { $0.requests.contains { $0.path == "/v2/slow" } })
                else { throw TestSupportError("the proxied request never reached the upstream") }
                connection.close()
                let closed = ContinuousClock.now
                let cancelled = upstream.wait(timeout: .seconds(10)) { snapshot in
                    snapshot.requests.contains { $0.path == "/v2/slow" && $0.cancelled }
                }
                return cancelled ? ContinuousClock.now - closed : nil
            }
            let elapsed = try #require(
                cancelledAfter,
                "the upstream request was still open 10 s after the caller disconnected"
            )
            // About 2 s is the target on a quiet machine; 10 s stays far from the upstream's 30 s answer.
            #expect(elapsed < .seconds(10), "cancelled \(elapsed) after the caller disconnected")
            #expect(vault.requests(to: "/v2/slow").count == 1)
            let health = try await vault.send("GET", Routes.health)
            #expect(health.status == 200, "\(health.raw)")
        }
    }

    // MARK: - 8. A 401 and the cached token

    /// Makes `/v2/persons` answer `status` with `body`.
    static func answerPersons(_ vault: Vault, status: Int, body: String) {
        vault.upstream.register(
            path: "/v2/persons",
            status: status,
            headers: [("Content-Type", "application/json")],
            body: body
        )
    }

    static let unauthorizedBody = #"{"errors":[{"title":"CANARY-unauthorized","detail":"token revoked"}]}"#

    @Test("a 401 to a token older than the minimum refetch interval is relayed, not retried, and drops the token")
    func unauthorizedDropsAnOlderToken() async throws {
        try await Self.withVault { vault in
            Self.answerPersons(vault, status: 200, body: #"{"_data":[]}"#)
            let first = try await vault.proxy("GET", "/v2/persons")
            #expect(first.status == 200, "\(first.raw)")
            #expect(vault.tokenExchanges == 1)
            #expect(vault.requests(to: "/v2/persons").last?.header("Authorization") == "Bearer upstream-token-1")

            // Let the cached token grow older than the interval within which a 401 does not drop it.
            try await Task.sleep(for: Self.minimumRefetchInterval + .milliseconds(500))
            Self.answerPersons(vault, status: 401, body: Self.unauthorizedBody)
            let rejected = try await vault.proxy(
                "POST",
                "/v2/persons",
                headers: [("Content-Type", "application/json")],
                body: #"{"first_name":"Once"}"#
            )
            #expect(rejected.status == 401, "\(rejected.raw)")
            #expect(rejected.content == Self.unauthorizedBody, "\(rejected.raw)")
            let posts = vault.requests(to: "/v2/persons").filter { $0.method == "POST" }
            #expect(posts.count == 1, "the vault sent the POST \(posts.count) times")
            #expect(vault.tokenExchanges == 1, "the vault fetched a token before the next request")

            Self.answerPersons(vault, status: 200, body: #"{"_data":[]}"#)
            let next = try await vault.proxy("GET", "/v2/persons")
            #expect(next.status == 200, "\(next.raw)")
            #expect(vault.tokenExchanges == 2, "the next request did not fetch a fresh token")
            #expect(
                vault.requests(to: "/v2/persons").last?.header("Authorization") == "Bearer upstream-token-2",
                "\(vault.requests(to: "/v2/persons").last?.headers ?? [])"
            )
        }
    }

    @Test("a 401 to a token obtained within the minimum refetch interval is relayed, not retried, and keeps it")
    func unauthorizedKeepsAFreshToken() async throws {
        try await Self.withVault { vault in
            Self.answerPersons(vault, status: 200, body: #"{"_data":[]}"#)
            let start = ContinuousClock.now
            let first = try await vault.proxy("GET", "/v2/persons")
            #expect(first.status == 200, "\(first.raw)")
            #expect(vault.tokenExchanges == 1)

            Self.answerPersons(vault, status: 401, body: Self.unauthorizedBody)
            let rejected = try await vault.proxy(
                "POST",
                "/v2/persons",
                headers: [("Content-Type", "application/json")],
                body: #"{"first_name":"Once"}"#
            )
            #expect(rejected.status == 401, "\(rejected.raw)")
            #expect(rejected.content == Self.unauthorizedBody, "\(rejected.raw)")
            #expect(vault.requests(to: "/v2/persons").filter { $0.method == "POST" }.count == 1)

            Self.answerPersons(vault, status: 200, body: #"{"_data":[]}"#)
            let next = try await vault.proxy("GET", "/v2/persons")
            let elapsed = ContinuousClock.now - start
            try #require(
                elapsed < Self.minimumRefetchInterval - .seconds(1),
                "three requests took \(elapsed): too slow to test the interval"
            )
            #expect(next.status == 200, "\(next.raw)")
            #expect(vault.tokenExchanges == 1, "a token younger than the interval was dropped")
            #expect(vault.requests(to: "/v2/persons").last?.header("Authorization") == "Bearer upstream-token-1")
        }
    }

    // MARK: - Helpers

    /// Every value of the header `name` in a response head (the vault may send several lines of one header).
    static func headerValues(_ name: String, in head: String) -> [String] {
        head.split(separator: "\r\n").dropFirst().compactMap { line in
            let pieces = line.split(separator: ":", maxSplits: 1)
            guard pieces.count == 2, pieces[0].trimmingCharacters(in: .whitespaces).lowercased() == name.lowercased()
            else { return nil }
            return pieces[1].trimmingCharacters(in: .whitespaces)
        }
    }
}
