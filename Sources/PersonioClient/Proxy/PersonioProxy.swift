import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import VaultCrypto

/// Forwards a local caller's request to Personio with the connection's credential injected, and hands back the
/// answer as it streams in.
///
/// Holds no state besides its configuration. The caller picks the method, the path under the API base, the query,
/// a few headers and the body; the proxy picks everything else: the host (from the connection's base URL), the
/// credential, the identification headers. Every call has a time-out up to the response head; the HTTP client's
/// idle read time-out bounds the body. Failures to reach Personio throw ``PersonioAuthError``, sanitized so that
/// no message contains the token or key; Personio's own 4xx and 5xx are answers, returned like any other.
public final class PersonioProxy: Sendable {
    /// The default limit for a call up to the response head.
    public static let defaultTimeout: Duration = .seconds(30)
    /// The largest request body forwarded (1 MiB).
    public static let maximumRequestBodyBytes = 1024 * 1024
    /// The methods a caller may use.
    public static let allowedMethods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    /// The longest bearer token or recruiting key accepted (as the token exchange does).
    static let maximumCredentialBytes = 4096
    /// The longest company id accepted.
    static let maximumCompanyIDBytes = 64

    /// The upstream clients, one per event loop of ``eventLoopGroup``, each touched only on its loop.
    private let clients: [UpstreamClient]
    private let logger: Logger

    /// The event loops ``start(_:body:to:on:timeout:sink:onCredentialEcho:)`` may be called on.
    public let eventLoopGroup: any EventLoopGroup

    /// A proxy with connections of its own on each event loop of `group`, so that a request started on a loop runs
    /// on it from the caller's socket to Personio's and back, over connections kept alive on that loop. Close them
    /// with ``shutdown()``.
    ///
    /// The client is HTTP/1.1 on SwiftNIO, made for this one job: it never follows a redirect (the credential would
    /// go wherever it points), verifies certificates as `configuration.tls` says (by default the system's roots,
    /// chain and host name), and streams both ways with back-pressure.
    ///
    /// - Parameters:
    ///   - group: The loops the callers' connections run on (the server's).
    ///   - configuration: Time-outs, connection limits and TLS.
    ///   - logger: Where the proxy logs (method, status, error code; never a path, a header value or a credential).
    public init(
        eventLoopsOf group: any EventLoopGroup,
        configuration: UpstreamConfiguration = UpstreamConfiguration(),
        logger: Logger
    ) {
        // One TLS context for every loop, and for every proxy of the process with the same configuration: it holds
        // the trust roots, loaded once. If it cannot be made, `https` requests fail with that error and plain
        // `http` ones (the tests' stand-ins) still work.
        let sslContext: NIOSSLContext?
        switch TLSContexts.shared.context(for: configuration.tls) {
        case .success(let context):
            sslContext = context
        case .failure(let error):
            sslContext = nil
            logger.error("cannot set up TLS for the proxy", metadata: ["error": "\(error)"])
        }
        self.clients = group.makeIterator().map { eventLoop in
            UpstreamClient(eventLoop: eventLoop, configuration: configuration, sslContext: sslContext)
        }
        self.eventLoopGroup = group
        self.logger = logger
    }

    /// A proxy on the event loops of `auth`'s HTTP client, with the default ``UpstreamConfiguration``.
    ///
    /// - Parameters:
    ///   - auth: The token client whose event loops to use.
    ///   - logger: Where the proxy logs.
    public convenience init(sharing auth: PersonioAuthClient, logger: Logger) {
        self.init(eventLoopsOf: auth.eventLoopGroup, logger: logger)
    }

    /// Closes every upstream connection; requests still waiting or in flight fail.
    public func shutdown() async throws {
        for client in self.clients {
            try await client.eventLoop.submit { client.shutdown() }.get()
        }
    }

    /// The client of `eventLoop`, if it is one of the proxy's.
    func client(for eventLoop: any EventLoop) -> UpstreamClient? {
        for client in self.clients where client.eventLoop === eventLoop {
            return client
        }
        return nil
    }

