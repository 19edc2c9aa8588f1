import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import VaultAPI
import VaultCore

@testable import VaultServer

/// The connection handler on an embedded channel: framing, limits and refusals without a socket.
@Suite("HTTP connection handling")
struct HTTPConnectionHandlerTests {
    static let limit = 64 * 1024

    /// A router whose routes answer synchronously (an embedded event loop cannot take completions from tasks).
    static func router() -> Router {
        Router([
            Route(.GET, "/v1/health", .sync { _ in try .json(HealthView(status: "ok")) }),
            // The same answer with its head built once, as the cached token route sends it.
            Route(.GET, "/v1/prepared", .sync { _ in Self.prepared }),
            Route(
                .POST,
                "/echo",
                body: .optional,
                .sync { request in
                    try .json(["bytes": request.body.count])
                }
            ),
            Route(
                .POST,
                "/v1/connections",
                body: .required,
                .sync { request in
                    let create = try request.decode(CreateConnectionRequest.self, containsSecrets: true)
                    return try .json(["id": create.id])
                }
            ),
            Route(.GET, "/v1/connections/{id}", .sync { request in try .json(["id": request.parameter("id")]) }),
        ])
    }

    static let prepared: Response = {
        do {
            return try Response.json(HealthView(status: "ok")).prepared()
        } catch {
            preconditionFailure("encoding a constant cannot fail: \(error)")
        }
    }()

    func makeChannel(
        authorize: @escaping @Sendable (Caller) -> Bool = { _ in true },
        metrics: ServerMetrics = ServerMetrics(),
        linked: Bool = true
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let dispatcher = RequestDispatcher(
            socket: "admin",
            router: Self.router(),
            authorize: authorize,
            metrics: metrics,
            logger: Logger(label: "test"),
            bodyLimit: Self.limit
        )
        let handler = HTTPConnectionHandler(
            dispatcher: dispatcher,
            caller: Caller(uid: 1000, gid: 1000, pid: 42, comm: "test"),
            logger: Logger(label: "test")
        )
        if linked {
            try HTTPServer.addHTTPHandlers(handler, to: channel.pipeline.syncOperations)
        } else {
            try HTTPServer.addHTTPHandlers(to: channel.pipeline.syncOperations)
            try channel.pipeline.syncOperations.addHandler(handler)
        }
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/x.sock")).wait()
        return channel
    }

