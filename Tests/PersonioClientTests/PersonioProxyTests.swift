import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PersonioStandIn
import TestSupport
import Testing
import VaultCrypto
import VaultLocks

@testable import PersonioClient

/// The proxy's checks as tables of values, and its forwarding against the stand-in over real HTTP on 127.0.0.1.
@Suite struct PersonioProxyTests {
    static let recruitingKey = "fake-recruiting-key-0123456789abcdef"
    static let companyID = "12345"

    // MARK: - Path safety

    /// Raw `{path}` → what goes upstream: as sent, but bytes a URI cannot carry, percent-encoded.
    static let acceptedPaths: [(String, String)] = [
        ("/v2/persons", "/v2/persons"),
        ("/v1/company/employees", "/v1/company/employees"),
        ("/v2/persons/123", "/v2/persons/123"),
        ("/v1/company/employees/custom-attributes", "/v1/company/employees/custom-attributes"),
        ("/v1/recruiting/applications", "/v1/recruiting/applications"),
        ("/v2/a%41b", "/v2/a%41b"),
        ("/v2/%7Euser", "/v2/%7Euser"),
        ("/v2/a%20b", "/v2/a%20b"),
        ("/v2/a%22b%3C%3E", "/v2/a%22b%3C%3E"),
        ("/v2/na%c3%afve", "/v2/na%c3%afve"),
        ("/v2/a%2Bb", "/v2/a%2Bb"),
        ("/v2/naïve", "/v2/na%C3%AFve"),
        ("/v2/a\"b", "/v2/a%22b"),
        ("/v2/a{b}|c^`", "/v2/a%7Bb%7D%7Cc%5E%60"),
        ("/v1/company/time-offs;v=1", "/v1/company/time-offs;v=1"),
        ("/v2/persons:search", "/v2/persons:search"),
        ("/v2/user@example", "/v2/user@example"),
        ("/v2/..a", "/v2/..a"),
        ("/v2/.well-known", "/v2/.well-known"),
        ("/v2/a.b.c", "/v2/a.b.c"),
        ("/v2/!$&'()*+,=", "/v2/!$&'()*+,="),
        ("/x", "/x"),
    ]

    @Test(arguments: Self.acceptedPaths)
    func acceptedPathsGoUpstreamAsSent(raw: String, expected: String) throws {
        let path = try PersonioProxy.validatedPath(raw, query: nil).get()
        #expect(path == expected)
        #expect(try PersonioProxy.validatedPath(path, query: nil).get() == path, "checking again changes nothing")
    }

    static let rejectedPaths: [String] = [
        "",
        "v2/persons",
        "\\v2\\persons",
        "http://evil.example/v2/persons",
        "//evil.example/v2/persons",
        "/http:",
        "/https:%2f%2fevil.example",
        "/evil.example:443/v2/persons",
        "/",
        "/v2//persons",
        "/v2/persons/",
        "/v2/persons//",
        "/.",
        "/..",
        "/v2/../auth/token",
        "/v2/./persons",
        "/v2/persons/..",
        "/v2/...",
        "/v2/%2e%2e/auth/token",
        "/v2/%2E%2e/auth/token",
        "/v2/.%2e/auth",
        "/v2/%2e/persons",
        "/v2/..;/auth/token",
        "/v2/.;x/persons",
        "/v2/;x",
        "/v2/a%2fb",
        "/v2/a%2Fb",
        "/v2/%2f%2fevil.example",
        "/v2/a\\b",
        "/v2/a%5cb",
        "/v2/a%5C..%5Cb",
        "/v2/a%00b",
        "/v2/a%0d%0aX-Evil:%20yes",
        "/v2/a%09b",
        "/v2/a%7fb",
        "/v2/a\u{01}b",
        "/v2/a\u{7f}b",
        "/v2/a b",
        "/v2/a\tb",
        "/v2/a\r\nHost: evil",
        "/v2/%252e%252e/auth",
        "/v2/%252f",
        "/v2/%25",
        "/v2/%",
        "/v2/%4",
        "/v2/%zz",
        "/v2/%g0",
        "/v2/a?b",
        "/v2/a%3fb",
        "/v2/a%3Fb",
        "/v2/a#b",
        "/v2/a%23b",
        "/v2/%ff",
        "/v2/%c3",
        "/v2/%c0%af",
        "/v2/" + String(repeating: "a", count: 2045),
        "/" + String(repeating: "é", count: 700),
    ]

