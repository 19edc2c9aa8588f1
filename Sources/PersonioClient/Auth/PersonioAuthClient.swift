import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import VaultCrypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Exchanges Personio client credentials for access tokens (v1 and v2) and revokes v2 tokens.
///
/// Holds no state besides its configuration: no cache, no storage. Every call has a time-out, reads at most
/// ``maximumResponseBytes`` of the answer and throws only ``PersonioAuthError``. Secrets go from `SecretBytes`
/// into the request body byte by byte, in memory that is zeroed when the call is over; neither they nor tokens are
/// ever logged.
public final class PersonioAuthClient: Sendable {
    /// The default limit for a whole call: connect, send, receive.
    public static let defaultTimeout: Duration = .seconds(10)
    /// The connect time-out of the HTTP client this type creates, and the one that
    /// ``httpClientConfiguration(connectTimeout:readTimeout:)`` recommends.
    public static let defaultConnectTimeout: Duration = .seconds(5)
    /// The longest silence, once a request is sent, before the HTTP client gives up on the connection (the idle read
    /// time-out of ``httpClientConfiguration(connectTimeout:readTimeout:)``). Token calls end sooner by their own
    /// time-out; it bounds a proxied response body that stops arriving halfway.
    public static let defaultReadTimeout: Duration = .seconds(30)
    /// The largest response body read; a bigger one fails with `.invalidResponse`, so that a hostile upstream cannot
    /// exhaust memory.
    public static let maximumResponseBytes = 64 * 1024

    /// Also used by a ``PersonioProxy`` created with ``PersonioProxy/init(sharing:logger:)``.
    let httpClient: HTTPClient
    private let ownsHTTPClient: Bool
    private let logger: Logger
    private let timeout: Duration

    /// A client that sends its requests through `httpClient`, which the caller owns and shuts down.
    ///
    /// `httpClient` must not follow redirects: a 307 would replay the credentials to wherever it points. Create it
    /// with ``httpClientConfiguration(connectTimeout:readTimeout:)``. A redirect that was followed all the same is
    /// reported as `.invalidResponse`.
    ///
    /// - Parameters:
    ///   - httpClient: The HTTP client to use (TLS certificate verification on, as by default).
    ///   - logger: Where this client logs (metadata `personio.api`, `http.status`; never a secret or a token).
    ///   - timeout: Limit for each whole call.
    public init(httpClient: HTTPClient, logger: Logger, timeout: Duration = PersonioAuthClient.defaultTimeout) {
        self.httpClient = httpClient
        self.ownsHTTPClient = false
        self.logger = logger
        self.timeout = timeout
    }