    /// Sends `bytes` and returns everything written back.
    func exchange(_ channel: EmbeddedChannel, _ bytes: [UInt8]) throws -> String {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        var output = ""
        while let part = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = part { output += String(buffer: buffer) }
        }
        return output
    }

    func exchange(_ channel: EmbeddedChannel, _ text: String) throws -> String {
        try self.exchange(channel, Array(text.utf8))
    }

    static func post(
        _ path: String,
        _ body: String,
        contentType: String? = "application/json",
        extra: String = ""
    ) -> String {
        let type = contentType.map { "Content-Type: \($0)\r\n" } ?? ""
        return "POST \(path) HTTP/1.1\r\nHost: x\r\n\(type)Content-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
    }

    /// The status line of every response in `output` (a body is not followed by a line break).
    static func statusLines(_ output: String) -> [String] {
        output.components(separatedBy: "HTTP/1.").dropFirst().map {
            "HTTP/1." + ($0.components(separatedBy: "\r\n").first ?? "")
        }
    }

    // MARK: - Keep-alive and framing

    /// How many times `header` appears in `output`'s header lines.
    static func count(_ header: String, in output: String) -> Int {
        output.components(separatedBy: "\r\n\(header): ").count - 1
    }

    @Test(
        "keep-alive: several requests on one connection, each with Content-Length and no-store once",
        arguments: ["/v1/health", "/v1/prepared"]
    )
    func keepAlive(path: String) throws {
        let channel = try self.makeChannel()
        let request = "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n"
        var output = ""
        for _ in 0..<3 { output += try self.exchange(channel, request) }
        #expect(Self.statusLines(output) == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"])
        #expect(output.contains("Content-Length: 15\r\n"))
        #expect(Self.count("Content-Length", in: output) == 3)
        #expect(Self.count("Cache-Control", in: output) == 3)
        #expect(output.contains("Cache-Control: no-store\r\n"))
        #expect(output.contains("Content-Type: application/json\r\n"))
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test(
        "Connection: close closes after the response; HTTP/1.0 closes unless asked to keep alive",
        arguments: ["/v1/health", "/v1/prepared"]
    )
    func close(path: String) throws {
        let channel = try self.makeChannel()
        let output = try self.exchange(channel, "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 200 OK"))
        #expect(output.contains("Connection: close"))
        #expect(Self.count("Content-Length", in: output) == 1)
        #expect(!channel.isActive)

        let old = try self.makeChannel()
        let oldOutput = try self.exchange(old, "GET \(path) HTTP/1.0\r\n\r\n")
        #expect(oldOutput.hasPrefix("HTTP/1.0 200 OK"))
        #expect(oldOutput.contains("Content-Length: 15\r\n"))
        #expect(!old.isActive)

        let kept = try self.makeChannel()
        let keptOutput = try self.exchange(kept, "GET \(path) HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(keptOutput.hasPrefix("HTTP/1.0 200 OK"))
        #expect(keptOutput.contains("Connection: keep-alive"))
        #expect(Self.count("Cache-Control", in: keptOutput) == 1)
        #expect(kept.isActive)
        _ = try? kept.finish()
    }

    @Test("linked to its codec, the handler answers byte for byte as it does through the pipeline, and unlinks")
    func linkedAsThroughThePipeline() throws {
        // Pipelined, a prepared answer, a body, 100-continue, a refusal that closes: every way the handler writes.
        let stream =
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/prepared HTTP/1.1\r\nHost: x\r\n\r\n"
            + Self.post("/echo", "{}", extra: "Expect: 100-continue\r\n")
            + "GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            + "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
            + Self.post("/echo", String(repeating: "a", count: Self.limit + 1))
        let linked = try self.makeChannel()
        let unlinked = try self.makeChannel(linked: false)
        let linkedOutput = try self.exchange(linked, stream)
        let unlinkedOutput = try self.exchange(unlinked, stream)
        #expect(Self.statusLines(linkedOutput).count == 7)
        #expect(
            Self.masked(linkedOutput) == Self.masked(unlinkedOutput),
            "the request ids differ; nothing else may"
        )
        #expect(!linked.isActive && !unlinked.isActive)

        // Removing either handler ends the link: what follows goes through the pipeline.
        let channel = try self.makeChannel()
        let handler = try channel.pipeline.syncOperations.handler(type: HTTPConnectionHandler.self)
        try channel.pipeline.syncOperations.removeHandler(handler).wait()
        try channel.pipeline.syncOperations.addHandler(PartRecorder())
        try channel.writeInbound(ByteBuffer(string: "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self).map { "\($0)" }?.contains("/v1/health") == true)
        _ = try? channel.finish()
    }

    /// `output` with every request id (a problem's `request_id`, the `X-Request-Id` header) blanked.
    static func masked(_ output: String) -> String {
        output.replacingOccurrences(of: #"[0-9a-f]{16,}"#, with: "ID", options: .regularExpression)
    }

    /// Passes request parts on, so that a test reads them with `readInbound`.
    final class PartRecorder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }
    }

    @Test("a prepared response that is changed afterwards loses its prepared head, and is framed anew")
    func preparedThenChanged() throws {
        var response = Self.prepared
        #expect(response.preparedHead != nil)
        response.body = ByteBuffer(string: #"{"status":"changed"}"#)
        #expect(response.preparedHead == nil)
        #expect(response.framedHeaders["Content-Length"] == ["20"])
        var status = Self.prepared
        status.status = .accepted
        #expect(status.preparedHead == nil)
        var headers = Self.prepared
        headers.headers.add(name: "X-Extra", value: "1")
        #expect(headers.preparedHead == nil)
    }

    @Test("the peer's half-close ends the connection after the answer")
    func halfClose() throws {
        let channel = try self.makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
    }

    // MARK: - Body limit

    @Test("a body of exactly 64 KiB is read")
    func bodyAtLimit() throws {
        let channel = try self.makeChannel()
        let output = try self.exchange(channel, Self.post("/echo", String(repeating: "a", count: Self.limit)))
        #expect(output.hasPrefix("HTTP/1.1 200 OK"))
        #expect(output.hasSuffix(#"{"bytes":65536}"#))
        _ = try? channel.finish()
    }

    @Test("a Content-Length over 64 KiB is refused with 413 from the head, and the connection closes")
    func declaredTooLarge() throws {
        let channel = try self.makeChannel()
        let head =
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(Self.limit + 1)\r\n\r\n"
        let output = try self.exchange(channel, head)
        #expect(output.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(output.contains("application/problem+json"))
        #expect(output.contains(#""code":"payload_too_large""#))
        #expect(output.contains("Connection: close"))
        #expect(!channel.isActive)
    }

    @Test("a chunked body that grows past 64 KiB is refused with 413 and the connection closes")
    func chunkedTooLarge() throws {
        let channel = try self.makeChannel()
        var output = try self.exchange(
            channel,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        #expect(output.isEmpty)
        let chunk = "8000\r\n" + String(repeating: "b", count: 0x8000) + "\r\n"
        output += try self.exchange(channel, chunk + chunk)
        #expect(output.isEmpty, "64 KiB exactly is still allowed")
        output += try self.exchange(channel, "1\r\nc\r\n")
        #expect(output.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(!channel.isActive)
    }

    @Test("a chunked body within the limit is read")
    func chunkedWithinLimit() throws {
        let channel = try self.makeChannel()
        let output = try self.exchange(
            channel,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        #expect(output.hasPrefix("HTTP/1.1 200 OK"))
        #expect(output.hasSuffix(#"{"bytes":11}"#))
        _ = try? channel.finish()
    }

    @Test("Expect: 100-continue gets 100 before the final answer")
    func expectContinue() throws {
        let channel = try self.makeChannel()
        let head =
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        var output = try self.exchange(channel, head)
        #expect(output.hasPrefix("HTTP/1.1 100 Continue"))
        output += try self.exchange(channel, "{}")
        #expect(Self.statusLines(output) == ["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"])
        _ = try? channel.finish()
    }

    // MARK: - Refusals

    struct Refusal: Sendable, CustomTestStringConvertible {
        var name: String
        var request: String
        var status: String
        var code: String
        var testDescription: String { self.name }
    }

    static let refusals: [Refusal] = [
        Refusal(
            name: "unknown route",
            request: "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            status: "404 Not Found",
            code: "not_found"
        ),
        Refusal(
            name: "wrong method",
            request: "DELETE /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
            status: "405 Method Not Allowed",
            code: "method_not_allowed"
        ),
        Refusal(
            name: "invalid id",
            request: "GET /v1/connections/..%2Fetc HTTP/1.1\r\nHost: x\r\n\r\n",
            status: "400 Bad Request",
            code: "invalid_id"
        ),
        Refusal(
            name: "upper-case id",
            request: "GET /v1/connections/ACME HTTP/1.1\r\nHost: x\r\n\r\n",
            status: "400 Bad Request",
            code: "invalid_id"
        ),
        Refusal(
            name: "form body",
            request: post("/v1/connections", "id=x", contentType: "application/x-www-form-urlencoded"),
            status: "415 Unsupported Media Type",
            code: "unsupported_media_type"
        ),
        Refusal(
            name: "body without a type",
            request: post("/v1/connections", "{}", contentType: nil),
            status: "415 Unsupported Media Type",
            code: "unsupported_media_type"
        ),
        Refusal(
            name: "missing body",
            request: post("/v1/connections", ""),
            status: "400 Bad Request",
            code: "invalid_json"
        ),
        Refusal(
            name: "body on a route without one",
            request:
                "GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            status: "400 Bad Request",
            code: "bad_request"
        ),
        Refusal(
            name: "unknown field",
            request: post("/v1/connections", #"{"id":"x","colour":1}"#),
            status: "400 Bad Request",
            code: "unknown_field"
        ),
    ]

    @Test("refusals are problem+json with the right status and code, and keep the connection", arguments: refusals)
    func refusal(_ refusal: Refusal) throws {
        let channel = try self.makeChannel()
        let output = try self.exchange(channel, refusal.request)
        #expect(output.hasPrefix("HTTP/1.1 \(refusal.status)"), "\(output)")
        #expect(output.contains("Content-Type: application/problem+json"))
        #expect(output.contains(#""code":"\#(refusal.code)""#))
        #expect(channel.isActive)
        if refusal.code == "method_not_allowed" { #expect(output.contains("Allow: GET")) }
        _ = try? channel.finish()
    }

    static let garbageInputs: [[UInt8]] = [
        [0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a],
        Array("\r\n\r\n/v1/connections HTTP/1.1\r\n\r\n".utf8),
        Array("GET /v1/health HTTP/9.9\r\n\r\n".utf8),
        Array("GET /v1/health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".utf8),
        Array("GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n".utf8),
    ]

    @Test("bytes that are not HTTP get 400 and the connection closes", arguments: garbageInputs)
    func garbage(_ bytes: [UInt8]) throws {
        let channel = try self.makeChannel()
        let output = try self.exchange(channel, bytes)
        #expect(output.hasPrefix("HTTP/1.1 400 Bad Request"), "\(output)")
        #expect(output.contains("application/problem+json"))
        #expect(output.contains("Connection: close"))
        #expect(!channel.isActive)
    }

    @Test("a caller who may not use the socket gets 403 on every route, known or not")
    func forbidden() throws {
        let metrics = ServerMetrics()
        for request in [
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            "DELETE /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", Self.post("/v1/connections", #"{"id":"x"}"#),
        ] {
            let channel = try self.makeChannel(authorize: { _ in false }, metrics: metrics)
            let output = try self.exchange(channel, request)
            #expect(output.hasPrefix("HTTP/1.1 403 Forbidden"), "\(output)")
            #expect(output.contains(#""code":"forbidden""#))
            _ = try? channel.finish()
        }
        #expect(metrics.render(status: nil).contains(#"route="forbidden",status="403"} 4"#))
    }

    @Test("metrics count by route pattern, never by concrete path")
    func metricsByPattern() throws {
        let metrics = ServerMetrics()
        let channel = try self.makeChannel(metrics: metrics)
        _ = try self.exchange(
            channel,
            "GET /v1/connections/acme HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/connections/other HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        let text = metrics.render(status: nil)
        #expect(
            text.contains(
                #"connvault_http_requests_total{socket="admin",route="GET /v1/connections/{id}",status="200"} 2"#
            )
        )
        #expect(!text.contains("acme"))
        #expect(text.contains("connvault_process_uptime_seconds "))
        _ = try? channel.finish()
    }

    @Test("a connection that changes route or status between requests counts each under its own labels")
    func metricsAcrossRoutesOnOneConnection() throws {
        let metrics = ServerMetrics()
        let channel = try self.makeChannel(metrics: metrics)
        let byID = "GET /v1/connections/acme HTTP/1.1\r\nHost: x\r\n\r\n"
        let invalidID = "GET /v1/connections/-bad HTTP/1.1\r\nHost: x\r\n\r\n"
        let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        _ = try self.exchange(channel, byID + byID + invalidID + byID + health + health + invalidID)
        let text = metrics.render(status: nil)
        let prefix = #"connvault_http_requests_total{socket="admin",route="#
        #expect(text.contains(prefix + #""GET /v1/connections/{id}",status="200"} 3"#))
        #expect(text.contains(prefix + #""GET /v1/connections/{id}",status="400"} 2"#))
        #expect(text.contains(prefix + #""GET /v1/health",status="200"} 2"#))
        _ = try? channel.finish()
    }
}