    @Test(arguments: Self.rejectedPaths)
    func unsafePathsAreRefused(raw: String) {
        guard case .failure(let error) = PersonioProxy.validatedPath(raw, query: nil) else {
            Issue.record("accepted \(raw.debugDescription)")
            return
        }
        #expect(error.code == .invalidPath)
        if raw.utf8.count > 3 {
            #expect(!error.message.contains(raw), "the message never quotes the path")
        }
    }

    @Test func theLongestPathIsAccepted() throws {
        let path = "/v2/" + String(repeating: "a", count: PersonioProxy.maximumPathBytes - 4)
        #expect(try PersonioProxy.validatedPath(path, query: nil).get() == path)
    }

    @Test(arguments: ["limit=10&offset=0", "email=fake%40example.invalid", "filter[a]=b", "x"])
    func queriesArePassedOnUnchecked(query: String) throws {
        #expect(try PersonioProxy.validatedPath("/v2/persons", query: query).get() == "/v2/persons")
    }

    @Test(arguments: ["a b", "a#b", "a\nb", "a\u{0}b", "é=1", String(repeating: "q", count: 4097)])
    func badQueriesAreRefused(query: String) {
        guard case .failure(let error) = PersonioProxy.validatedPath("/v2/persons", query: query) else {
            Issue.record("accepted \(query.debugDescription)")
            return
        }
        #expect(error.code == .invalidQuery)
    }

    // MARK: - Request checks

    @Test(arguments: ["GET", "POST", "PUT", "PATCH", "DELETE"])
    func allowedMethodsPass(method: String) throws {
        try PersonioProxy.validate(ProxyRequest(method: method, path: "/v2/persons"))
    }