    /// A client with its own HTTP client on the shared singleton event loop group, configured by
    /// ``httpClientConfiguration(connectTimeout:readTimeout:)``; call ``shutdown()`` when done.
    ///
    /// - Parameters:
    ///   - logger: Where this client logs.
    ///   - timeout: Limit for each whole call.
    ///   - connectTimeout: Limit for establishing a connection.
    public init(
        logger: Logger,
        timeout: Duration = PersonioAuthClient.defaultTimeout,
        connectTimeout: Duration = PersonioAuthClient.defaultConnectTimeout
    ) {
        self.httpClient = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: Self.httpClientConfiguration(connectTimeout: connectTimeout)
        )
        self.ownsHTTPClient = true
        self.logger = logger
        self.timeout = timeout
    }

    /// The configuration an HTTP client used for Personio should have: default TLS (certificates verified), the
    /// given connect and idle read time-outs, no redirects (they would carry the credentials elsewhere), no
    /// decompression (proxied bodies pass through as sent), and no retry loop on a refused connection (the caller
    /// backs off instead, within its own time budget).
    ///
    /// - Parameters:
    ///   - connectTimeout: Limit for establishing a connection.
    ///   - readTimeout: Limit for a silence while waiting for (more of) an answer.
    /// - Returns: A configuration for `HTTPClient(eventLoopGroupProvider:configuration:)`.
    public static func httpClientConfiguration(
        connectTimeout: Duration = PersonioAuthClient.defaultConnectTimeout,
        readTimeout: Duration = PersonioAuthClient.defaultReadTimeout
    ) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(
                connect: TimeAmount(connectTimeout),
                read: TimeAmount(readTimeout)
            ),
            decompression: .disabled
        )
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    /// The event loops the HTTP client runs on.
    public var eventLoopGroup: any EventLoopGroup { self.httpClient.eventLoopGroup }

    /// Shuts down the HTTP client if this instance created it; does nothing for a caller-owned one.
    ///
    /// - Throws: What `HTTPClient.shutdown()` throws.
    public func shutdown() async throws {
        if self.ownsHTTPClient {
            try await self.httpClient.shutdown()
        }
    }

    // MARK: - Token exchange

    /// Asks Personio for an access token.
    ///
    /// v2: `POST {base}/v2/auth/token`, form body
    /// `grant_type=client_credentials&client_id=…&client_secret=…[&scope=…]`.
    /// v1: `POST {base}/v1/auth`, JSON body `{"client_id":…,"client_secret":…}` (never the query string).
    ///
    /// - Parameter credentials: Which API, which client, where, and the optional headers and scope.
    /// - Returns: The token, its lifetime (v1: ``IssuedToken/defaultLifetimeSeconds``) and granted scope.
    /// - Throws: ``PersonioAuthError``: `.credentialsRejected`, `.unavailable` (with `retryAfter` when Personio said),
    ///   `.invalidRequest` or `.invalidResponse`.
    public func exchange(_ credentials: PersonioCredentials) async throws(PersonioAuthError) -> IssuedToken {
        var logger = self.logger
        logger[metadataKey: "personio.api"] = "\(credentials.api)"
        let redactor = Redactor(secrets: [credentials.clientID, credentials.clientSecret])
        do {
            return try await self.requestToken(credentials, redactor: redactor, logger: logger)
        } catch {
            logger.debug("Personio token request failed", error: error, metadata: error.logMetadata)
            throw error
        }
    }

    private func requestToken(
        _ credentials: PersonioCredentials,
        redactor: Redactor,
        logger: Logger
    ) async throws(PersonioAuthError) -> IssuedToken {
        let baseURL = try Self.validatedBaseURL(credentials.baseURL)
        let headers = try Self.identificationHeaders(appID: credentials.appID, partnerID: credentials.partnerID)
        try Self.validate(credentials)

        let body: ByteBuffer
        let url: String
        let contentType: String
        switch credentials.api {
        case .v2:
            var credentials = credentials
            credentials.scope = credentials.scope.flatMap { $0.allSatisfy(\.isWhitespace) ? nil : $0 }
            body = RequestBody.v2Token(credentials)
            url = baseURL + "/v2/auth/token"
            contentType = "application/x-www-form-urlencoded"
        case .v1:
            body = RequestBody.v1Auth(credentials)
            url = baseURL + "/v1/auth"
            contentType = "application/json"
        }

        let issuedAt = ContinuousClock.now
        let issuedAtEpochSeconds = Date().timeIntervalSince1970
        logger.trace("Requesting a Personio access token")
        let response = try await self.post(
            url: url,
            contentType: contentType,
            headers: headers,
            body: body,
            redactor: redactor
        )

        let token: IssuedToken
        switch credentials.api {
        case .v2:
            token = try ResponseInterpreter.v2Token(
                response,
                issuedAt: issuedAt,
                issuedAtEpochSeconds: issuedAtEpochSeconds,
                redactor: redactor
            )
        case .v1:
            token = try ResponseInterpreter.v1Token(
                response,
                issuedAt: issuedAt,
                issuedAtEpochSeconds: issuedAtEpochSeconds,
                redactor: redactor
            )
        }
        var metadata: Logger.Metadata = [
            "http.status": "\(response.status)", "personio.expires_in": "\(token.expiresIn)",
        ]
        if let scope = token.scope { metadata["personio.scope"] = "\(scope)" }
        logger.debug("Personio issued an access token", metadata: metadata)
        return token
    }

    // MARK: - Revocation

    /// Revokes `token` at Personio (v2); a no-op for v1, which has no revocation.
    ///
    /// - Parameters:
    ///   - token: The access token to revoke.
    ///   - credentials: The credentials it was issued for (only the API, base URL and headers are used).
    /// - Throws: ``PersonioAuthError``, mapped as for ``exchange(_:)``.
    public func revoke(token: String, credentials: PersonioCredentials) async throws(PersonioAuthError) {
        try await self.revoke(
            token: token,
            api: credentials.api,
            baseURL: credentials.baseURL,
            appID: credentials.appID,
            partnerID: credentials.partnerID
        )
    }

    /// Revokes `token` at Personio: v2 `POST {base}/v2/auth/revoke` with the form body `token=…`; v1 has no
    /// revocation, so this returns at once.
    ///
    /// - Parameters:
    ///   - token: The access token to revoke.
    ///   - api: Which API issued it.
    ///   - baseURL: Where Personio's API lives.
    ///   - appID: Value of `X-Personio-App-ID`, if any.
    ///   - partnerID: Value of `X-Personio-Partner-ID`, if any.
    /// - Throws: ``PersonioAuthError``, mapped as for ``exchange(_:)``.
    public func revoke(
        token: String,
        api: PersonioAPI,
        baseURL: String,
        appID: String? = nil,
        partnerID: String? = nil
    ) async throws(PersonioAuthError) {
        var logger = self.logger
        logger[metadataKey: "personio.api"] = "\(api)"
        guard api == .v2 else {
            logger.trace("Personio v1 has no token revocation; nothing to do")
            return
        }
        let redactor = Array(token.utf8).withUnsafeBytes { Redactor(secrets: [SecretBytes(copying: $0)]) }
        do throws(PersonioAuthError) {
            let baseURL = try Self.validatedBaseURL(baseURL)
            let headers = try Self.identificationHeaders(appID: appID, partnerID: partnerID)
            guard !token.isEmpty, token.utf8.count <= ResponseInterpreter.maximumTokenLength else {
                throw PersonioAuthError(.invalidRequest, "the token to revoke is empty or too long")
            }
            let body = RequestBody.v2Revoke(token: token)
            logger.trace("Revoking a Personio access token")
            let response = try await self.post(
                url: baseURL + "/v2/auth/revoke",
                contentType: "application/x-www-form-urlencoded",
                headers: headers,
                body: body,
                redactor: redactor
            )
            guard (200..<300).contains(response.status) else {
                throw ResponseInterpreter.v2Failure(response, redactor: redactor)
            }
            logger.debug("Personio revoked an access token", metadata: ["http.status": "\(response.status)"])
        } catch {
            logger.debug("Personio token revocation failed", error: error, metadata: error.logMetadata)
            throw error
        }
    }

    // MARK: - HTTP

    /// Sends one POST and reads the whole answer within the time-out. Returns a plain value that holds no reference
    /// to the request, whose secret-bearing body would otherwise stay alive (and unzeroed) for as long as the caller
    /// holds the answer.
    ///
    /// The time-out is decided on the HTTP client's event loop (``AnswerCollector``, the future-based `execute`),
    /// not by a `Task` that needs a free thread of the cooperative pool: the `async` `execute(_:deadline:)` hands its
    /// deadline to such a task, and while the pool was busy elsewhere, an answer that came seconds after the deadline
    /// was taken as a success. Cancelling the calling task cancels the request.
    ///
    /// Each call asks for its connection to be closed after the answer (`Connection: close`), so that no connection
    /// of these calls goes back to AsyncHTTPClient's pool. That pool (1.37.0) has a race: when a complete answer
    /// arrives before the client has written its request's end, the connection is marked idle and handed back to
    /// the pool only once that write completes; closed in between (the server closing a kept-alive connection right
    /// after answering), it is removed first and then handed back, and the pool stops the process on a precondition
    /// ("A connection that we don't know was released?"). A test run hit it twice. Token calls are rare (one per
    /// token lifetime, verify, revocation), so a connection per call costs nothing that matters.
    private func post(
        url: String,
        contentType: String,
        headers: [(String, String)],
        body: ByteBuffer,
        redactor: Redactor
    ) async throws(PersonioAuthError) -> UpstreamResponse {
        let deadline = NIODeadline.now() + TimeAmount(self.timeout)
        do {
            var requestHeaders = HTTPHeaders()
            requestHeaders.add(name: "Content-Type", value: contentType)
            requestHeaders.add(name: "Accept", value: "application/json")
            requestHeaders.add(name: "Connection", value: "close")
            requestHeaders.add(contentsOf: headers)
            let request = try HTTPClient.Request(
                url: url,
                method: .POST,
                headers: requestHeaders,
                body: .byteBuffer(body)
            )
            let collector = AnswerCollector(limit: Self.maximumResponseBytes, deadline: deadline)
            // AsyncHTTPClient gets no logger: what it logs is not ours to vouch for.
            let task = self.httpClient.execute(request: request, delegate: collector, deadline: deadline)
            let response = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
            if collector.visitedURLs > 1 {
                throw PersonioAuthError(
                    .invalidResponse,
                    "Personio's answer was a redirect that the HTTP client followed; configure it not to",
                    httpStatus: response.status
                )
            }
            return response
        } catch let error as PersonioAuthError {
            throw error
        } catch is AnswerCollector.TooLarge {
            throw PersonioAuthError(.invalidResponse, "Personio's answer exceeded \(Self.maximumResponseBytes) bytes")
        } catch {
            throw Self.transportFailure(error, timeout: self.timeout, redactor: redactor)
        }
    }

    /// Maps a failure to reach Personio or to hear back in time.
    static func transportFailure(_ error: any Error, timeout: Duration, redactor: Redactor) -> PersonioAuthError {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return PersonioAuthError(.unavailable, "Personio did not answer within \(timeout)")
            case .connectTimeout, .tlsHandshakeTimeout:
                return PersonioAuthError(.unavailable, "connecting to Personio timed out")
            case .remoteConnectionClosed:
                return PersonioAuthError(.unavailable, "Personio closed the connection without an answer")
            case .cancelled:
                return PersonioAuthError(.unavailable, "the request to Personio was cancelled")
            case .invalidURL, .emptyHost, .emptyScheme:
                return PersonioAuthError(.invalidRequest, "the base URL is not a valid http(s) URL")
            default:
                break
            }
        }
        if error is CancellationError {
            return PersonioAuthError(.unavailable, "the request to Personio was cancelled")
        }
        let detail = redactor.sanitize("\(type(of: error)): \(error)", limit: 150)
        return PersonioAuthError(.unavailable, "could not reach Personio: \(detail)")
    }
}

/// What came back from Personio, fully read.
struct UpstreamResponse: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
}

extension PersonioAuthError {
    /// Dotted-key metadata for a log line about this error (all values already sanitized).
    var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = ["error.code": "\(self.code)"]
        if let status = self.httpStatus { metadata["http.status"] = "\(status)" }
        if let personioError = self.personioError { metadata["personio.error"] = "\(personioError)" }
        if let retryAfter = self.retryAfter { metadata["personio.retry_after_s"] = "\(retryAfter.components.seconds)" }
        return metadata
    }
}
