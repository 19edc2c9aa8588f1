import VaultAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What both CLI clients share: where to connect, the time-out, and the mapping of responses to values or
/// `DaemonError`s.
struct DaemonTransport {
    let connection: DaemonConnection

    var socketPath: String { self.connection.socketPath }

    init(socketPath: String, kind: SocketKind, timeout: Duration) {
        self.connection = DaemonConnection(socketPath: socketPath, kind: kind, timeout: timeout)
    }

    // MARK: - Calls

    /// Sends a request without a body (or with a non-secret JSON body) and decodes a 2xx answer as `Response`.
    func call<Response: Decodable>(
        _ endpoint: Endpoint,
        _ target: String,
        json body: [UInt8]? = nil,
        as type: Response.Type = Response.self
    ) throws -> Response {
        let response: ClientResponse
        if let body {
            response = try body.withUnsafeBytes { try self.send(endpoint, target, body: $0) }
        } else {
            response = try self.send(endpoint, target, body: nil)
        }
        return try self.decode(Response.self, from: response)
    }

    /// Sends a body holding secrets and zeroes it afterwards, whatever happened.
    func callWithSecrets<Response: Decodable>(
        _ endpoint: Endpoint,
        _ target: String,
        body: consuming [UInt8],
        as type: Response.Type = Response.self
    ) throws -> Response {
        var body = body
        defer { SecretMemory.zero(&body) }
        let response = try body.withUnsafeBytes { try self.send(endpoint, target, body: $0) }
        return try self.decode(Response.self, from: response)
    }

    /// Sends a request whose success has no content (204).
    func callWithoutContent(_ endpoint: Endpoint, _ target: String) throws {
        _ = try self.send(endpoint, target, body: nil)
    }

    /// Sends and returns a 2xx response; every other status becomes a thrown error.
    func send(_ endpoint: Endpoint, _ target: String, body: UnsafeRawBufferPointer?) throws -> ClientResponse {
        let headers = body == nil ? [] : [HeaderField("Content-Type", "application/json")]
        let response = try self.connection.perform(
            method: endpoint.method.rawValue,
            target: target,
            headers: headers,
            body: body
        )
        guard response.isSuccess else { throw self.error(for: response) }
        return response
    }

    // MARK: - Decoding

    func decode<Response: Decodable>(_ type: Response.Type, from response: ClientResponse) throws -> Response {
        do {
            return try VaultJSON.decoder().decode(Response.self, from: Data(response.body))
        } catch {
            throw DaemonError(
                .invalidResponse,
                "\(self.socketPath) answered HTTP \(response.status) with a body that is not the expected "
                    + "\(Response.self) JSON",
                socketPath: self.socketPath
            )
        }
    }

    /// A problem+json answer becomes `.problem`; anything else that is not 2xx is `.invalidResponse`.
    func error(for response: ClientResponse) -> DaemonError {
        if let problem = try? VaultJSON.decoder().decode(Problem.self, from: Data(response.body)) {
            return .problem(problem, socketPath: self.socketPath)
        }
        let reason = response.reason.isEmpty ? "" : " \(response.reason)"
        return DaemonError(
            .invalidResponse,
            "\(self.socketPath) answered HTTP \(response.status)\(reason) without a problem+json body; "
                + "is it connvaultd's \(self.connection.kind.rawValue) socket?",
            socketPath: self.socketPath
        )
    }

    /// Runs an encoder of ``SecretRequestBody``, its failure as `.invalidRequest`.
    static func encoded(_ encode: () throws -> [UInt8]) throws -> [UInt8] {
        do {
            return try encode()
        } catch let error as SecretRequestBody.EncodingError {
            throw DaemonError(.invalidRequest, error.message)
        }
    }
}
