#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Everything the stand-in knows and decides, as a plain value: registered clients, issued tokens, injected
/// failures, counters. `handle` is the whole of Personio's behaviour; the HTTP layer only moves bytes.
struct StandInState {
    typealias Endpoint = PersonioStandIn.Endpoint

    struct Client {
        var secret: String
        var scopes: [String]
        var api: PersonioStandIn.API
    }

    struct Token {
        var clientID: String
        /// `v1` or `v2`: which endpoint issued it.
        var api: String
        var scopes: [String]
        var expiresAt: ContinuousClock.Instant
        var revoked: Bool
    }

    struct FailureRule {
        var failure: PersonioStandIn.Failure
        /// Calls left to fail; `nil` for every call until changed.
        var remaining: Int?
        var endpoints: Set<Endpoint>
    }

    struct RateLimit {
        var limit: Int
        var window: Duration
    }

    static let recordLimit = 1000
    static let errorURI = "https://developer.personio.de/docs/errors"

    var clients: [String: Client] = [:]
    /// Recruiting key → company id.
    var recruitingKeys: [String: String] = [:]
    var latency: Duration = .zero
    var failureRule: FailureRule?
    var tokenLifetimeSeconds = 86_400
    var rejectionCode: PersonioStandIn.RejectionCode = .invalidClient
    var rateLimit: RateLimit?
    var tokenCallTimes: [String: [ContinuousClock.Instant]] = [:]
    var counts: [Endpoint: Int] = [:]
    var tokens: [String: Token] = [:]
    var issuedTokens: [String] = []
    /// `api|client id|scopes` → the token currently handed out for it.
    var currentTokens: [String: String] = [:]
    var recorded: [PersonioStandIn.RecordedRequest] = []
    /// How far ``PersonioStandIn/advanceClock(by:)`` has moved the stand-in's clock past the real one.
    var clockOffset: Duration = .zero

    /// The stand-in's time: token expiry and rate-limit windows are measured in it.
    var now: ContinuousClock.Instant { .now + self.clockOffset }

    // MARK: - Configuration

    mutating func register(clientID: String, secret: String, scopes: [String], api: PersonioStandIn.API) {
        self.revokeTokens(of: clientID)
        self.clients[clientID] = Client(secret: secret, scopes: scopes, api: api)
    }

    /// Like a reset on Personio's side: the old secret stops working and so do the tokens issued under it.
    mutating func changeSecret(clientID: String, newSecret: String) {
        guard self.clients[clientID] != nil else { return }
        self.clients[clientID]?.secret = newSecret
        self.revokeTokens(of: clientID)
    }

    /// Like a disconnect on Personio's side.
    mutating func remove(clientID: String) {
        self.clients[clientID] = nil
        self.revokeTokens(of: clientID)
    }

    private mutating func revokeTokens(of clientID: String) {
        for (value, token) in self.tokens where token.clientID == clientID { self.tokens[value]?.revoked = true }
        self.currentTokens = self.currentTokens.filter { self.tokens[$0.value]?.clientID != clientID }
    }

    func isRevoked(_ token: String) -> Bool { self.tokens[token]?.revoked ?? false }

    func isValid(_ token: String, now: ContinuousClock.Instant) -> Bool {
        guard let record = self.tokens[token] else { return false }
        return !record.revoked && record.expiresAt > now
    }

    // MARK: - Handling

    /// The answer to `request` and how long to wait before giving it.
    mutating func handle(_ request: StandInRequest, now: ContinuousClock.Instant) -> (StandInReply, Duration) {
        let endpoint = Self.endpoint(for: request.path)
        self.counts[endpoint, default: 0] += 1
        self.record(request, endpoint)

        if let rule = self.failureRule, rule.endpoints.contains(endpoint) {
            if let remaining = rule.remaining {
                self.failureRule =
                    remaining > 1
                    ? FailureRule(failure: rule.failure, remaining: remaining - 1, endpoints: rule.endpoints) : nil
            }
            return (self.inject(rule.failure, endpoint: endpoint, request: request), self.latency)
        }

        let response: StandInResponse
        switch endpoint {
        case .v2Token:
            response = request.method == "POST" ? self.v2Token(request, now: now) : Self.methodNotAllowed("POST")
        case .v1Auth:
            response = request.method == "POST" ? self.v1Auth(request, now: now) : Self.methodNotAllowed("POST")
        case .v2Revoke:
            response = request.method == "POST" ? self.v2Revoke(request) : Self.methodNotAllowed("POST")
        case .resource:
            // The v2 resources take writes too (each needs its write scope); the v1 ones are read-only here.
            let scoped = Self.scopedResource(request.path) != nil
            response =
                request.method == "GET" || (scoped && Self.writeMethods.contains(request.method))
                ? self.resource(request, now: now)
                : Self.methodNotAllowed(scoped ? "GET, POST, PUT, PATCH, DELETE" : "GET")
        case .unknown:
            response = Self.resourceError(status: 404, title: "Not Found", detail: "No such endpoint", v1: false)
        }
        return (.respond(response), self.latency)
    }

