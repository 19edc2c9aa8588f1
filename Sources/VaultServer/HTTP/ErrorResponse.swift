import Logging
import NIOHTTP1
import VaultAPI
import VaultCore

/// An error the HTTP layer itself raises (no route, wrong method, body too large, bad query), with the problem code
/// to answer and any headers that go with it (`Allow` on 405).
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    public var code: VaultError.Code
    public var message: String
    public var headers: HTTPHeaders

    public init(_ code: VaultError.Code, _ message: String, headers: HTTPHeaders = [:]) {
        self.code = code
        self.message = message
        self.headers = headers
    }

    public var description: String { "\(self.message) (\(self.code))" }
}

/// The one place where errors become HTTP responses (house style §6): every route and the connection handler throw,
/// and only this type decides the status and the problem body.
public enum ErrorResponse {
    /// The HTTP status for a problem code: the one place that decides it, exhaustive (no `default:`), so a new code
    /// does not compile until it has a status.
    public static func status(for code: VaultError.Code) -> HTTPResponseStatus {
        switch code {
        case .badRequest, .invalidJSON, .unknownField, .invalidID, .invalidProvider, .invalidSetting, .missingSecret,
            .invalidSecret, .invalidGrant, .secretsRequired:
            .badRequest
        case .forbidden, .notAllowed: .forbidden
        case .rateLimited: .tooManyRequests
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .alreadyExists, .connectionDisabled, .connectionNeedsReset, .tokenNotExportable, .keyFileReadOnly:
            .conflict
        case .payloadTooLarge: .payloadTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .upstreamRejected, .upstreamError: .badGateway
        case .upstreamUnavailable: .serviceUnavailable
        case .decryptionFailed, .storageFailed, .internalError: .internalServerError
        }
    }

    /// The problem body for a failure the domain reports as a value rather than throws (a verify's outcome).
    public static func problem(_ code: VaultError.Code, title: String, detail: String) -> Problem {
        Problem(status: Int(Self.status(for: code).code), code: code.problemCode, title: title, detail: detail)
    }

    /// The seconds a client is told to wait after a 503 when the vault gave no figure.
    static let defaultRetryAfter = 5

    /// The response for `error`, raised while handling request `requestID`.
    ///
    /// Errors of the vault and of this layer carry messages that are free of secrets by construction and are passed
    /// on. Anything else is a bug: it is logged (its text names no credential either) and answered with a generic
    /// 500 that names the request, so that an admin can find the log line.
    public static func response(for error: any Error, requestID: String, logger: Logger) -> Response {
        let (code, detail, headers) = Self.classify(error, requestID: requestID)
        let status = Self.status(for: code)
        var extra = headers
        if status == .serviceUnavailable && extra["Retry-After"].isEmpty {
            extra.add(name: "Retry-After", value: String(Self.defaultRetryAfter))
        }
        if status.code >= 500 {
            logger.error(
                "request failed",
                metadata: ["error": "\(error)", "problem.code": "\(code)", "http.status": "\(status.code)"]
            )
        }
        let problem = Problem(
            status: Int(status.code),
            code: code.problemCode,
            title: Self.title(for: code, status: status),
            detail: detail
        )
        return .problem(problem, headers: extra)
    }

    static func classify(_ error: any Error, requestID: String) -> (VaultError.Code, String, HTTPHeaders) {
        switch error {
        case let error as VaultError:
            var headers: HTTPHeaders = [:]
            if let retryAfter = error.retryAfter { headers.add(name: "Retry-After", value: String(max(0, retryAfter))) }
            return (error.code, error.message, headers)
        case let error as HTTPError:
            return (error.code, error.message, error.headers)
        case let error as RequestDecodingError:
            let (code, message) = DecodingProblem.describe(error)
            return (code, message, [:])
        default:
            return (.internalError, "the daemon failed to handle the request (request \(requestID); see its log)", [:])
        }
    }

    /// A short, fixed summary per code (RFC 9457 `title`): what kind of problem, never which occurrence.
    static func title(for code: VaultError.Code, status: HTTPResponseStatus) -> String {
        switch code {
        case .invalidJSON: "Invalid JSON"
        case .unknownField: "Unknown field"
        case .invalidID: "Invalid connection id"
        case .invalidProvider: "Invalid provider"
        case .invalidSetting: "Invalid setting"
        case .missingSecret: "Missing secret"
        case .invalidSecret: "Invalid secret"
        case .secretsRequired: "Secrets required"
        case .invalidGrant: "Invalid grant"
        case .alreadyExists: "Connection already exists"
        case .connectionDisabled: "Connection disabled"
        case .connectionNeedsReset: "Connection needs reset"
        case .tokenNotExportable: "Token not exportable"
        case .rateLimited: "Rate limited"
        case .notAllowed: "Not allowed by the grant rule"
        case .keyFileReadOnly: "Key file read-only"
        case .upstreamRejected: "Upstream rejected the credentials"
        case .upstreamUnavailable: "Upstream unavailable"
        case .badRequest, .payloadTooLarge, .notFound, .methodNotAllowed, .unsupportedMediaType, .forbidden,
            .upstreamError, .decryptionFailed, .storageFailed, .internalError:
            status.reasonPhrase
        }
    }
}
