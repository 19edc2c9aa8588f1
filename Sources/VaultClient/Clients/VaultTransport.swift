import VaultAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What both clients share: where to connect, the time-out, an optional kept-alive connection, and the mapping of
/// responses to values or `VaultClientError`s.
struct VaultTransport: Sendable {
    let socketPath: String
    let kind: SocketKind
    let timeout: Duration
    /// A caller-owned keep-alive connection; nil opens one per request.
    let connection: Connection?
    /// Set by the `async` wrappers so cancelling the task ends the blocking call.
    var cancellation: CancellationFlag?

    init(socketPath: String, kind: SocketKind, timeout: Duration, connection: Connection?) {
        self.socketPath = socketPath
        self.kind = kind
        self.timeout = timeout
        self.connection = connection
        self.cancellation = nil
    }

    // MARK: - Calls

    /// Sends a request without a body (or with a non-secret JSON body) and decodes a 2xx answer as `Response`.
    func call<Response: Decodable>(
        _ method: String,
        _ target: String,
        json body: [UInt8]? = nil,
        as type: Response.Type = Response.self
    ) throws -> Response {
        let response: ClientResponse
        if let body {
            response = try body.withUnsafeBytes { try self.send(method, target, body: $0) }
        } else {
            response = try self.send(method, target, body: nil)
        }
        return try self.decode(Response.self, from: response)
    }

    /// Sends a body holding secrets and zeroes it afterwards, whatever happened.
    func callWithSecrets<Response: Decodable>(
        _ method: String,
        _ target: String,
        body: consuming [UInt8],
        as type: Response.Type = Response.self
    ) throws -> Response {
        var body = body
        defer { zeroize(&body) }
        let response = try body.withUnsafeBytes { try self.send(method, target, body: $0) }
        return try self.decode(Response.self, from: response)
    }

    /// Sends a request whose success has no content (204).
    func callWithoutContent(_ method: String, _ target: String) throws {
        _ = try self.send(method, target, body: nil)
    }

    /// Sends and returns a 2xx response; every other status becomes a thrown error.
    func send(_ method: String, _ target: String, body: UnsafeRawBufferPointer?) throws -> ClientResponse {
        let connection: Connection
        if let shared = self.connection {
            connection = shared
        } else {
            connection = try Connection(
                socketPath: self.socketPath,
                kind: self.kind,
                timeout: self.timeout,
                closesAfterEachRequest: true
            )
        }
        defer { if self.connection == nil { connection.close() } }
        let headers = body == nil ? [] : [HeaderField("Content-Type", "application/json")]
        let response = try connection.perform(
            method: method,
            target: target,
            headers: headers,
            body: body,
            cancellation: self.cancellation
        )
        guard response.isSuccess else { throw self.error(for: response) }
        return response
    }

    // MARK: - Decoding

    func decode<Response: Decodable>(_ type: Response.Type, from response: ClientResponse) throws -> Response {
        do {
            return try VaultJSON.decoder().decode(Response.self, from: Data(response.body))
        } catch {
            throw VaultClientError(
                .invalidResponse,
                "\(self.socketPath) answered HTTP \(response.status) with a body that is not the expected "
                    + "\(Response.self) JSON",
                socketPath: self.socketPath
            )
        }
    }

    /// A problem+json answer becomes `.problem`; anything else that is not 2xx is `.invalidResponse`.
    func error(for response: ClientResponse) -> VaultClientError {
        if let problem = try? VaultJSON.decoder().decode(Problem.self, from: Data(response.body)) {
            return .problem(problem, socketPath: self.socketPath)
        }
        let reason = response.reason.isEmpty ? "" : " \(response.reason)"
        return VaultClientError(
            .invalidResponse,
            "\(self.socketPath) answered HTTP \(response.status)\(reason) without a problem+json body; "
                + "is it connvaultd's \(self.kind.rawValue) socket?",
            socketPath: self.socketPath
        )
    }
}