    static func endpoint(for path: String) -> Endpoint {
        switch path {
        case "/v2/auth/token": .v2Token
        case "/v1/auth": .v1Auth
        case "/v2/auth/revoke": .v2Revoke
        case "/v1/company/employees", "/v1/recruiting/applications": .resource
        default: Self.scopedResource(path) != nil ? .resource : .unknown
        }
    }

    /// The v2 resources served, each with the family of scopes it needs (``requiredScope(path:method:)``).
    static let scopedResources: [(path: String, family: String)] = [
        ("/v2/persons", "persons"), ("/v2/webhooks", "webhooks"),
    ]
    static let writeMethods: Set<String> = ["POST", "PUT", "PATCH", "DELETE"]

    /// The scope family of the v2 resource at `path` (the collection or anything below it), or nil.
    static func scopedResource(_ path: String) -> String? {
        Self.scopedResources.first { path == $0.path || path.hasPrefix($0.path + "/") }?.family
    }

    /// The scope a token needs for `method` on `path`, as Personio names them: `personio:<family>:read` to read,
    /// `personio:<family>:write` to write (write does not include read). nil for the v1 resources.
    static func requiredScope(path: String, method: String) -> String? {
        Self.scopedResource(path).map { "personio:\($0):\(method == "GET" ? "read" : "write")" }
    }

    private mutating func record(_ request: StandInRequest, _ endpoint: Endpoint) {
        let kind: PersonioStandIn.BodyKind
        var fields: [String: String] = [:]
        if request.body.isEmpty {
            kind = .none
        } else if request.mediaType == "application/x-www-form-urlencoded" {
            kind = .form
            fields = FormFields.decode(String(decoding: request.body, as: UTF8.self)) ?? [:]
        } else if request.mediaType == "application/json" {
            kind = .json
            fields = FormFields.decodeJSON(request.body) ?? [:]
        } else {
            kind = .other
        }
        if self.recorded.count >= Self.recordLimit {
            self.recorded.removeFirst(self.recorded.count - Self.recordLimit + 1)
        }
        self.recorded.append(
            PersonioStandIn.RecordedRequest(
                endpoint: endpoint,
                method: request.method,
                path: request.path,
                query: request.query,
                queryFields: request.queryFields,
                headers: request.headers,
                bodyKind: kind,
                bodyFields: fields,
                bodyByteCount: request.body.count
            )
        )
    }

    // MARK: - v2

