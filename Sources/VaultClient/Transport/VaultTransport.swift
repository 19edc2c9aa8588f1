import AsyncHTTPClient
import CVaultShims
import NIOCore
import NIOHTTP1
import VaultAPI
import ZeroedBuffers

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What both clients share: where to connect, the time-out, the HTTP client, and the mapping of responses to values
/// or `VaultClientError`s.
///
/// Every request goes out on a connection of its own and asks the server to close it after answering
/// (`Connection: close`), as the client always did: no idle connection holds one of the daemon's per-uid connection
/// slots, and none can be closed by a restarting daemon just as a request is put on it.
struct VaultTransport: Sendable {
    let socketPath: String
    let kind: SocketKind
    let timeout: Duration
    let httpClient: HTTPClient

    /// The most a response body may hold; the daemon's largest answers (audit pages) are far smaller.
    static let maximumBodyBytes = 32 * 1024 * 1024

    // MARK: - Calls

    /// Sends a request without a body (or with a non-secret JSON body) and decodes a 2xx answer as `Response`.
    func call<Response: Decodable>(
        _ endpoint: Endpoint,
        _ target: String,
        json body: [UInt8]? = nil,
        as type: Response.Type = Response.self
    ) async throws -> Response {
        let response = try await self.send(endpoint, target, body: body.map { ByteBuffer(bytes: $0) })
        return try self.decode(Response.self, from: response)
    }

    /// Sends a body holding secrets. The bytes are copied once, into a buffer from ``ZeroingAllocator`` (zeroed when
    /// the HTTP client lets go of it, whenever that is), and `body` is zeroed before this returns.
    func callWithSecrets<Response: Decodable>(
        _ endpoint: Endpoint,
        _ target: String,
        body: consuming [UInt8],
        as type: Response.Type = Response.self
    ) async throws -> Response {
        var body = body
        var buffer = ZeroingAllocator.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        zeroize(&body)
        let response = try await self.send(endpoint, target, body: buffer)
        return try self.decode(Response.self, from: response)
    }

    /// Sends a request whose success has no content (204).
    func callWithoutContent(_ endpoint: Endpoint, _ target: String) async throws {
        _ = try await self.send(endpoint, target, body: nil)
    }

