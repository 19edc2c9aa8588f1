import VaultAPI

/// An error from the vault. `code` is the stable problem code the sockets answer with; the HTTP status is decided
/// at one boundary (VaultServer). Messages never contain a secret or a bound SQL value.
public struct VaultError: Error, Sendable, CustomStringConvertible, Equatable {
    public var code: Code
    public var message: String
    /// The underlying error's text, for logs only; free of credentials by construction.
    public var cause: String?
    /// Seconds after which a retry may succeed (`Retry-After` on 503 `upstream_unavailable` and 429 `rate_limited`).
    public var retryAfter: Int?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.cause = cause.map { String(describing: $0) }
        self.retryAfter = retryAfter
    }

    public var description: String {
        if let cause = self.cause { return "\(self.message) (\(self.code); cause: \(cause))" }
        return "\(self.message) (\(self.code))"
    }

    /// Equal by code, as the house style asks.
    public static func == (lhs: VaultError, rhs: VaultError) -> Bool { lhs.code == rhs.code }

    static func notFound(_ id: String) -> VaultError { VaultError(.notFound, "no connection '\(id)'") }
}

extension VaultError {
    /// Why an operation failed: a closed set, so that the one switch at the HTTP boundary that gives each its status
    /// is exhaustive (a new case does not compile until it has one) and the CLI's exit codes can be checked the same
    /// way. On the wire each is the `ProblemCode` of the same raw value; clients keep the open type, so that a newer
    /// daemon's code still decodes.
    public enum Code: String, Sendable, CaseIterable, CustomStringConvertible {
        case badRequest = "bad_request"
        case invalidJSON = "invalid_json"
        case unknownField = "unknown_field"
        case invalidID = "invalid_id"
        case invalidProvider = "invalid_provider"
        case invalidSetting = "invalid_setting"
        case missingSecret = "missing_secret"
        case invalidSecret = "invalid_secret"
        case secretsRequired = "secrets_required"
        case invalidGrant = "invalid_grant"
        case payloadTooLarge = "payload_too_large"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case unsupportedMediaType = "unsupported_media_type"
        case forbidden = "forbidden"
        case notAllowed = "not_allowed"
        case rateLimited = "rate_limited"
        case alreadyExists = "already_exists"
        case connectionDisabled = "connection_disabled"
        case connectionNeedsReset = "connection_needs_reset"
        case tokenNotExportable = "token_not_exportable"
        case keyFileReadOnly = "key_file_read_only"
        case upstreamRejected = "upstream_rejected"
        case upstreamUnavailable = "upstream_unavailable"
        case upstreamError = "upstream_error"
        case decryptionFailed = "decryption_failed"
        case storageFailed = "storage_failed"
        case internalError = "internal_error"

        public var description: String { self.rawValue }

        /// The wire code with the same raw value.
        public var problemCode: ProblemCode { ProblemCode(rawValue: self.rawValue) }
    }
}
