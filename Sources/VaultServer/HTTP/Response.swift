import NIOCore
import NIOHTTP1
import VaultAPI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An HTTP response before it is written. The connection handler adds `Content-Length`, `Cache-Control: no-store`
/// and `Connection` when it writes it; a response with a `body` must not set them itself.
public struct Response: Sendable {
    // A change to any part drops a prepared head, so that it never describes another response.
    public var status: HTTPResponseStatus { didSet { self.preparedHead = nil } }
    public var headers: HTTPHeaders { didSet { self.preparedHead = nil } }
    public var body: ByteBuffer? { didSet { self.preparedHead = nil } }
    /// A body written piece by piece after the head, instead of `body` (which must then be nil): sent chunked, with
    /// back-pressure (``ResponseBodyWriter``). For answers too large to hold at once: the connection list.
    public var bodyStream: ResponseBodyStream? { didSet { self.preparedHead = nil } }
    /// The complete head of a keep-alive HTTP/1.1 answer, for a response built once and sent many times (a cached
    /// token's): the connection handler writes it as it is, instead of adding its own headers to a copy of `headers`.
    /// Set by ``prepared()``; dropped when any part of the response changes afterwards.
    private(set) var preparedHead: HTTPResponseHead?

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response whose body `stream` writes after the head is sent.
    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], bodyStream stream: @escaping ResponseBodyStream)
    {
        self.status = status
        self.headers = headers
        self.bodyStream = stream
    }

    /// `headers` with the ones the connection handler owns: `Content-Length` (but on 204 and a streamed body, which
    /// NIO's encoder frames as chunked) and `Cache-Control: no-store`.
    var framedHeaders: HTTPHeaders {
        // The vault's own responses never carry these two, so they are appended without a search.
        var headers = self.headers
        if self.status != .noContent && self.bodyStream == nil {
            headers.add(name: "Content-Length", value: String(self.body?.readableBytes ?? 0))
        }
        headers.add(name: "Cache-Control", value: "no-store")
        return headers
    }

    /// This response with its head built now, to be sent many times: writing it then costs no header work and no
    /// allocation for the head.
    public func prepared() -> Response {
        var prepared = self
        prepared.preparedHead = HTTPResponseHead(version: .http1_1, status: self.status, headers: self.framedHeaders)
        return prepared
    }

    /// `value` as `application/json`.
    /// - Throws: `EncodingError` (never for the API's own types).
    public static func json<Value: Encodable>(_ value: Value, status: HTTPResponseStatus = .ok) throws -> Response {
        let data = try VaultJSON.encoder().encode(value)
        return Response(
            status: status,
            headers: ["Content-Type": "application/json"],
            body: ByteBuffer(bytes: data)
        )
    }

    /// `problem` as `application/problem+json`.
    public static func problem(_ problem: Problem, headers extra: HTTPHeaders = [:]) -> Response {
        var headers: HTTPHeaders = ["Content-Type": "application/problem+json"]
        headers.add(contentsOf: extra)
        // Encoding a struct of strings and an int cannot fail; fall back to a fixed body rather than trap.
        let data =
            (try? VaultJSON.encoder().encode(problem))
            ?? Data(#"{"code":"internal_error","status":500,"title":"Internal Server Error"}"#.utf8)
        return Response(
            status: HTTPResponseStatus(statusCode: problem.status),
            headers: headers,
            body: ByteBuffer(bytes: data)
        )
    }

    /// 204 without a body.
    public static let noContent = Response(status: .noContent)

    /// Plain text, for `/metrics` (Prometheus text exposition format 0.0.4).
    public static func prometheus(_ text: String) -> Response {
        Response(
            status: .ok,
            headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"],
            body: ByteBuffer(string: text)
        )
    }
}
