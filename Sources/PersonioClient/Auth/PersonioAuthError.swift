/// Why a token exchange or revocation with Personio failed.
///
/// `message` and `personioError` are sanitized: printable ASCII only, bounded in length, with every occurrence (or
/// long fragment) of the client id, client secret or token replaced by `[redacted]`, even when Personio echoed
/// them. Response bodies are never embedded beyond Personio's own error description.
public struct PersonioAuthError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong, stable for callers to switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case credentialsRejected, unavailable, invalidRequest, invalidResponse
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Personio refused the client id and secret: v2 `invalid_client`, `unauthorized_client` or `invalid_grant`;
        /// v1 401 or `"success": false`. Retrying with the same credentials will not help.
        public static let credentialsRejected = Code(.credentialsRejected)
        /// Personio could not be reached or asked to come back later: 429, 5xx, `temporarily_unavailable`, refused
        /// connection, TLS failure, time-out. `retryAfter` says when, if Personio did.
        public static let unavailable = Code(.unavailable)
        /// Personio refused the request itself (`invalid_scope`, `invalid_request`, other 4xx), or the request could
        /// not be built from the configuration (bad base URL, header value or credential bytes).
        public static let invalidRequest = Code(.invalidRequest)
        /// Personio answered something this client cannot use: an unparseable or oversized body, a token that is not
        /// a bearer token, an unexpected status or a redirect.
        public static let invalidResponse = Code(.invalidResponse)

        public var description: String {
            switch self.value {
            case .credentialsRejected: "credentials_rejected"
            case .unavailable: "unavailable"
            case .invalidRequest: "invalid_request"
            case .invalidResponse: "invalid_response"
            }
        }
    }

    /// Longest `message`, in characters.
    public static let maximumMessageLength = 200

    public var code: Code
    /// A sanitized, human-readable explanation (printable ASCII, at most ``maximumMessageLength`` characters).
    public var message: String
    /// The HTTP status Personio answered with, when it answered.
    public var httpStatus: Int?
    /// Personio's `error` code (`invalid_client`, `invalid_scope` …), sanitized, when it sent one.
    public var personioError: String?
    /// How long Personio asked to wait (`Retry-After`, in seconds), for `.unavailable`.
    public var retryAfter: Duration?

    /// Builds an error; `message` and `personioError` are sanitized here as well, without knowing the secrets.
    /// Code that holds the secrets sanitizes against them before calling this.
    ///
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - message: Explanation; reduced to printable ASCII and ``maximumMessageLength`` characters.
    ///   - httpStatus: Personio's status, if it answered.
    ///   - personioError: Personio's `error` code, if any.
    ///   - retryAfter: Personio's `Retry-After`, if any.
    public init(
        _ code: Code,
        _ message: String,
        httpStatus: Int? = nil,
        personioError: String? = nil,
        retryAfter: Duration? = nil
    ) {
        self.code = code
        self.message = Redactor.none.sanitize(message)
        self.httpStatus = httpStatus
        self.personioError = personioError.map { Redactor.none.sanitizeCode($0) }
        self.retryAfter = retryAfter
    }

    public var description: String {
        var details: [String] = []
        if let status = self.httpStatus { details.append("HTTP \(status)") }
        if let personioError = self.personioError { details.append(personioError) }
        if let retryAfter = self.retryAfter { details.append("retry after \(retryAfter.components.seconds) s") }
        let suffix = details.isEmpty ? "" : " (\(details.joined(separator: ", ")))"
        return "\(self.code): \(self.message)\(suffix)"
    }

    /// Equal by code, as the house style asks.
    public static func == (lhs: PersonioAuthError, rhs: PersonioAuthError) -> Bool { lhs.code == rhs.code }
}
