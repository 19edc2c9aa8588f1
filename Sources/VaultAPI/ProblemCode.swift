/// Stable snake_case codes carried in every problem+json body. Clients switch on these, never on text.
public struct ProblemCode: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { self.rawValue }

    // MARK: - Request shape
    public static let badRequest = ProblemCode(rawValue: "bad_request")
    public static let invalidJSON = ProblemCode(rawValue: "invalid_json")
    public static let unknownField = ProblemCode(rawValue: "unknown_field")
    public static let invalidID = ProblemCode(rawValue: "invalid_id")
    public static let invalidProvider = ProblemCode(rawValue: "invalid_provider")
    public static let invalidSetting = ProblemCode(rawValue: "invalid_setting")
    public static let missingSecret = ProblemCode(rawValue: "missing_secret")
    public static let invalidSecret = ProblemCode(rawValue: "invalid_secret")
    /// An edit that changes where the secrets go (`api_base_url`) without giving them again.
    public static let secretsRequired = ProblemCode(rawValue: "secrets_required")
    public static let invalidGrant = ProblemCode(rawValue: "invalid_grant")
    public static let payloadTooLarge = ProblemCode(rawValue: "payload_too_large")
    public static let notFound = ProblemCode(rawValue: "not_found")
    public static let methodNotAllowed = ProblemCode(rawValue: "method_not_allowed")
    public static let unsupportedMediaType = ProblemCode(rawValue: "unsupported_media_type")

    // MARK: - Authorization
    public static let forbidden = ProblemCode(rawValue: "forbidden")
    /// A granted caller asked for something its rule does not allow (403): a proxied request outside its rule's
    /// `proxy` patterns.
    public static let notAllowed = ProblemCode(rawValue: "not_allowed")
    /// A caller past its share (429, with `Retry-After`): on the proxy route, too many of its requests in flight.
    public static let rateLimited = ProblemCode(rawValue: "rate_limited")

    // MARK: - State
    public static let alreadyExists = ProblemCode(rawValue: "already_exists")
    public static let connectionDisabled = ProblemCode(rawValue: "connection_disabled")
    public static let connectionNeedsReset = ProblemCode(rawValue: "connection_needs_reset")
    public static let tokenNotExportable = ProblemCode(rawValue: "token_not_exportable")
    public static let keyFileReadOnly = ProblemCode(rawValue: "key_file_read_only")

    // MARK: - Upstream
    public static let upstreamRejected = ProblemCode(rawValue: "upstream_rejected")
    public static let upstreamUnavailable = ProblemCode(rawValue: "upstream_unavailable")
    /// Personio failed (5xx) while answering a proxied request; distinct from a rejection of the credentials.
    public static let upstreamError = ProblemCode(rawValue: "upstream_error")

    // MARK: - Vault
    public static let decryptionFailed = ProblemCode(rawValue: "decryption_failed")
    public static let storageFailed = ProblemCode(rawValue: "storage_failed")
    public static let internalError = ProblemCode(rawValue: "internal_error")
}

/// An `application/problem+json` body (RFC 9457) with the vault's stable `code`.
public struct Problem: Codable, Sendable, Equatable, Error {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    public var code: ProblemCode

    public init(status: Int, code: ProblemCode, title: String, detail: String) {
        self.type = "https://connvault.invalid/problems/\(code.rawValue)"
        self.title = title
        self.status = status
        self.detail = detail
        self.code = code
    }
}

extension Problem: CustomStringConvertible {
    public var description: String { "\(self.title): \(self.detail) (\(self.code), HTTP \(self.status))" }
}
