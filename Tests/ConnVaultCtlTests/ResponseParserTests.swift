import Testing

@testable import connvaultctl

@Suite struct ResponseParserTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var raw: String
        var method = "GET"
        var status: Int
        var body: String
        var keepAlive: Bool
        /// Whether the response only ends when the server closes.
        var needsClose = false
        var testDescription: String { self.name }
    }

    static let wellFormed: [Case] = [
        Case(
            name: "content-length",
            raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            status: 200,
            body: "hello",
            keepAlive: true
        ),
        Case(
            name: "content-length zero",
            raw: "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            status: 201,
            body: "",
            keepAlive: true
        ),
        Case(
            name: "repeated equal content-length",
            raw: "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi",
            status: 200,
            body: "hi",
            keepAlive: true
        ),
        Case(
            name: "connection close",
            raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
            status: 200,
            body: "hi",
            keepAlive: false
        ),
        Case(
            name: "HTTP/1.0 defaults to close",
            raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            status: 200,
            body: "hi",
            keepAlive: false
        ),
        Case(
            name: "chunked",
            raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            status: 200,
            body: "hello world",
            keepAlive: true
        ),
        Case(
            name: "chunked with extensions and trailers",
            raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "A;name=x\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
            status: 200,
            body: "0123456789",
            keepAlive: true
        ),
        Case(
            name: "chunked overrides content-length",
            raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            status: 200,
            body: "ok",
            keepAlive: false
        ),
        Case(
            name: "read to close",
            raw: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}",
            status: 200,
            body: "{\"a\":1}",
            keepAlive: false,
            needsClose: true
        ),
        Case(name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, body: "", keepAlive: true),
        Case(
            name: "HEAD has no body",
            raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            method: "HEAD",
            status: 200,
            body: "",
            keepAlive: true
        ),
        Case(
            name: "interim 100 is skipped",
            raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            status: 200,
            body: "ok",
            keepAlive: true
        ),
        Case(
            name: "bare LF line endings",
            raw: "HTTP/1.1 404 Not Found\nContent-Length: 3\n\nnop",
            status: 404,
            body: "nop",
            keepAlive: true
        ),
        Case(
            name: "status line without reason",
            raw: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
            status: 200,
            body: "",
            keepAlive: true
        ),
    ]

    /// Feeds `raw` in pieces of `step` bytes; finishes at EOF when needed.
    static func parse(_ raw: [UInt8], method: String, step: Int, close: Bool) throws -> ClientResponse? {
        var parser = ResponseParser(requestMethod: method)
        var index = 0
        while index < raw.count {
            let end = min(index + step, raw.count)
            if let response = try parser.feed(raw[index..<end]) { return response }
            index = end
        }
        return close ? try parser.finish() : nil
    }

    @Test("well-formed responses parse whole and byte by byte", arguments: wellFormed, [1, 3, 4096])
    func wellFormedResponses(_ testCase: Case, step: Int) throws {
        let raw = Array(testCase.raw.utf8)
        if testCase.needsClose {
            #expect(try Self.parse(raw, method: testCase.method, step: step, close: false) == nil)
        }
        let response = try #require(
            try Self.parse(raw, method: testCase.method, step: step, close: testCase.needsClose)
        )
        #expect(response.status == testCase.status)
        #expect(String(decoding: response.body, as: UTF8.self) == testCase.body)
        #expect(response.keepAlive == testCase.keepAlive)
    }

    @Test("headers are found case-insensitively, media type without parameters")
    func headers() throws {
        let head =
            "HTTP/1.1 400 Bad Request\r\ncontent-type: Application/Problem+JSON; charset=utf-8\r\n"
            + "Retry-After:  7 \r\nContent-Length: 0\r\n\r\n"
        let raw = Array(head.utf8)
        let response = try #require(try Self.parse(raw, method: "GET", step: 4096, close: false))
        #expect(response.mediaType == "application/problem+json")
        #expect(response.header("retry-after") == "7")
        #expect(response.reason == "Bad Request")
    }

    @Test("bytes after the response make the connection not reusable")
    func trailingGarbage() throws {
        let raw = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA".utf8)
        let response = try #require(try Self.parse(raw, method: "GET", step: 4096, close: false))
        #expect(String(decoding: response.body, as: UTF8.self) == "ok")
        #expect(!response.keepAlive)
    }

    static let malformed: [(String, String)] = [
        ("not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n"),
        ("status not a number", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"),
        ("status out of range", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"),
        ("content-length not a number", "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello"),
        ("negative content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        ("content-length values disagree", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
        ("content-length too large", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n"),
        ("header without colon", "HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n"),
        ("header name with space", "HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\nok"),
        ("folded header", "HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\nContent-Length: 0\r\n\r\n"),
        ("bare CR in a header", "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 0\r\n\r\n"),
        ("chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("chunk longer than declared", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"),
        ("switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
    ]

    @Test("malformed responses are refused", arguments: malformed)
    func malformedResponses(_ name: String, _ raw: String) {
        #expect(throws: DaemonError(.invalidResponse, ""), "\(name)") {
            _ = try Self.parse(Array(raw.utf8), method: "GET", step: 4096, close: true)
        }
    }

    static let truncated: [(String, String)] = [
        ("nothing at all", ""),
        ("head cut short", "HTTP/1.1 200 OK\r\nContent-Le"),
        ("body shorter than content-length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        ("chunked without last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    ]

    @Test("a connection closed before the response is complete is an error", arguments: truncated)
    func truncatedResponses(_ name: String, _ raw: String) {
        #expect(throws: DaemonError(.invalidResponse, ""), "\(name)") {
            _ = try Self.parse(Array(raw.utf8), method: "GET", step: 4096, close: true)
        }
    }

    @Test("an endless head is refused once it passes the limit")
    func headLimit() {
        var parser = ResponseParser()
        #expect(throws: DaemonError(.invalidResponse, "")) {
            _ = try parser.feed(Array("HTTP/1.1 200 OK\r\n".utf8))
            let header = Array("X-Padding: \(String(repeating: "a", count: 1000))\r\n".utf8)
            for _ in 0..<100 { _ = try parser.feed(header) }
        }
    }
}
