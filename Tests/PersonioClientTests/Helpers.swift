import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PersonioClient
import PersonioStandIn
import TestSupport
import VaultCrypto

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
    timeout: Duration = .seconds(10),
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

/// Sends one request to the stand-in with the shared HTTP client.
func send(
    _ method: HTTPMethod,
    _ url: String,
    headers: [(String, String)] = [],
    body: String? = nil
) async throws -> RawResponse {
    var request = HTTPClientRequest(url: url)
    request.method = method
    request.headers.add(contentsOf: headers)
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(2))
    let collected = try await response.body.collect(upTo: 1 << 20)
    return RawResponse(
        status: Int(response.status.code),
        headers: response.headers,
        body: String(buffer: collected)
    )
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