    @Test(arguments: ["HEAD", "OPTIONS", "TRACE", "CONNECT", "get", "Post", "", "GET /evil"])
    func otherMethodsAreRefused(method: String) {
        #expect(throws: ProxyRequestError(.methodNotAllowed, "")) {
            try PersonioProxy.validate(ProxyRequest(method: method, path: "/v2/persons"))
        }
    }

    @Test func bodiesUpToOneMebibytePass() throws {
        let body = ByteBuffer(repeating: UInt8(ascii: "x"), count: PersonioProxy.maximumRequestBodyBytes)
        try PersonioProxy.validate(ProxyRequest(method: "POST", path: "/v2/persons", body: body))
        let bigger = ByteBuffer(repeating: UInt8(ascii: "x"), count: PersonioProxy.maximumRequestBodyBytes + 1)
        #expect(throws: ProxyRequestError(.bodyTooLarge, "")) {
            try PersonioProxy.validate(ProxyRequest(method: "POST", path: "/v2/persons", body: bigger))
        }
    }

    // MARK: - Header filtering

    @Test func onlyAllowListedCallerHeadersAreForwarded() throws {
        let headers: [(String, String)] = [
            ("Authorization", "Bearer caller-token"), ("Proxy-Authorization", "Basic eA=="), ("Cookie", "a=b"),
            ("Host", "evil.example"), ("Connection", "close"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"), ("Content-Length", "5"), ("Upgrade", "h2c"), ("Accept-Encoding", "gzip"),
            ("X-Forwarded-For", "10.0.0.1"), ("X-Company-Id", "999"), ("X-Personio-App-ID", "EVIL_APP"),
            ("x-personio-partner-id", "EVIL_PARTNER"), ("Accept", "application/json"),
            ("Content-Type", "application/json; charset=utf-8"), ("If-None-Match", "\"abc\""),
            ("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT"), ("X-Personio-Trace-Debug", "1"),
        ]
        let forwarded = try PersonioProxy.forwardedRequestHeaders(headers)
        #expect(
            forwarded.map(\.0) == [
                "Accept", "Content-Type", "If-None-Match", "If-Modified-Since", "X-Personio-Trace-Debug",
            ]
        )
        #expect(
            forwarded.map(\.1) == [
                "application/json", "application/json; charset=utf-8", "\"abc\"", "Wed, 21 Oct 2015 07:28:00 GMT", "1",
            ]
        )
    }

    @Test(arguments: [
        ("Accept", "application/json\r\nX-Evil: yes"), ("Content-Type", "a\u{0}b"), ("X-Personio-Foo", "é"),
        ("X-Personio-Foo Bar", "1"), ("X-Personio-Ä", "1"), ("Accept", String(repeating: "a", count: 4097)),
    ])
    func malformedForwardedHeadersAreRefused(name: String, value: String) {
        #expect(throws: ProxyRequestError(.invalidHeader, "")) {
            try PersonioProxy.forwardedRequestHeaders([(name, value)])
        }
    }

    @Test func tooManyForwardedHeadersAreRefused() {
        let headers = (0...PersonioProxy.maximumForwardedHeaders).map { ("X-Personio-H\($0)", "1") }
        #expect(throws: ProxyRequestError(.invalidHeader, "")) {
            try PersonioProxy.forwardedRequestHeaders(headers)
        }
    }

    @Test func onlyAllowListedResponseHeadersComeBack() {
        let authorization = ProxyAuthorization.recruiting(key: secret(Self.recruitingKey), companyID: Self.companyID)
        let headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("Content-Length", "12"), ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("Set-Cookie", "session=1"),
            ("Authorization", "Bearer \(Self.recruitingKey)"), ("WWW-Authenticate", "Bearer"),
            ("Location", "https://evil.example/"), ("X-Company-Id", Self.companyID), ("ETag", "\"v1\""),
            ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"), ("Retry-After", "7"), ("X-RateLimit-Limit", "20"),
            ("x-ratelimit-remaining", "19"), ("X-RateLimit-Reset", "key \(Self.recruitingKey.prefix(16))"),
            ("X-Personio-Trace-Id", "abc"), ("Cache-Control", "no-store"),
        ])
        let returned = PersonioProxy.returnedResponseHeaders(headers, redactor: authorization.redactor).headers
        #expect(
            returned.map(\.0) == [
                "Content-Type", "Location", "ETag", "Last-Modified", "Retry-After", "X-RateLimit-Limit",
                "x-ratelimit-remaining",
            ]
        )
        let unchunked = HTTPHeaders([("Content-Type", "text/plain"), ("Content-Length", "12")])
        #expect(
            PersonioProxy.returnedResponseHeaders(unchunked, redactor: authorization.redactor).headers.map(\.0) == [
                "Content-Type", "Content-Length",
            ]
        )
    }

    @Test func authorizationsDescribeThemselvesWithoutTheCredential() {
        let bearer = ProxyAuthorization.bearer("papi-fake-token-0123456789")
        let recruiting = ProxyAuthorization.recruiting(key: secret(Self.recruitingKey), companyID: Self.companyID)
        for authorization in [bearer, recruiting] {
            var dumped = ""
            dump(authorization, to: &dumped)
            for text in ["\(authorization)", String(reflecting: authorization), dumped] {
                #expect(!text.contains("papi-fake"))
                #expect(!text.contains(Self.recruitingKey))
            }
        }
    }

    // MARK: - Forwarding

    @Test func getForwardsTheTokenTheSettingsHeadersAndTheQuery() async throws {
        try await withProxy { fixture, proxy in
            let token = try await fixture.client.exchange(fixture.credentials(.v2)).accessToken
            let request = ProxyRequest(
                method: "GET",
                path: "/v2/persons",
                query: "limit=10&offset=0",
                headers: [
                    ("Authorization", "Bearer caller-token"), ("Cookie", "a=b"), ("X-Personio-App-ID", "EVIL_APP"),
                    ("Accept", "application/json"), ("X-Personio-Trace-Debug", "1"), ("Host", "evil.example"),
                ]
            )
            let response = try await proxy.forward(
                request,
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer(token),
                appID: Fake.appID,
                partnerID: Fake.partnerID,
                timeout: .seconds(2)
            )
            #expect(response.status == 200)
            let body = try await response.body.collect(upTo: 1 << 20)
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            )
            let auth = try #require(json["auth"] as? [String: Any])
            #expect(auth["kind"] as? String == "access_token")
            #expect(auth["app_id"] as? String == Fake.appID)
            #expect(auth["partner_id"] as? String == Fake.partnerID)
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header("Content-Length") == String(body.readableBytes))

            let recorded = try #require(fixture.standIn.lastRequest(.resource))
            #expect(recorded.method == "GET")
            #expect(recorded.path == "/v2/persons")
            #expect(recorded.query == "limit=10&offset=0")
            #expect(
                recorded.headers.filter { $0.name.lowercased() == "authorization" }.map(\.value) == ["Bearer \(token)"]
            )
            #expect(
                recorded.headers.filter { $0.name.lowercased() == "x-personio-app-id" }.map(\.value) == [Fake.appID]
            )
            #expect(recorded.header("X-Personio-Partner-ID") == Fake.partnerID)
            #expect(recorded.header("Cookie") == nil)
            #expect(recorded.header("Host") == "127.0.0.1:\(fixture.standIn.port)")
            #expect(recorded.header("Accept") == "application/json")
            #expect(recorded.header("X-Personio-Trace-Debug") == "1")
            #expect(recorded.header("X-Company-Id") == nil)
        }
    }

    @Test func identificationHeadersAreLeftOutWhenNotConfigured() async throws {
        try await withProxy { fixture, proxy in
            let token = try await fixture.client.exchange(fixture.credentials(.v1)).accessToken
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v1/company/employees"),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer(token),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 200)
            let recorded = try #require(fixture.standIn.lastRequest(.resource))
            #expect(recorded.header("X-Personio-App-ID") == nil)
            #expect(recorded.header("X-Personio-Partner-ID") == nil)
        }
    }

    @Test(arguments: ["POST", "PUT", "PATCH", "DELETE"])
    func bodiesAndMethodsArriveAsSentAndUpstreamRefusalsStreamBack(method: String) async throws {
        try await withProxy { fixture, proxy in
            let token = try await fixture.client.exchange(fixture.credentials(.v2)).accessToken
            let body = #"{"first_name":"Fake","last_name":"Person"}"#
            let response = try await proxy.forward(
                ProxyRequest(
                    method: method,
                    path: "/v1/company/employees",
                    headers: [("Content-Type", "application/json"), ("Content-Length", "99999")],
                    body: ByteBuffer(string: body)
                ),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer(token),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            // The stand-in's resources are read-only: its 405 is an answer, passed back as it is.
            #expect(response.status == 405)
            let answer = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(answer.contains("Method Not Allowed"))
            let recorded = try #require(fixture.standIn.lastRequest(.resource))
            #expect(recorded.method == method)
            #expect(recorded.bodyKind == .json)
            #expect(recorded.bodyByteCount == body.utf8.count)
            #expect(recorded.bodyFields == ["first_name": "Fake", "last_name": "Person"])
            #expect(recorded.header("Content-Length") == String(body.utf8.count))
        }
    }

    @Test func recruitingRequestsCarryTheKeyAndTheCompanyID() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.registerRecruitingKey(Self.recruitingKey, companyID: Self.companyID)
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v1/recruiting/applications", headers: [("X-Company-Id", "999")]),
                baseURL: fixture.standIn.baseURL,
                authorization: .recruiting(key: secret(Self.recruitingKey), companyID: Self.companyID),
                appID: Fake.appID,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 200)
            let body = try await response.body.collect(upTo: 1 << 20)
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            )
            let auth = try #require(json["auth"] as? [String: Any])
            #expect(auth["kind"] as? String == "recruiting")
            #expect(auth["company_id"] as? String == Self.companyID)
            let recorded = try #require(fixture.standIn.lastRequest(.resource))
            #expect(recorded.headers.filter { $0.name.lowercased() == "x-company-id" }.map(\.value) == [Self.companyID])
            #expect(recorded.header("Authorization") == "Bearer \(Self.recruitingKey)")
            #expect(recorded.header("X-Personio-App-ID") == Fake.appID)
        }
    }

    @Test func aWrongCompanyIDIsPersoniosAnswerNotAnError() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.registerRecruitingKey(Self.recruitingKey, companyID: Self.companyID)
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v1/recruiting/applications"),
                baseURL: fixture.standIn.baseURL,
                authorization: .recruiting(key: secret(Self.recruitingKey), companyID: "54321"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 403)
            _ = try await response.body.collect(upTo: 1 << 20)
        }
    }

    @Test func theBaseURLsPathPrefixIsKept() async throws {
        try await withProxy { fixture, proxy in
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v2/persons"),
                baseURL: fixture.standIn.baseURL + "/personio/",
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 404)
            _ = try await response.body.collect(upTo: 1 << 20)
            #expect(fixture.standIn.lastRequest()?.path == "/personio/v2/persons")
        }
    }

    @Test func thePathGoesOnTheWireAsSent() async throws {
        try await withProxy { fixture, proxy in
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v2/persons/na%c3%afve%20x"),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            _ = try await response.body.collect(upTo: 1 << 20)
            #expect(fixture.standIn.lastRequest()?.path == "/v2/persons/na%c3%afve%20x")
        }
    }

    @Test func anUpstream500StreamsBackAsA500() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.setFailure(.status(500), on: [.resource])
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v2/persons"),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 500)
            var chunks = 0
            var text = ""
            for try await chunk in response.body {
                chunks += 1
                text += String(buffer: chunk)
            }
            #expect(chunks >= 1)
            #expect(text.contains("Injected failure"))
            #expect(text.contains("personio_trace_id"))
        }
    }

    @Test func largeBodiesStreamThroughInSeveralChunks() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.setFailure(.oversizedBody(bytes: 300_000), on: [.resource])
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v2/persons"),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 200)
            var chunks = 0
            var bytes = 0
            for try await chunk in response.body {
                chunks += 1
                bytes += chunk.readableBytes
            }
            #expect(chunks > 1)
            #expect(bytes > 299_000)
            #expect(response.header("Content-Length") == String(bytes))
        }
    }

    @Test func aBodyOfBuffersIteratesInOrder() async throws {
        let body = ProxyResponse.Body([ByteBuffer(string: "ab"), ByteBuffer(string: "c")])
        #expect(String(buffer: try await body.collect(upTo: 3)) == "abc")
        await #expect(throws: PersonioAuthError(.invalidResponse, "")) { _ = try await body.collect(upTo: 2) }
    }

    @Test func rateLimitAnswersComeBackWithRetryAfter() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.setFailure(.tooManyRequests(retryAfter: 7), on: [.resource])
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/v2/persons"),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 429)
            #expect(response.header("Retry-After") == "7")
            _ = try await response.body.collect(upTo: 1 << 20)
        }
    }

    @Test func echoedAuthorizationHeadersAreNotPassedBack() async throws {
        // The stand-in's v1 auth endpoint echoes the token in `Authorization`, as Personio does.
        try await withProxy { fixture, proxy in
            let body = #"{"client_id":"\#(Fake.clientID)","client_secret":"\#(Fake.clientSecret)"}"#
            let response = try await proxy.forward(
                ProxyRequest(
                    method: "POST",
                    path: "/v1/auth",
                    headers: [("Content-Type", "application/json")],
                    body: ByteBuffer(string: body)
                ),
                baseURL: fixture.standIn.baseURL,
                authorization: .bearer("papi-fake"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(2)
            )
            #expect(response.status == 200)
            _ = try await response.body.collect(upTo: 1 << 20)
            #expect(fixture.standIn.issuedTokens.count == 1)
            #expect(response.header("Authorization") == nil)
            #expect(response.headers.map(\.0) == ["Content-Type", "Content-Length"])
        }
    }

    @Test func aHangingUpstreamIsUnavailableWithinTheTimeout() async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.setFailure(.hang, on: [.resource])
            let started = ContinuousClock.now
            let error = await #expect(throws: PersonioAuthError.self) {
                _ = try await proxy.forward(
                    ProxyRequest(method: "GET", path: "/v2/persons"),
                    baseURL: fixture.standIn.baseURL,
                    authorization: .bearer("papi-fake"),
                    appID: nil,
                    partnerID: nil,
                    timeout: .milliseconds(300)
                )
            }
            #expect(error?.code == .unavailable)
            #expect(
                ContinuousClock.now - started < .seconds(10),
                "a hang must end at the time-out, not at the stand-in's shutdown"
            )
        }
    }

    @Test func anUnreachableUpstreamIsUnavailable() async throws {
        try await withProxy { _, proxy in
            let error = await #expect(throws: PersonioAuthError.self) {
                _ = try await proxy.forward(
                    ProxyRequest(method: "GET", path: "/v2/persons"),
                    baseURL: "http://127.0.0.1:1",
                    authorization: .bearer("papi-fake"),
                    appID: nil,
                    partnerID: nil,
                    timeout: .seconds(2)
                )
            }
            #expect(error?.code == .unavailable)
        }
    }

    @Test func aForwardCancelledBeforeItReachesTheEventLoopSendsNothing() async throws {
        try await withProxy { fixture, proxy in
            let call = Task {
                // Cancelled before the exchange is started on the loop: `onCancel` runs first, at once.
                withUnsafeCurrentTask { $0?.cancel() }
                return try await proxy.forward(
                    ProxyRequest(method: "POST", path: "/v2/persons", body: ByteBuffer(string: "{}")),
                    baseURL: fixture.standIn.baseURL,
                    authorization: .bearer("papi-fake"),
                    appID: nil,
                    partnerID: nil,
                    timeout: .seconds(2)
                )
            }
            let error = await #expect(throws: PersonioAuthError.self) { _ = try await call.value }
            #expect(error?.code == .unavailable)
            // A request that did go out would have arrived by now.
            try await Task.sleep(for: .milliseconds(300))
            #expect(fixture.standIn.totalCalls == 0)
        }
    }

    @Test func requestsFailingTheChecksAreInvalidAndNeverSent() async throws {
        try await withProxy { fixture, proxy in
            let requests = [
                ProxyRequest(method: "TRACE", path: "/v2/persons"),
                ProxyRequest(method: "GET", path: "/v2/../auth/token"),
                ProxyRequest(method: "GET", path: "/v2/persons", query: "a b"),
                ProxyRequest(method: "GET", path: "/v2/persons", headers: [("Accept", "a\r\nb")]),
                ProxyRequest(
                    method: "POST",
                    path: "/v2/persons",
                    body: ByteBuffer(repeating: 0x20, count: PersonioProxy.maximumRequestBodyBytes + 1)
                ),
            ]
            for request in requests {
                let error = await #expect(throws: PersonioAuthError.self) {
                    _ = try await proxy.forward(
                        request,
                        baseURL: fixture.standIn.baseURL,
                        authorization: .bearer("papi-fake"),
                        appID: nil,
                        partnerID: nil,
                        timeout: .seconds(2)
                    )
                }
                #expect(error?.code == .invalidRequest)
            }
            #expect(fixture.standIn.totalCalls == 0)
        }
    }

    // MARK: - Secrets

    struct LeakScenario: Sendable, CustomTestStringConvertible {
        var name: String
        var key: String
        var companyID = PersonioProxyTests.companyID
        var baseURL: String? = nil
        var failure: PersonioStandIn.Failure = .none
        var appID: String? = nil

        var testDescription: String { self.name }
    }

    static let leakScenarios: [LeakScenario] = [
        LeakScenario(name: "hang", key: Self.recruitingKey, failure: .hang),
        LeakScenario(name: "closed connection", key: Self.recruitingKey, failure: .closeConnection),
        LeakScenario(name: "unreachable", key: Self.recruitingKey, baseURL: "http://127.0.0.1:1"),
        LeakScenario(name: "bad base URL", key: Self.recruitingKey, baseURL: "ftp://example.invalid"),
        LeakScenario(name: "bad app id", key: Self.recruitingKey, appID: "BAD\r\nAPP"),
        LeakScenario(name: "key with CR LF", key: Self.recruitingKey + "\r\nX-Evil: yes"),
        LeakScenario(name: "key with a space", key: "fake recruiting key 0123456789abcdef"),
        LeakScenario(name: "key with non-ASCII", key: Self.recruitingKey + "é"),
        LeakScenario(name: "bad company id", key: Self.recruitingKey, companyID: "12\r\n345"),
    ]

    @Test(arguments: Self.leakScenarios)
    func theRecruitingKeyAppearsInNoErrorAndNoLogLine(scenario: LeakScenario) async throws {
        try await withProxy { fixture, proxy in
            fixture.standIn.setFailure(scenario.failure, on: [.resource])
            let error = await #expect(throws: PersonioAuthError.self) {
                _ = try await proxy.forward(
                    ProxyRequest(method: "GET", path: "/v1/recruiting/applications"),
                    baseURL: scenario.baseURL ?? fixture.standIn.baseURL,
                    authorization: .recruiting(key: secret(scenario.key), companyID: scenario.companyID),
                    appID: scenario.appID,
                    partnerID: nil,
                    timeout: .milliseconds(400)
                )
            }
            let texts = [error.map { "\($0)" } ?? "", error?.message ?? ""] + fixture.logs.lines
            let fragment = String(Self.recruitingKey.prefix(12))
            for text in texts {
                #expect(!text.contains(fragment), "\(text)")
                #expect(!text.contains(scenario.key))
            }
        }
    }

    // MARK: - Helpers

    /// A stand-in, a token client and a proxy sharing its HTTP client, with the proxy's logs captured.
    func withProxy(_ body: (AuthFixture, PersonioProxy) async throws -> Void) async throws {
        try await withFixture { fixture in
            let proxy = PersonioProxy(
                sharing: fixture.client,
                logger: fixture.logs.logger(label: "personio-proxy-test")
            )
            try await body(fixture, proxy)
        }
    }
}

