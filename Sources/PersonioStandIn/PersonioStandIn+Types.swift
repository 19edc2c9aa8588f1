extension PersonioStandIn {
    /// The routes the stand-in serves, for counting and recorded requests.
    public enum Endpoint: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// `POST /v2/auth/token`.
        case v2Token
        /// `POST /v1/auth`.
        case v1Auth
        /// `POST /v2/auth/revoke`.
        case v2Revoke
        /// `/v2/persons…`, `/v2/webhooks…`, `GET /v1/company/employees`, `GET /v1/recruiting/applications`.
        case resource
        /// Anything else (answered 404 or 405).
        case unknown

        /// The three authentication endpoints, where failures apply by default.
        public static let auth: Set<Endpoint> = [.v2Token, .v1Auth, .v2Revoke]

        public var description: String { self.rawValue }
    }

    /// Which authentication API a registered client may use.
    public enum API: Sendable, Hashable {
        case v1
        case v2
        case both

        func allows(_ endpoint: Endpoint) -> Bool {
            switch (self, endpoint) {
            case (.both, _), (.v1, .v1Auth), (.v2, .v2Token): true
            default: false
            }
        }
    }

    /// What a failure-injected call gets instead of the normal answer.
    public enum Failure: Sendable, Hashable {
        /// The normal answer (clears an injected failure).
        case none
        /// That status with an error body in the endpoint's shape (`server_error` for 5xx, `invalid_request` else).
        case status(Int)
        /// 429, with `Retry-After: <seconds>` when given.
        case tooManyRequests(retryAfter: Int?)
        /// No answer at all, the connection held open until the client gives up or the stand-in shuts down.
        case hang
        /// 200 with a truncated JSON body.
        case malformedJSON
        /// 200 with a valid-looking JSON body of this many bytes (to exercise clients' body size limits).
        case oversizedBody(bytes: Int)
        /// The connection closed without an answer.
        case closeConnection
        /// The endpoint's "wrong credentials" answer, quoting the submitted client id and secret in the description,
        /// as a careless upstream might (to exercise clients' redaction).
        case rejectEchoingCredentials
    }

    /// The v2 `error` code for wrong credentials; Personio has been seen answering each of these.
    public enum RejectionCode: String, Sendable, Hashable, CaseIterable {
        case invalidClient = "invalid_client"
        case unauthorizedClient = "unauthorized_client"
        case invalidGrant = "invalid_grant"
    }

    /// The shape of a request body as the stand-in understood it.
    public enum BodyKind: String, Sendable, Hashable {
        case none, form, json, other
    }

    /// One request the stand-in received.
    ///
    /// It records the fake test credentials like any other field, so that tests can check where they travelled;
    /// the stand-in is for tests and benchmarks only.
    public struct RecordedRequest: Sendable {
        public var endpoint: Endpoint
        public var method: String
        /// The path without the query.
        public var path: String
        /// The raw query string, if any.
        public var query: String?
        /// The query's fields, percent-decoded.
        public var queryFields: [String: String]
        /// Every header in arrival order, names as sent.
        public var headers: [(name: String, value: String)]
        public var bodyKind: BodyKind
        /// The body's fields, for form and JSON (string values) bodies.
        public var bodyFields: [String: String]
        public var bodyByteCount: Int

        /// The first value of the header `name`, compared case-insensitively.
        public func header(_ name: String) -> String? {
            let lowercased = name.lowercased()
            return self.headers.first { $0.name.lowercased() == lowercased }?.value
        }
    }
}
