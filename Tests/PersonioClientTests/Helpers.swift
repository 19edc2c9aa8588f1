import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PersonioStandIn
import TestSupport
import VaultCrypto

@testable import PersonioClient

/// Obviously fake credentials; nothing here resembles a real Personio secret.
enum Fake {
    static let clientID = "fake-client-id-1"
    static let clientSecret = "fake-secret-1"
    static let appID = "CONNVAULT_TEST_APP"
    static let partnerID = "FAKE_PARTNER"
}

/// A `SecretBytes` holding `text` (fake test values only).
func secret(_ text: String) -> SecretBytes {
    Array(text.utf8).withUnsafeBytes { SecretBytes(copying: $0) }
}

/// A running stand-in with `Fake.clientID` registered, a client talking to it, and everything the client logged.
struct AuthFixture {
    let standIn: PersonioStandIn
    let client: PersonioAuthClient
    let logs: LogCapture

    /// Credentials for the stand-in; the fake client by default.
    func credentials(
        _ api: PersonioAPI = .v2,
        clientID: String = Fake.clientID,
        clientSecret: String = Fake.clientSecret,
        appID: String? = nil,
        partnerID: String? = nil,
        scope: String? = nil
    ) -> PersonioCredentials {
        PersonioCredentials(
            api: api,
            clientID: secret(clientID),
            clientSecret: secret(clientSecret),
            baseURL: self.standIn.baseURL,
            appID: appID,
            partnerID: partnerID,
            scope: scope
        )
    }

    /// The error `exchange` throws, or `nil` when it succeeds.
    func exchangeError(_ credentials: PersonioCredentials) async -> PersonioAuthError? {
        do {
            _ = try await self.client.exchange(credentials)
            return nil
        } catch {
            return error
        }
    }
}

/// Runs `body` with a fresh stand-in and client (per-call time-out `timeout`), and shuts both down afterwards.
func withFixture<Result>(
    timeout: Duration = TimeScale.scaled(.seconds(30)),
    _ body: (AuthFixture) async throws -> Result
) async throws -> Result {
    try await PersonioStandIn.withStandIn { standIn in
        standIn.register(clientID: Fake.clientID, clientSecret: Fake.clientSecret)
        let logs = LogCapture()
        let client = PersonioAuthClient(logger: logs.logger(label: "personio-auth-test"), timeout: timeout)
        do {
            let result = try await body(AuthFixture(standIn: standIn, client: client, logs: logs))
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

// MARK: - Raw HTTP, for requests PersonioAuthClient would never send

/// A response read whole.
struct RawResponse: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: String

    /// The body as a JSON object, if it is one.
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any]
    }
}

/// Sends one request to the stand-in, on an HTTP client of its own that is shut down afterwards.
///
/// Not `HTTPClient.shared` and its `async` `execute(_:timeout:)`: that client's pool is shared with every test of
/// the process (idle connections kept 10 minutes, connections retried for 90 s), and that deadline takes effect
/// only once a `Task` gets a thread of the cooperative pool, so in a whole test run a request without an answer
/// after its 2 s failed 50 s later (`deadlineExceeded`). Here the deadline is decided on the event loop, like the
/// vault's own client, and is far above an answer's milliseconds on a loaded machine; a request that truly hangs
/// still ends.
func send(
    _ method: HTTPMethod,
    _ url: String,
    headers: [(String, String)] = [],
    body: String? = nil
) async throws -> RawResponse {
    let timeout = TimeScale.scaled(.seconds(30))
    let client = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: PersonioAuthClient.httpClientConfiguration(connectTimeout: timeout, readTimeout: timeout)
    )
    do {
        var requestHeaders = HTTPHeaders()
        requestHeaders.add(contentsOf: headers)
        let request = try HTTPClient.Request(
            url: url,
            method: method,
            headers: requestHeaders,
            body: body.map { .string($0) }
        )
        let response = try await client.execute(request: request, deadline: .now() + TimeAmount(timeout)).get()
        try await client.shutdown()
        return RawResponse(
            status: Int(response.status.code),
            headers: response.headers,
            body: response.body.map { String(buffer: $0) } ?? ""
        )
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// A form-encoded v2 token request body for `clientID` and `clientSecret` (values must not need escaping).
func formBody(
    clientID: String = Fake.clientID,
    clientSecret: String = Fake.clientSecret,
    grantType: String = "client_credentials"
) -> String {
    "grant_type=\(grantType)&client_id=\(clientID)&client_secret=\(clientSecret)"
}

let formContentType = ("Content-Type", "application/x-www-form-urlencoded")
let jsonContentType = ("Content-Type", "application/json")

extension PersonioProxy {
    /// ``returnedResponseHeaders(_:redactor:scrubber:)`` for headers a test writes as `HTTPHeaders`, chunked when
    /// they hold `Transfer-Encoding`.
    static func returnedResponseHeaders(
        _ headers: HTTPHeaders,
        redactor: Redactor,
        scrubber: CredentialScrubber = .none
    ) -> (headers: [(String, String)], echoed: Bool) {
        Self.returnedResponseHeaders(
            UpstreamResponseParser.Head(
                status: 200,
                headers: Array(headers),
                keepAlive: true,
                chunked: headers.contains(name: "Transfer-Encoding")
            ),
            redactor: redactor,
            scrubber: scrubber
        )
    }
}