// MARK: - Echoed credentials

/// An upstream that echoes its request must not hand the injected credential back: every occurrence is overwritten
/// with `*` in the stream, also when it is split across chunks, and reported once per response.
@Suite struct CredentialScrubbingTests {
    static let key = "CANARY-echo-key-0123456789abcdef"

    /// Counts reports.
    final class Reports: Sendable {
        let count = Locked(0)
        var handler: @Sendable () async -> Void { { self.count.withLock { $0 += 1 } } }

        /// The count once a report has come (it is made by a task of its own, after the answer), or after 5 s;
        /// with a moment more for a second report that must not come.
        func settled() async throws -> Int {
            let deadline = ContinuousClock.now + .seconds(5)
            while self.count.withLock({ $0 }) == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(100))
            return self.count.withLock { $0 }
        }
    }

    static func scrubber(_ key: String = Self.key) -> CredentialScrubber {
        var bytes = Array(key.utf8)
        return CredentialScrubber(secrets: [SecretBytes(consuming: &bytes)])
    }

    @Test func anOccurrenceSplitAtAnyPointAcrossChunksIsOverwritten() async throws {
        let text = "before \(Self.key) middle \(Self.key)\(Self.key) after"
        let bytes = Array(text.utf8)
        let expected = text.replacingOccurrences(of: Self.key, with: String(repeating: "*", count: Self.key.utf8.count))
        for size in [1, 2, 3, 5, 7, 31, 32, 33, 64, bytes.count] {
            var buffers: [ByteBuffer] = []
            var offset = 0
            while offset < bytes.count {
                buffers.append(ByteBuffer(bytes: bytes[offset..<min(offset + size, bytes.count)]))
                offset += size
            }
            let reports = Reports()
            let body = ProxyResponse.Body(
                buffers,
                scrubber: Self.scrubber(),
                report: CredentialEchoReport(reports.handler)
            )
            var collected = ""
            for try await piece in body { collected += String(buffer: piece) }
            #expect(collected == expected, "chunks of \(size)")
            #expect(reports.count.withLock { $0 } == 1, "chunks of \(size)")
        }
    }

    @Test func aBodyWithoutTheCredentialIsUnchangedAndNotReported() async throws {
        let reports = Reports()
        let parts = ["CANARY-echo-key-0123", "456789abcdeX", " CANARY-echo"].map { ByteBuffer(string: $0) }
        let body = ProxyResponse.Body(parts, scrubber: Self.scrubber(), report: CredentialEchoReport(reports.handler))
        var collected = ""
        for try await piece in body { collected += String(buffer: piece) }
        #expect(collected == parts.map { String(buffer: $0) }.joined())
        #expect(reports.count.withLock { $0 } == 0)
    }

    @Test func jsonAndFormEncodedEchoesAreOverwrittenToo() {
        let key = "CANARY/echo+key\"x"
        let scrubber = Self.scrubber(key)
        let (json, jsonFound) = scrubber.scrub(#"{"echo":"CANARY/echo+key\"x"}"#)
        #expect(jsonFound && !json.contains("CANARY"), "\(json)")
        let (form, formFound) = scrubber.scrub("token=CANARY%2Fecho%2Bkey%22x&x=1")
        #expect(formFound && form.hasPrefix("token=*") && form.hasSuffix("&x=1"), "\(form)")
    }

    @Test func anEchoingUpstreamNeverHandsTheInjectedAccessTokenBack() async throws {
        let token = "papi-CANARY-echo-token-0123456789"
        let upstream = try EchoUpstream(chunkSize: 3)
        defer { upstream.stop() }
        try await withFixture { fixture in
            let proxy = PersonioProxy(sharing: fixture.client, logger: fixture.logs.logger())
            let reports = Reports()
            let response = try await proxy.forward(
                ProxyRequest(method: "GET", path: "/status/403/v2/persons"),
                baseURL: upstream.baseURL,
                authorization: .bearer(token),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(5),
                onCredentialEcho: reports.handler
            )
            #expect(response.status == 403)
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(!body.contains(token) && body.contains("Authorization: Bearer ****"), "\(body)")
            #expect(try await reports.settled() == 1)
        }
    }

    @Test(arguments: [200, 401, 403, 404, 429, 500])
    func anEchoingUpstreamNeverHandsTheRecruitingKeyBack(status: Int) async throws {
        let upstream = try EchoUpstream(chunkSize: 5)
        defer { upstream.stop() }
        try await withFixture { fixture in
            let proxy = PersonioProxy(sharing: fixture.client, logger: fixture.logs.logger())
            let reports = Reports()
            let response = try await proxy.forward(
                ProxyRequest(
                    method: "POST",
                    path: "/status/\(status)/echo",
                    headers: [("Content-Type", "application/json")],
                    body: ByteBuffer(string: #"{"echo":"\#(Self.key)"}"#)
                ),
                baseURL: upstream.baseURL,
                authorization: .recruiting(key: secret(Self.key), companyID: "123"),
                appID: nil,
                partnerID: nil,
                timeout: .seconds(5),
                onCredentialEcho: reports.handler
            )
            #expect(response.status == status)
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(body.contains("Authorization: Bearer ****"), "\(body)")
            #expect(!body.contains(Self.key) && !body.contains("0123456789abcdef"), "\(body)")
            let headers = response.headers.map { "\($0.0): \($0.1)" }.joined(separator: "\n")
            #expect(!headers.contains(Self.key), "\(headers)")
            #expect(response.header("ETag") == "\"Bearer \(String(repeating: "*", count: Self.key.utf8.count))\"")
            #expect(try await reports.settled() == 1)
        }
    }
}

/// What scrubbing costs a streamed answer: 50 MB in 16 KiB chunks through ``ProxyResponse/Body`` with and without a
/// credential to look for, in the same run. A measurement, not a timed test: it prints its figures and asserts only
/// that the bytes came through. Run with `CONNVAULT_SCRUB_BENCH=1`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CONNVAULT_SCRUB_BENCH"] == "1"))
struct CredentialScrubbingBenchmark {
    @Test func scrubbingCostPerMegabyte() async throws {
        // JSON-like text; the worst case for the scan is text full of near misses (the credential's prefix).
        var json = ByteBuffer()
        while json.readableBytes < 16 * 1024 - 64 { json.writeString(#"{"id":12345,"name":"Fake Person","ok":true},"#) }
        var nearMisses = ByteBuffer()
        while nearMisses.readableBytes < 16 * 1024 - 64 { nearMisses.writeString("CANARY-echo-key-") }
        for (name, chunk) in [("JSON", json), ("near misses", nearMisses)] {
            try await Self.measure(name, chunk)
        }
    }

    static func measure(_ name: String, _ chunk: ByteBuffer) async throws {
        let chunks = 50_000_000 / chunk.readableBytes
        let buffers = Array(repeating: chunk, count: chunks)
        let scrubber = CredentialScrubbingTests.scrubber()
        func run(_ scrubber: CredentialScrubber) async throws -> (Duration, Int) {
            let body = ProxyResponse.Body(buffers, scrubber: scrubber, report: CredentialEchoReport(nil))
            let start = ContinuousClock.now
            var bytes = 0
            for try await piece in body { bytes += piece.readableBytes }
            return (ContinuousClock.now - start, bytes)
        }
        var plain: [Duration] = []
        var scrubbed: [Duration] = []
        for _ in 0..<5 {
            let (a, aBytes) = try await run(.none)
            let (b, bBytes) = try await run(scrubber)
            #expect(aBytes == chunks * chunk.readableBytes && bBytes == aBytes)
            plain.append(a)
            scrubbed.append(b)
        }
        let megabytes = Double(chunks * chunk.readableBytes) / 1_000_000
        func perMB(_ values: [Duration]) -> Double {
            let median = values.sorted()[values.count / 2]
            return Double(median.components.attoseconds) / 1e12 / megabytes + Double(median.components.seconds) * 1e6
                / megabytes
        }
        print(
            "scrub bench (\(name)): \(chunks) chunks of \(chunk.readableBytes) B; median of 5 per MB: "
                + "without credential \(String(format: "%.1f", perMB(plain))) us, "
                + "scrubbing \(String(format: "%.1f", perMB(scrubbed))) us"
        )
    }
}