    /// Sends and returns a 2xx response; every other status becomes a thrown error.
    func send(_ endpoint: Endpoint, _ target: String, body: ByteBuffer?) async throws -> Answer {
        try SocketPath.validate(self.socketPath, kind: self.kind)
        guard let url = URL(httpURLWithSocketPath: self.socketPath, uri: target) else {
            throw VaultClientError(
                .invalidRequest,
                "cannot make a request URL for \(self.socketPath)",
                socketPath: self.socketPath
            )
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: endpoint.method.rawValue)
        request.headers.add(name: "Host", value: "localhost")
        request.headers.add(name: "User-Agent", value: "connvault-client")
        request.headers.add(name: "Accept", value: "application/json, application/problem+json")
        request.headers.add(name: "Connection", value: "close")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        } else if endpoint.method == .POST || endpoint.method == .PUT || endpoint.method == .PATCH {
            // `Content-Length: 0`, as a body-less POST always carried.
            request.body = .bytes(ByteBuffer())
        }
        let answer: Answer
        do {
            let response = try await self.httpClient.execute(request, deadline: .now() + self.timeout.timeAmount)
            let bytes = try await response.body.collect(upTo: Self.maximumBodyBytes)
            answer = Answer(status: Int(response.status.code), reason: response.status.reasonPhrase, body: bytes)
        } catch {
            throw self.transportError(error)
        }
        guard (200..<300).contains(answer.status) else { throw self.error(for: answer) }
        return answer
    }

    /// A complete answer: status and body.
    struct Answer: Sendable {
        var status: Int
        var reason: String
        var body: ByteBuffer
    }

    // MARK: - Errors

    /// What a failure of the HTTP client means to a caller, in the client's own codes.
    func transportError(_ error: any Error) -> any Error {
        if Task.isCancelled { return CancellationError() }
        switch error {
        case let error as VaultClientError:
            return error
        case is CancellationError:
            return error
        case let error as HTTPClientError
        where error == .deadlineExceeded || error == .connectTimeout || error == .readTimeout:
            return VaultClientError(
                .timedOut,
                "no answer from \(self.socketPath) within \(Self.describe(self.timeout))",
                socketPath: self.socketPath
            )
        case let error as HTTPClientError where error == .cancelled:
            return CancellationError()
        case let error as HTTPClientError where error == .remoteConnectionClosed:
            return VaultClientError(
                .invalidResponse,
                "\(self.socketPath) closed the connection without answering",
                socketPath: self.socketPath
            )
        case let error as IOError:
            return Self.cannotConnect(self.socketPath, kind: self.kind, errno: error.errnoCode)
        case is NIOTooManyBytesError:
            return VaultClientError(
                .invalidResponse,
                "bad answer from \(self.socketPath): the body is larger than \(Self.maximumBodyBytes) bytes",
                socketPath: self.socketPath
            )
        default:
            return VaultClientError(
                .invalidResponse,
                "bad answer from \(self.socketPath): \(error)",
                socketPath: self.socketPath
            )
        }
    }

    static func cannotConnect(_ path: String, kind: SocketKind, errno error: Int32) -> VaultClientError {
        VaultClientError(
            .cannotConnect,
            kind.cannotConnectMessage(path, errno: error),
            socketPath: path,
            osError: error
        )
    }

    /// The time-out for messages: `30 s`, `250 ms`.
    static func describe(_ timeout: Duration) -> String { timeout.timeoutText }

    // MARK: - Decoding

    func decode<Response: Decodable>(_ type: Response.Type, from answer: Answer) throws -> Response {
        do {
            return try VaultJSON.decoder().decode(Response.self, from: Data(answer.body.readableBytesView))
        } catch {
            throw VaultClientError(
                .invalidResponse,
                "\(self.socketPath) answered HTTP \(answer.status) with a body that is not the expected "
                    + "\(Response.self) JSON",
                socketPath: self.socketPath
            )
        }
    }

    /// A problem+json answer becomes `.problem`; anything else that is not 2xx is `.invalidResponse`.
    func error(for answer: Answer) -> VaultClientError {
        if let problem = try? VaultJSON.decoder().decode(Problem.self, from: Data(answer.body.readableBytesView)) {
            return .problem(problem, socketPath: self.socketPath)
        }
        let reason = answer.reason.isEmpty ? "" : " \(answer.reason)"
        return VaultClientError(
            .invalidResponse,
            "\(self.socketPath) answered HTTP \(answer.status)\(reason) without a problem+json body; "
                + "is it connvaultd's \(self.kind.rawValue) socket?",
            socketPath: self.socketPath
        )
    }
}

extension Duration {
    /// The same span for NIO, to the nanosecond.
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = self.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Overwrites `bytes` with zeros (only this buffer, not copies the kernel or allocator made).
func zeroize(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        cv_zero(base, buffer.count)
    }
}

extension VaultTransport {
    /// Runs `body` with a transport whose HTTP client lives on `eventLoopGroup` and is shut down when `body` returns
    /// or throws: the one implementation of both clients' `withClient`.
    static func with<Result>(
        kind: SocketKind,
        socketPath: String?,
        timeout: Duration,
        environment: [String: String]?,
        eventLoopGroup: any EventLoopGroup,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (VaultTransport) async throws -> Result
    ) async throws -> Result {
        let path = SocketPath.resolve(socketPath, kind: kind, environment: environment)
        return try await HTTPClient.withHTTPClient(
            eventLoopGroup: eventLoopGroup,
            configuration: VaultHTTPClients.configuration(kind: kind, socketPath: path),
            isolation: isolation
        ) { httpClient in
            try await body(VaultTransport(socketPath: path, kind: kind, timeout: timeout, httpClient: httpClient))
        }
    }
}