    private mutating func v2Token(_ request: StandInRequest, now: ContinuousClock.Instant) -> StandInResponse {
        guard request.mediaType == "application/x-www-form-urlencoded" else {
            return Self.oauthError(400, "invalid_request", "The request body must be application/x-www-form-urlencoded")
        }
        guard let fields = FormFields.decode(String(decoding: request.body, as: UTF8.self)) else {
            return Self.oauthError(400, "invalid_request", "The request body is not valid form encoding")
        }
        guard let grantType = fields["grant_type"] else {
            return Self.oauthError(400, "invalid_request", "Missing grant_type")
        }
        guard grantType == "client_credentials" else {
            return Self.oauthError(400, "unsupported_grant_type", "Only client_credentials is supported")
        }
        guard let clientID = fields["client_id"], let secret = fields["client_secret"] else {
            return Self.oauthError(400, "invalid_request", "Missing client_id or client_secret")
        }
        if let limited = self.rateLimited(clientID: clientID, now: now) {
            return Self.oauthError(
                429,
                "temporarily_unavailable",
                "Too many token requests",
                headers: [("Retry-After", String(limited))]
            )
        }
        guard let client = self.clients[clientID], client.api.allows(.v2Token), client.secret == secret else {
            return Self.oauthError(400, self.rejectionCode.rawValue, "Client authentication failed")
        }
        // A token carries exactly the scopes asked for (each once), or every scope of the client when none is asked.
        var requested: [String] = []
        for word in (fields["scope"] ?? "").split(separator: " ") where !requested.contains(String(word)) {
            requested.append(String(word))
        }
        if let unknown = requested.first(where: { !client.scopes.contains($0) }) {
            return Self.oauthError(400, "invalid_scope", "The scope '\(unknown)' is not granted to this client")
        }
        let scopes = requested.isEmpty ? client.scopes : requested
        let (token, expiresIn) = self.issueToken(clientID: clientID, api: "v2", scopes: scopes, now: now)
        return StandInResponse(
            status: 200,
            contentType: "application/json",
            json: .object([
                ("access_token", .string(token)), ("token_type", .string("Bearer")), ("expires_in", .int(expiresIn)),
                ("scope", .string(scopes.joined(separator: " "))), ("refresh_token", .null),
            ]),
            headers: [("Cache-Control", "no-store")]
        )
    }

    private mutating func v2Revoke(_ request: StandInRequest) -> StandInResponse {
        guard request.mediaType == "application/x-www-form-urlencoded" else {
            return Self.oauthError(400, "invalid_request", "The request body must be application/x-www-form-urlencoded")
        }
        guard let fields = FormFields.decode(String(decoding: request.body, as: UTF8.self)),
            let token = fields["token"],
            !token.isEmpty
        else {
            return Self.oauthError(400, "invalid_request", "Missing token")
        }
        // Unknown tokens are answered 200 as well (RFC 7009): revocation reveals nothing.
        if self.tokens[token] != nil {
            self.tokens[token]?.revoked = true
            self.currentTokens = self.currentTokens.filter { $0.value != token }
        }
        return StandInResponse(status: 200)
    }

    // MARK: - v1

    private mutating func v1Auth(_ request: StandInRequest, now: ContinuousClock.Instant) -> StandInResponse {
        let query = request.queryFields
        if query["client_id"] != nil || query["client_secret"] != nil {
            return Self.v1Error(403, "Credentials in the query string are no longer accepted; send them in the body")
        }
        let fields: [String: String]?
        switch request.mediaType {
        case "application/json": fields = FormFields.decodeJSON(request.body)
        case "application/x-www-form-urlencoded":
            fields = FormFields.decode(String(decoding: request.body, as: UTF8.self))
        default: fields = nil
        }
        guard let fields, let clientID = fields["client_id"], let secret = fields["client_secret"] else {
            return Self.v1Error(400, "client_id and client_secret are required in a JSON or form body")
        }
        if let limited = self.rateLimited(clientID: clientID, now: now) {
            return Self.v1Error(429, "Too many requests", headers: [("Retry-After", String(limited))])
        }
        guard let client = self.clients[clientID], client.api.allows(.v1Auth), client.secret == secret else {
            return Self.v1Error(401, "Wrong credentials")
        }
        let (token, _) = self.issueToken(clientID: clientID, api: "v1", scopes: client.scopes, now: now)
        return StandInResponse(
            status: 200,
            contentType: "application/json",
            json: .object([("success", .bool(true)), ("data", .object([("token", .string(token))]))]),
            headers: [("Authorization", "Bearer \(token)")]
        )
    }

    // MARK: - Tokens and limits

    /// The token for this client and scope set: the one already handed out while it is valid (Personio's tokens are
    /// stable per credential pair), else a new one. `expires_in` is what is left of its life.
    private mutating func issueToken(
        clientID: String,
        api: String,
        scopes: [String],
        now: ContinuousClock.Instant
    ) -> (String, Int) {
        let key = "\(api)|\(clientID)|\(scopes.sorted().joined(separator: " "))"
        if let current = self.currentTokens[key], let record = self.tokens[current], !record.revoked,
            record.expiresAt > now
        {
            let left = (record.expiresAt - now).components
            return (current, Int(left.seconds) + (left.attoseconds > 0 ? 1 : 0))
        }
        let token = "papi-" + Self.randomHex(byteCount: 24)
        self.tokens[token] = Token(
            clientID: clientID,
            api: api,
            scopes: scopes,
            expiresAt: now + .seconds(self.tokenLifetimeSeconds),
            revoked: false
        )
        self.currentTokens[key] = token
        self.issuedTokens.append(token)
        return (token, self.tokenLifetimeSeconds)
    }