    // MARK: - Checks

    /// Checks everything about `request` that depends on the caller only: method, path, query, headers, body size.
    /// ``forward(_:baseURL:authorization:appID:partnerID:timeout:)`` checks again; calling this first lets a server
    /// answer 405, 400 or 413 without touching any credential.
    ///
    /// - Parameter request: The caller's request.
    /// - Throws: ``ProxyRequestError``.
    public static func validate(_ request: ProxyRequest) throws(ProxyRequestError) {
        _ = try Self.checked(request)
    }

    /// The method, re-encoded path and forwarded headers of `request`, or why it cannot be sent.
    private static func checked(
        _ request: ProxyRequest
    ) throws(ProxyRequestError) -> (HTTPMethod, String, [(String, String)]) {
        guard (request.body?.readableBytes ?? 0) <= Self.maximumRequestBodyBytes else {
            throw ProxyRequestError(.bodyTooLarge, "the body is larger than \(Self.maximumRequestBodyBytes) bytes")
        }
        return try Self.checked(
            RequestHead(method: request.method, path: request.path, query: request.query, headers: request.headers)
        )
    }

    // MARK: - Forwarding

    /// Sends `request` with its whole body to `baseURL` + its path with `authorization` injected, and returns
    /// Personio's whole answer: ``start(_:body:to:on:timeout:sink:onCredentialEcho:)`` for tools and tests that
    /// hold their bodies in memory (the proxy route streams instead).
    ///
    /// - Parameters:
    ///   - request: The caller's request (a body of at most ``maximumRequestBodyBytes``).
    ///   - baseURL: The connection's API base (`https://api.personio.de`, or one with a path prefix).
    ///   - authorization: The credential to inject.
    ///   - appID: Value of `X-Personio-App-ID`, if configured.
    ///   - partnerID: Value of `X-Personio-Partner-ID`, if configured.
    ///   - timeout: Limit for connecting, sending and receiving the response head.
    ///   - maximumResponseBytes: The largest answer collected.
    ///   - onCredentialEcho: Called once, at the first occurrence of the injected credential found (and overwritten
    ///     with `*`) in the answer's headers or body.
    /// - Returns: Status, the headers passed back, and the body, with every occurrence of the injected credential
    ///   overwritten with `*`. Any status, 4xx and 5xx included.
    /// - Throws: ``PersonioAuthError``: `.invalidRequest` when the request fails the checks of ``validate(_:)``
    ///   or cannot be built from the configuration (base URL, identification headers, credential bytes);
    ///   `.unavailable` when Personio cannot be reached, does not answer within `timeout` or stops halfway;
    ///   `.invalidResponse` past `maximumResponseBytes`, or when the HTTP client followed a redirect. No message
    ///   contains the token or key.
    public func forward(
        _ request: ProxyRequest,
        baseURL: String,
        authorization: ProxyAuthorization,
        appID: String?,
        partnerID: String?,
        timeout: Duration = PersonioProxy.defaultTimeout,
        maximumResponseBytes: Int = 64 << 20,
        onCredentialEcho: (@Sendable () async -> Void)? = nil
    ) async throws(PersonioAuthError) -> ProxyResponse {
        var logger = self.logger
        logger[metadataKey: "http.method"] = "\(Self.allowedMethods.contains(request.method) ? request.method : "?")"
        do {
            _ = try Self.checked(request)
        } catch {
            throw PersonioAuthError(.invalidRequest, error.message)
        }
        let destination = try ProxyDestination(
            baseURL: baseURL,
            authorization: authorization,
            appID: appID,
            partnerID: partnerID
        )
        let head = RequestHead(
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers
        )
        let eventLoop = self.eventLoopGroup.next()
        let collector = ProxyResponseCollector(eventLoop: eventLoop, limit: maximumResponseBytes)
        let result: Result<ProxyResponse, any Error> = await withTaskCancellationHandler {
            let answer = eventLoop.flatSubmit { () -> EventLoopFuture<ProxyResponse> in
                // Cancelled before this ran on the loop (`onCancel` ran first): nothing is sent.
                guard !collector.isFinished else { return collector.result.futureResult }
                var body: ProxyRequestBody?
                if let content = request.body, content.readableBytes > 0 {
                    body = ProxyRequestBody(eventLoop: eventLoop, declaredLength: content.readableBytes)
                }
                do throws(PersonioAuthError) {
                    collector.exchange = try self.start(
                        head,
                        body: body,
                        to: destination,
                        on: eventLoop,
                        timeout: timeout,
                        sink: collector,
                        onCredentialEcho: onCredentialEcho
                    )
                } catch {
                    collector.proxyFailed(error)
                }
                if let body, let content = request.body {
                    body.append(content)
                    body.finish()
                }
                return collector.result.futureResult
            }
            do {
                return .success(try await answer.get())
            } catch {
                return .failure(error)
            }
        } onCancel: {
            eventLoop.execute { collector.cancel() }
        }
        switch result {
        case .success(let response):
            logger.debug("Personio answered a proxied request", metadata: ["http.status": "\(response.status)"])
            return response
        case .failure(let error):
            let failure =
                error as? PersonioAuthError
                ?? PersonioAuthClient.transportFailure(error, timeout: timeout, redactor: destination.redactor)
            logger.debug("Proxied request failed", error: failure, metadata: failure.logMetadata)
            throw failure
        }
    }

