import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
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

    /// The HTTP clients, each with the event loop its connections live on (nil: a client on a group of loops).
    private let clients: [(eventLoop: (any EventLoop)?, client: HTTPClient)]
    /// Whether ``shutdown()`` closes the clients (the proxy made them).
    private let ownsClients: Bool
    private let logger: Logger

    /// The event loops ``start(_:body:to:on:timeout:sink:onCredentialEcho:)`` may be called on.
    public let eventLoopGroup: any EventLoopGroup

    /// A proxy that sends its requests through `httpClient`, which the caller owns and shuts down.
    ///
    /// `httpClient` must verify TLS certificates and must not follow redirects (a redirect would replay the
    /// credential to wherever it points): create it with
    /// ``PersonioAuthClient/httpClientConfiguration(connectTimeout:readTimeout:)``. A redirect that was followed all
    /// the same is reported as `.invalidResponse`. Its connections may live on any loop of its group, so an answer
    /// may cross between loops on its way to the caller: the daemon uses ``init(eventLoopsOf:configuration:logger:)``.
    ///
    /// - Parameters:
    ///   - httpClient: The HTTP client to use.
    ///   - logger: Where the proxy logs (method, status, error code; never a path, a header value or a credential).
    public init(httpClient: HTTPClient, logger: Logger) {
        self.clients = [(nil, httpClient)]
        self.ownsClients = false
        self.eventLoopGroup = httpClient.eventLoopGroup
        self.logger = logger
    }

    /// A proxy with an HTTP client of its own on each event loop of `group`, so that a request started on a loop
    /// runs on it from the caller's socket to Personio's and back, over connections kept alive on that loop. (One
    /// client for all loops cannot do both: asked to stay on the caller's loop, AsyncHTTPClient opens a connection
    /// for that one request and closes it afterwards.) Close them with ``shutdown()``.
    ///
    /// - Parameters:
    ///   - group: The loops the callers' connections run on (the server's).
    ///   - configuration: The clients' configuration: certificates verified, no redirects (see
    ///     ``PersonioAuthClient/httpClientConfiguration(connectTimeout:readTimeout:)``).
    ///   - logger: Where the proxy logs.
    public init(eventLoopsOf group: any EventLoopGroup, configuration: HTTPClient.Configuration, logger: Logger) {
        // No tracing span per request: the daemon bootstraps no tracer, and AsyncHTTPClient's span (a no-op one)
        // still cost ~6 % of a proxied request's instructions (its name, its attributes, a dynamic cast).
        var configuration = configuration
        configuration.tracing.tracer = nil
        self.clients = group.makeIterator().map { eventLoop in
            (eventLoop, HTTPClient(eventLoopGroupProvider: .shared(eventLoop), configuration: configuration))
        }
        self.ownsClients = true
        self.eventLoopGroup = group
        self.logger = logger
    }

    /// A proxy that shares `auth`'s HTTP client (and so its connection pool and configuration). `auth` must stay
    /// alive, not shut down, while the proxy is in use.
    ///
    /// - Parameters:
    ///   - auth: The token client whose HTTP client to use.
    ///   - logger: Where the proxy logs.
    public convenience init(sharing auth: PersonioAuthClient, logger: Logger) {
        self.init(httpClient: auth.httpClient, logger: logger)
    }

    /// Closes the HTTP clients the proxy made (none when it was given one).
    public func shutdown() async throws {
        guard self.ownsClients else { return }
        for (_, client) in self.clients { try await client.shutdown() }
    }

    /// The client for a request started on `eventLoop`, and how to ask it to stay there.
    func client(for eventLoop: any EventLoop) -> (HTTPClient, HTTPClient.EventLoopPreference)? {
        for (loop, client) in self.clients {
            if let loop {
                // A client whose only loop is this one: its connections are already here.
                if loop === eventLoop { return (client, .delegate(on: eventLoop)) }
            } else if client.eventLoopGroup.makeIterator().contains(where: { $0 === eventLoop }) {
                // The connection may be on another loop; the callbacks come here.
                return (client, .delegate(on: eventLoop))
            }
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
            eventLoop.execute { collector.exchange?.cancel() }
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

    /// Adds the credential's headers, after checking that its bytes can go in a header at all (a control character
    /// would be refused by the HTTP client with an error that quotes the value).
    static func addAuthorization(
        _ authorization: ProxyAuthorization,
        to headers: inout HTTPHeaders
    ) throws(PersonioAuthError) {
        switch authorization {
        case .bearer(let token):
            guard Self.isUsableCredential(token.utf8) else {
                throw PersonioAuthError(.invalidRequest, "the access token is empty, too long or not visible ASCII")
            }
            headers.add(name: "Authorization", value: "Bearer " + token)
        case .recruiting(let key, let companyID):
            guard key.withUnsafeBytes({ Self.isUsableCredential($0) }) else {
                throw PersonioAuthError(.invalidRequest, "the recruiting key is empty, too long or not visible ASCII")
            }
            guard (1...Self.maximumCompanyIDBytes).contains(companyID.utf8.count),
                companyID.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
            else {
                throw PersonioAuthError(.invalidRequest, "the company id is empty, too long or not visible ASCII")
            }
            // `HTTPHeaders` holds `String`s, so the key has to become one: it is written straight from the locked
            // memory into the header value, the only copy this code makes. That string (and the HTTP client's
            // encoding of the request head) is ordinary heap memory that is not zeroed when freed; it lives as long
            // as this request and its response, and nowhere else.
            let value = key.withUnsafeBytes { bytes in
                String(unsafeUninitializedCapacity: 7 + bytes.count) { buffer in
                    let prefix = "Bearer ".utf8
                    let end = buffer.initialize(fromContentsOf: prefix)
                    _ = buffer[end...].initialize(fromContentsOf: bytes)
                    return prefix.count + bytes.count
                }
            }
            headers.add(name: "Authorization", value: value)
            headers.add(name: "X-Company-Id", value: companyID)
        }
    }

    /// Visible ASCII without spaces, 1 to ``maximumCredentialBytes`` bytes: what Personio issues, and safe in a
    /// header.
    private static func isUsableCredential(_ bytes: some Collection<UInt8>) -> Bool {
        (1...Self.maximumCredentialBytes).contains(bytes.count) && bytes.allSatisfy { (0x21...0x7E).contains($0) }
    }
}