    /// Seconds to wait when `clientID` has used up its token requests in the sliding window; `nil` to go ahead
    /// (and the call is counted). Refused calls do not count.
    private mutating func rateLimited(clientID: String, now: ContinuousClock.Instant) -> Int? {
        guard let rateLimit = self.rateLimit else { return nil }
        var times = self.tokenCallTimes[clientID, default: []].filter { now - $0 < rateLimit.window }
        defer { self.tokenCallTimes[clientID] = times }
        guard times.count < rateLimit.limit else {
            let wait = (times[0] + rateLimit.window - now).components
            return max(1, Int(wait.seconds) + (wait.attoseconds > 0 ? 1 : 0))
        }
        times.append(now)
        return nil
    }

    // MARK: - Protected resources

    private func resource(_ request: StandInRequest, now: ContinuousClock.Instant) -> StandInResponse {
        let v1 = request.path.hasPrefix("/v1/")
        guard let authorization = request.header("Authorization"), authorization.lowercased().hasPrefix("bearer ")
        else {
            return Self.resourceError(status: 401, title: "Unauthorized", detail: "Missing bearer token", v1: v1)
        }
        let presented = String(authorization.dropFirst("bearer ".count).trimmingASCIISpaces())
        var auth: [(String, JSONText)] = [("scheme", .string("Bearer"))]

        if request.path == "/v1/recruiting/applications" {
            guard let companyID = self.recruitingKeys[presented] else {
                return Self.resourceError(
                    status: 401,
                    title: "Unauthorized",
                    detail: "Unknown recruiting key",
                    v1: true
                )
            }
            guard request.header("X-Company-Id") == companyID else {
                return Self.resourceError(
                    status: 403,
                    title: "Forbidden",
                    detail: "X-Company-Id does not match the recruiting key",
                    v1: true
                )
            }
            auth += [("kind", .string("recruiting")), ("company_id", .string(companyID))]
        } else {
            guard let token = self.tokens[presented], !token.revoked, token.expiresAt > now else {
                return Self.resourceError(
                    status: 401,
                    title: "Unauthorized",
                    detail: "The access token is invalid, expired or revoked",
                    v1: v1
                )
            }
            if !v1, let required = Self.requiredScope(path: request.path, method: request.method),
                !token.scopes.contains(required)
            {
                return Self.resourceError(
                    status: 403,
                    title: "Insufficient access scope",
                    detail: "\(required) is required",
                    v1: false
                )
            }
            auth += [
                ("kind", .string("access_token")), ("api", .string(token.api)),
                ("scope", .string(token.scopes.joined(separator: " "))),
            ]
        }
        auth += [
            ("app_id", .optional(request.header("X-Personio-App-ID"))),
            ("partner_id", .optional(request.header("X-Personio-Partner-ID"))),
        ]
        let person = JSONText.object([
            ("id", .int(1)), ("first_name", .string("Fake")), ("last_name", .string("Person")),
        ])
        let data: JSONText = Self.scopedResource(request.path) == "webhooks" ? .array([]) : .array([person])
        let body: JSONText =
            v1
            ? .object([("success", .bool(true)), ("data", data), ("auth", .object(auth))])
            : .object([("_data", data), ("auth", .object(auth))])
        return StandInResponse(status: 200, contentType: "application/json", json: body)
    }

    // MARK: - Injected failures

