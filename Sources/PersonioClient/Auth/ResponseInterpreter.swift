import NIOCore
import NIOHTTP1

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Turns Personio's answers into tokens or ``PersonioAuthError``s. Pure functions of the response, tested through
/// the stand-in.
enum ResponseInterpreter {
    /// Longest access token accepted.
    static let maximumTokenLength = 4096
    /// Longest `Retry-After` honoured, in seconds; a larger value is clamped.
    static let maximumRetryAfterSeconds = 3600

    /// v2 `error` codes that mean "these credentials do not work".
    static let rejectedCredentialCodes: Set<String> = ["invalid_client", "unauthorized_client", "invalid_grant"]
    /// v2 `error` codes that mean "try again later".
    static let unavailableCodes: Set<String> = ["temporarily_unavailable", "server_error"]

    // MARK: - v2

    private struct V2TokenBody: Decodable {
        var accessToken: String
        var tokenType: String?
        var expiresIn: Int?
        var scope: String?

        enum CodingKeys: String, CodingKey {
            case accessToken = "access_token"
            case tokenType = "token_type"
            case expiresIn = "expires_in"
            case scope
        }
    }

    /// Personio's OAuth error body, or its resource error shape; every field optional and decoded leniently, since
    /// this is read only to explain a failure.
    private struct V2ErrorBody: Decodable {
        var error: String?
        var errorDescription: String?
        var detail: String?

        enum CodingKeys: String, CodingKey {
            case error
            case errorDescription = "error_description"
            case errors
        }

        private struct ResourceError: Decodable {
            var title: String?
            var detail: String?
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.error = try? container.decodeIfPresent(String.self, forKey: .error)
            self.errorDescription = try? container.decodeIfPresent(String.self, forKey: .errorDescription)
            let first = (try? container.decodeIfPresent([ResourceError].self, forKey: .errors))?.first
            self.detail = first.flatMap { $0.detail ?? $0.title }
        }
    }

    static func v2Token(
        _ response: UpstreamResponse,
        issuedAt: ContinuousClock.Instant,
        issuedAtEpochSeconds: Double,
        redactor: Redactor
    ) throws(PersonioAuthError) -> IssuedToken {
        guard response.status == 200 else { throw Self.v2Failure(response, redactor: redactor) }
        guard let body = try? JSONDecoder().decode(V2TokenBody.self, from: Data(response.body.readableBytesView)) else {
            throw PersonioAuthError(
                .invalidResponse,
                "Personio's token response is not the expected JSON",
                httpStatus: 200
            )
        }
        try Self.checkToken(body.accessToken)
        if let tokenType = body.tokenType, tokenType.lowercased() != "bearer" {
            throw PersonioAuthError(
                .invalidResponse,
                "Personio issued a token of type '\(redactor.sanitize(tokenType, limit: 32))', not Bearer",
                httpStatus: 200
            )
        }
        let expiresIn = body.expiresIn ?? IssuedToken.defaultLifetimeSeconds
        guard expiresIn > 0 else {
            throw PersonioAuthError(
                .invalidResponse,
                "Personio issued a token that has already expired",
                httpStatus: 200
            )
        }
        return IssuedToken(
            accessToken: body.accessToken,
            tokenType: "Bearer",
            expiresIn: expiresIn,
            scope: body.scope.map { redactor.sanitize($0, limit: 2048) },
            issuedAt: issuedAt,
            issuedAtEpochSeconds: issuedAtEpochSeconds
        )
    }

    /// The error for a v2 answer other than success (token or revocation endpoint).
    static func v2Failure(_ response: UpstreamResponse, redactor: Redactor) -> PersonioAuthError {
        let body = try? JSONDecoder().decode(V2ErrorBody.self, from: Data(response.body.readableBytesView))
        let personioError = body?.error.map { redactor.sanitizeCode($0) }.flatMap { $0.isEmpty ? nil : $0 }
        let explanation = (body?.errorDescription ?? body?.detail).map { ": " + redactor.sanitize($0) } ?? ""
        let status = response.status
        let retryAfter = Self.retryAfter(response.headers)

        func error(_ code: PersonioAuthError.Code, _ summary: String) -> PersonioAuthError {
            PersonioAuthError(
                code,
                summary + explanation,
                httpStatus: status,
                personioError: personioError,
                retryAfter: retryAfter
            )
        }

        switch status {
        case 429:
            return error(.unavailable, "Personio's rate limit was reached")
        case 500...599:
            return error(.unavailable, "Personio answered HTTP \(status)")
        case 400...499:
            if let personioError, Self.rejectedCredentialCodes.contains(personioError) {
                return error(.credentialsRejected, "Personio rejected the client credentials")
            }
            if let personioError, Self.unavailableCodes.contains(personioError) {
                return error(.unavailable, "Personio is temporarily unavailable")
            }
            if status == 408 {
                return error(.unavailable, "Personio timed out waiting for the request")
            }
            return error(.invalidRequest, "Personio refused the request")
        case 300...399:
            return error(.invalidResponse, "Personio answered with a redirect, which is not followed")
        default:
            return error(.invalidResponse, "Personio answered with unexpected HTTP status \(status)")
        }
    }