    /// The credential's header lines (`Authorization`, and `X-Company-Id` for a recruiting key), as they go on the
    /// wire, after checking that its bytes can go in a header at all: an access token's in ordinary memory (it is
    /// handed to callers anyway), a recruiting key's in `sodium_malloc` memory, written there straight from the key's
    /// own, so that the long-lived secret is never copied into a `String` or a buffer that is not zeroed when freed.
    static func credentialLines(
        _ authorization: ProxyAuthorization
    ) throws(PersonioAuthError) -> (plain: String, secret: SecretBytes?) {
        switch authorization {
        case .bearer(let token):
            guard Self.isUsableCredential(token.utf8) else {
                throw PersonioAuthError(.invalidRequest, "the access token is empty, too long or not visible ASCII")
            }
            return ("Authorization: Bearer " + token + "\r\n", nil)
        case .recruiting(let key, let companyID):
            guard key.withUnsafeBytes({ Self.isUsableCredential($0) }) else {
                throw PersonioAuthError(.invalidRequest, "the recruiting key is empty, too long or not visible ASCII")
            }
            guard (1...Self.maximumCompanyIDBytes).contains(companyID.utf8.count),
                companyID.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
            else {
                throw PersonioAuthError(.invalidRequest, "the company id is empty, too long or not visible ASCII")
            }
            let prefix = Array("Authorization: Bearer ".utf8)
            let suffix = Array("\r\nX-Company-Id: \(companyID)\r\n".utf8)
            let lines = SecretBytes(zeroedCount: prefix.count + key.count + suffix.count)
            lines.withUnsafeMutableBytes { target in
                key.withUnsafeBytes { source in
                    target.copyBytes(from: prefix)
                    UnsafeMutableRawBufferPointer(rebasing: target[prefix.count...]).copyMemory(from: source)
                    UnsafeMutableRawBufferPointer(rebasing: target[(prefix.count + source.count)...])
                        .copyBytes(from: suffix)
                }
            }
            return ("", lines)
        }
    }

    /// Visible ASCII without spaces, 1 to ``maximumCredentialBytes`` bytes: what Personio issues, and safe in a
    /// header.
    private static func isUsableCredential(_ bytes: some Collection<UInt8>) -> Bool {
        (1...Self.maximumCredentialBytes).contains(bytes.count) && bytes.allSatisfy { (0x21...0x7E).contains($0) }
    }
}