    private func inject(_ failure: PersonioStandIn.Failure, endpoint: Endpoint, request: StandInRequest) -> StandInReply
    {
        switch failure {
        case .none:
            preconditionFailure("a failure rule never holds .none")
        case .hang:
            return .hang
        case .closeConnection:
            return .close
        case .status(let status):
            return .respond(Self.error(status: status, endpoint: endpoint, description: "Injected failure"))
        case .tooManyRequests(let retryAfter):
            var response = Self.error(status: 429, endpoint: endpoint, description: "Too many requests")
            if let retryAfter { response.headers.append(("Retry-After", String(retryAfter))) }
            return .respond(response)
        case .malformedJSON:
            let text = endpoint == .v1Auth ? "{\"success\":true,\"data\":{\"tok" : "{\"access_token\":\"papi-trunc"
            return .respond(
                StandInResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
            )
        case .oversizedBody(let bytes):
            let padding = String(repeating: "x", count: max(0, bytes - 16))
            let json = JSONText.object([("padding", .string(padding))])
            return .respond(StandInResponse(status: 200, contentType: "application/json", json: json))
        case .rejectEchoingCredentials:
            let body = String(decoding: request.body, as: UTF8.self)
            let fields = (endpoint == .v1Auth ? FormFields.decodeJSON(request.body) : FormFields.decode(body)) ?? [:]
            let echo =
                "Client authentication failed for client_id=\(fields["client_id"] ?? "?") "
                + "client_secret=\(fields["client_secret"] ?? "?"); request body: \(body)"
            if endpoint == .v1Auth { return .respond(Self.v1Error(401, echo)) }
            return .respond(Self.oauthError(400, self.rejectionCode.rawValue, echo))
        }
    }

    private static func error(status: Int, endpoint: Endpoint, description: String) -> StandInResponse {
        switch endpoint {
        case .v2Token, .v2Revoke:
            let code =
                status == 429 ? "temporarily_unavailable" : status >= 500 ? "server_error" : "invalid_request"
            return Self.oauthError(status, code, description)
        case .v1Auth:
            return Self.v1Error(status, description)
        case .resource, .unknown:
            return Self.resourceError(status: status, title: "Error", detail: description, v1: false)
        }
    }

    // MARK: - Error bodies

    /// Personio's v2 auth error: `application/problem+json` with `error`, `error_description`, `error_uri`,
    /// `timestamp`, `trace_id`, `meta`.
    static func oauthError(
        _ status: Int,
        _ code: String,
        _ description: String,
        headers: [(name: String, value: String)] = []
    ) -> StandInResponse {
        StandInResponse(
            status: status,
            contentType: "application/problem+json",
            json: .object([
                ("error", .string(code)), ("error_description", .string(description)),
                ("error_uri", .string(Self.errorURI)), ("timestamp", .string(Self.timestamp())),
                ("trace_id", .string(Self.randomHex(byteCount: 16))), ("meta", .object([])),
            ]),
            headers: headers
        )
    }

    /// Personio's v1 error: `{"success":false,"error":{"code":0,"message":"…"}}`.
    static func v1Error(
        _ status: Int,
        _ message: String,
        headers: [(name: String, value: String)] = []
    ) -> StandInResponse {
        StandInResponse(
            status: status,
            contentType: "application/json",
            json: .object([
                ("success", .bool(false)), ("error", .object([("code", .int(0)), ("message", .string(message))])),
            ]),
            headers: headers
        )
    }

    /// A resource endpoint's error: v2
    /// `{"personio_trace_id","timestamp","errors":[{"title","detail","type","_meta"}]}`, v1 the `success: false` shape.
    static func resourceError(status: Int, title: String, detail: String, v1: Bool) -> StandInResponse {
        if v1 { return Self.v1Error(status, "\(title): \(detail)") }
        return StandInResponse(
            status: status,
            contentType: "application/json",
            json: .object([
                ("personio_trace_id", .string(Self.randomHex(byteCount: 16))), ("timestamp", .string(Self.timestamp())),
                (
                    "errors",
                    .array([
                        .object([
                            ("title", .string(title)), ("detail", .string(detail)),
                            ("type", .string(Self.errorURI)), ("_meta", .object([])),
                        ])
                    ])
                ),
            ])
        )
    }

    static func methodNotAllowed(_ allowed: String) -> StandInResponse {
        var response = Self.resourceError(status: 405, title: "Method Not Allowed", detail: "Use \(allowed)", v1: false)
        response.headers.append(("Allow", allowed))
        return response
    }

    private static func timestamp() -> String {
        Date.now.formatted(.iso8601)
    }

    static func randomHex(byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for _ in 0..<byteCount {
            let byte = UInt8.random(in: 0...255, using: &generator)
            text += [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
        }
        return String(decoding: text, as: UTF8.self)
    }
}