    // MARK: - v1

    private struct V1Body: Decodable {
        var success: Bool?
        var token: String?
        var message: String?

        enum CodingKeys: String, CodingKey {
            case success, data, error
        }

        private struct Payload: Decodable {
            var token: String?
        }

        private struct Failure: Decodable {
            var message: String?
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.success = try container.decodeIfPresent(Bool.self, forKey: .success)
            self.token = (try? container.decodeIfPresent(Payload.self, forKey: .data))?.token
            self.message = (try? container.decodeIfPresent(Failure.self, forKey: .error))?.message
        }
    }

    static func v1Token(
        _ response: UpstreamResponse,
        issuedAt: ContinuousClock.Instant,
        issuedAtEpochSeconds: Double,
        redactor: Redactor
    ) throws(PersonioAuthError) -> IssuedToken {
        let body = try? JSONDecoder().decode(V1Body.self, from: Data(response.body.readableBytesView))
        let explanation = body?.message.map { ": " + redactor.sanitize($0) } ?? ""
        let status = response.status

        func error(_ code: PersonioAuthError.Code, _ summary: String) -> PersonioAuthError {
            PersonioAuthError(
                code,
                summary + explanation,
                httpStatus: status,
                retryAfter: Self.retryAfter(response.headers)
            )
        }

        switch status {
        case 200:
            guard let body, let success = body.success else {
                throw PersonioAuthError(
                    .invalidResponse,
                    "Personio's auth response is not the expected JSON",
                    httpStatus: 200
                )
            }
            guard success else { throw error(.credentialsRejected, "Personio rejected the client credentials") }
            guard let token = body.token else {
                throw PersonioAuthError(.invalidResponse, "Personio's auth response has no token", httpStatus: 200)
            }
            try Self.checkToken(token)
            return IssuedToken(
                accessToken: token,
                tokenType: "Bearer",
                expiresIn: IssuedToken.defaultLifetimeSeconds,
                scope: nil,
                issuedAt: issuedAt,
                issuedAtEpochSeconds: issuedAtEpochSeconds
            )
        case 401:
            throw error(.credentialsRejected, "Personio rejected the client credentials")
        case 429:
            throw error(.unavailable, "Personio's rate limit was reached")
        case 500...599:
            throw error(.unavailable, "Personio answered HTTP \(status)")
        case 408:
            throw error(.unavailable, "Personio timed out waiting for the request")
        case 400...499:
            throw error(.invalidRequest, "Personio refused the request")
        case 300...399:
            throw error(.invalidResponse, "Personio answered with a redirect, which is not followed")
        default:
            throw error(.invalidResponse, "Personio answered with unexpected HTTP status \(status)")
        }
    }

    // MARK: - Shared

    /// A token goes into `Authorization` headers later: it must be visible ASCII without spaces, and bounded.
    private static func checkToken(_ token: String) throws(PersonioAuthError) {
        guard !token.isEmpty, token.utf8.count <= Self.maximumTokenLength,
            token.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else {
            throw PersonioAuthError(
                .invalidResponse,
                "Personio issued a token that is empty, too long or not visible ASCII",
                httpStatus: 200
            )
        }
    }

    /// `Retry-After` in delay-seconds, clamped to ``maximumRetryAfterSeconds``; the HTTP-date form is ignored.
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "Retry-After"),
            let seconds = Int(value.filter { $0 != " " && $0 != "\t" }), seconds >= 0
        else { return nil }
        return .seconds(min(seconds, Self.maximumRetryAfterSeconds))
    }
}
