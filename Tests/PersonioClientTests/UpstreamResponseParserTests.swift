import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TestSupport
import Testing

@testable import PersonioClient

/// What a parser made of one answer's bytes: the answer, or that it did not accept them (refused, or cut short by
/// the end of the connection).
enum ParsedAnswer: Equatable, CustomStringConvertible {
    case answer(status: Int, headers: [String], body: [UInt8], keepAlive: Bool)
    case notAccepted(String)

    var isAnswer: Bool {
        if case .answer = self { return true }
        return false
    }

    /// The same answer on a connection that ends after it.
    var withoutKeepAlive: ParsedAnswer {
        guard case .answer(let status, let headers, let body, _) = self else { return self }
        return .answer(status: status, headers: headers, body: body, keepAlive: false)
    }

    var description: String {
        switch self {
        case .answer(let status, let headers, let body, let keepAlive):
            "\(status) \(headers) body \(body.count) bytes keep-alive \(keepAlive)"
        case .notAccepted(let why):
            "not accepted: \(why)"
        }
    }

    /// The vault's parser, fed `bytes` in the pieces `splits` cuts them into, then the end of the connection.
    static func vault(_ bytes: [UInt8], splits: [Int] = []) -> ParsedAnswer {
        var parser = UpstreamResponseParser()
        var head: UpstreamResponseParser.Head?
        var body: [UInt8] = []
        var start = 0
        for end in splits.sorted() + [bytes.count] where end >= start {
            parser.feed(ByteBuffer(bytes: bytes[start..<end]))
            start = end
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let parsed):
                        guard head == nil else { return .notAccepted("a second head") }
                        head = parsed
                    case .body(let piece):
                        guard head != nil else { return .notAccepted("a body before the head") }
                        body += piece.readableBytesView
                    case .end:
                        guard let head else { return .notAccepted("an end before the head") }
                        return Self.answer(head, body)
                    }
                }
            } catch {
                return .notAccepted("\(error)")
            }
        }
        if let head, case .end = parser.connectionClosed() { return Self.answer(head, body) }
        return .notAccepted("incomplete")
    }

    private static func answer(_ head: UpstreamResponseParser.Head, _ body: [UInt8]) -> ParsedAnswer {
        .answer(
            status: head.status,
            headers: head.headers.map { "\($0.name): \($0.value)" },
            body: body,
            keepAlive: head.keepAlive
        )
    }

    /// NIO's `HTTPResponseDecoder` (llhttp), as the proxy used it before, after a `GET`; the keep-alive it reports
    /// counts only for an answer framed by its head (an answer ended by the close ends the connection).
    static func nio(_ bytes: [UInt8]) -> ParsedAnswer {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        func drain() -> ParsedAnswer? {
            while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head(let parsed):
                    guard head == nil else { return .notAccepted("a second head") }
                    head = parsed
                case .body(let piece):
                    body += piece.readableBytesView
                case .end:
                    guard let head else { return .notAccepted("an end before the head") }
                    let framed =
                        head.headers.contains(name: "Content-Length")
                        || head.headers.contains(name: "Transfer-Encoding")
                        || head.status.code == 204 || head.status.code == 304
                    return .answer(
                        status: Int(head.status.code),
                        headers: head.headers.map {
                            "\($0.name): \($0.value.trimmingCharacters(in: CharacterSet(charactersIn: " \t")))"
                        },
                        body: body,
                        keepAlive: head.isKeepAlive && framed
                    )
                }
            }
            return nil
        }
        do {
            try channel.pipeline.syncOperations.addHandler(HTTPRequestEncoder())
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes))
            )
            try channel.writeOutbound(
                HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"))
            )
            try channel.writeOutbound(HTTPClientRequestPart.end(nil))
        } catch {
            return .notAccepted("setup: \(error)")
        }
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            return drain() ?? .notAccepted("\(error)")
        }
        if let answer = drain() { return answer }
        do {
            // The end of the connection: an answer framed by it ends now, one cut short is an error.
            channel.pipeline.fireChannelInactive()
            try channel.throwIfErrorCaught()
        } catch {
            return drain() ?? .notAccepted("\(error)")
        }
        return drain() ?? .notAccepted("incomplete")
    }
}

/// The vault's upstream response parser on chosen answers: what it accepts, what it makes of it, what it refuses.
@Suite struct UpstreamResponseParserTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    struct Accepted: CustomStringConvertible, Sendable {
        var name: String
        var text: String
        var status: Int
        var headers: [String]
        var body: String
        var keepAlive: Bool
        var description: String { self.name }
    }

    static let accepted: [Accepted] = [
        Accepted(
            name: "Content-Length",
            text: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            status: 200,
            headers: ["Content-Type: application/json", "Content-Length: 2"],
            body: "{}",
            keepAlive: true
        ),
        Accepted(
            name: "chunked with extensions and trailers",
            text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "3;name=value\r\nabc\r\n2\r\nde\r\n0;last\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n",
            status: 200,
            headers: ["Transfer-Encoding: chunked"],
            body: "abcde",
            keepAlive: true
        ),
        Accepted(
            name: "chunked without trailers, upper-case hex",
            text: "HTTP/1.1 201 Created\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            status: 201,
            headers: ["Transfer-Encoding: Chunked"],
            body: "0123456789",
            keepAlive: true
        ),
        Accepted(
            name: "ended by the close",
            text: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
            status: 200,
            headers: ["Content-Type: text/plain"],
            body: "to the end",
            keepAlive: false
        ),
        Accepted(
            name: "204 has no body",
            text: "HTTP/1.1 204 No Content\r\nX-RateLimit-Remaining: 9\r\n\r\n",
            status: 204,
            headers: ["X-RateLimit-Remaining: 9"],
            body: "",
            keepAlive: true
        ),
        Accepted(
            name: "304 has no body, whatever its Content-Length says",
            text: "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nContent-Length: 120\r\n\r\n",
            status: 304,
            headers: ["ETag: \"a\"", "Content-Length: 120"],
            body: "",
            keepAlive: true
        ),
        Accepted(
            name: "interim answers are skipped",
            text: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            status: 200,
            headers: ["Content-Length: 1"],
            body: "x",
            keepAlive: true
        ),
        Accepted(
            name: "Connection: close",
            text: "HTTP/1.1 401 Unauthorized\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
            status: 401,
            headers: ["Connection: keep-alive, close", "Content-Length: 0"],
            body: "",
            keepAlive: false
        ),
        Accepted(
            name: "HTTP/1.0 ends its connection, even with keep-alive",
            text: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            status: 200,
            headers: ["Connection: Keep-Alive", "Content-Length: 0"],
            body: "",
            keepAlive: false
        ),
        Accepted(
            name: "HTTP/1.0 without keep-alive",
            text: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            status: 200,
            headers: ["Content-Length: 0"],
            body: "",
            keepAlive: false
        ),
        Accepted(
            name: "white space around values, an empty value, an empty reason",
            text: "HTTP/1.1 429 \r\nRetry-After: \t 30 \t\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
            status: 429,
            headers: ["Retry-After: 30", "X-Empty: ", "Content-Length: 0"],
            body: "",
            keepAlive: true
        ),
        Accepted(
            name: "no reason at all",
            text: "HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n",
            status: 503,
            headers: ["Content-Length: 0"],
            body: "",
            keepAlive: true
        ),
    ]

    @Test(arguments: accepted)
    func accepts(_ example: Accepted) {
        let bytes = Self.bytes(example.text)
        let expected = ParsedAnswer.answer(
            status: example.status,
            headers: example.headers,
            body: Self.bytes(example.body),
            keepAlive: example.keepAlive
        )
        #expect(ParsedAnswer.vault(bytes) == expected)
        // The same, cut at every byte: the pieces a read may bring.
        for cut in 0...bytes.count {
            #expect(ParsedAnswer.vault(bytes, splits: [cut]) == expected, "cut at \(cut)")
        }
        #expect(ParsedAnswer.vault(bytes, splits: Array(0...bytes.count)) == expected, "one byte at a time")
        // NIO's decoder agrees, but may reuse a connection the vault ends (HTTP/1.0 keep-alive).
        let nio = ParsedAnswer.nio(bytes)
        #expect(nio == expected || nio.withoutKeepAlive == expected, "NIO's decoder agrees: \(nio)")
    }

    static let refused: [(String, String)] = [
        ("not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ("HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ("a two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
        ("a status over 599", "HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n"),
        ("a bare LF ends a line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
        ("a bare CR in a value", "HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n"),
        ("a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: b\u{0}c\r\nContent-Length: 0\r\n\r\n"),
        ("DEL in a reason", "HTTP/1.1 200 O\u{7F}K\r\nContent-Length: 0\r\n\r\n"),
        ("obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n"),
        ("white space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
        ("an empty name", "HTTP/1.1 200 OK\r\n: 0\r\nContent-Length: 0\r\n\r\n"),
        ("a line without a colon", "HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n"),
        ("two Content-Lengths, even equal", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
        ("a Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx"),
        ("a signed Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx"),
        ("a huge Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nx"),
        (
            "Content-Length with Transfer-Encoding",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        ("a tab after Content-Length's value", "HTTP/1.1 200 OK\r\nContent-Length: 1\t\r\n\r\nx"),
        ("a tab before Content-Length's value", "HTTP/1.1 200 OK\r\nContent-Length:\t1\r\n\r\nx"),
        ("a tab after chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n"),
        ("a coding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        (
            "Transfer-Encoding twice",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        ("a chunk size that is not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n\r\n"),
        ("a negative chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n"),
        ("a huge chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nx"),
        ("white space after a chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n"),
        ("a chunk without its CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n"),
        ("a bare LF after a chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n"),
        (
            "a quoted chunk extension",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"b\"\r\nx\r\n0\r\n\r\n"
        ),
        ("a malformed trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n"),
        ("an interim answer with close", "HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\nHTTP/1.1 204 OK\r\n\r\n"),
        (
            "an interim answer with a length",
            "HTTP/1.1 103 Early Hints\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 204 OK\r\n\r\n"
        ),
        ("an upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
        ("cut in the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        ("cut in the head", "HTTP/1.1 200 OK\r\nContent-Len"),
        ("cut between chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"),
    ]

    @Test func refusesWhatIsNotAWellFormedAnswer() {
        for (name, text) in Self.refused {
            let bytes = Self.bytes(text)
            #expect(!ParsedAnswer.vault(bytes).isAnswer, "\(name)")
            for cut in 0...bytes.count {
                #expect(!ParsedAnswer.vault(bytes, splits: [cut]).isAnswer, "\(name), cut at \(cut)")
            }
        }
    }

    @Test func aHeadPastTheLimitIsRefusedBeforeItEnds() throws {
        var parser = UpstreamResponseParser()
        parser.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\n"))
        let line = ByteBuffer(string: "X-Filler: " + String(repeating: "a", count: 1000) + "\r\n")
        var fed = 17
        var refusal: UpstreamResponseParser.Failure?
        while fed < 2 * UpstreamResponseParser.maximumHeadBytes, refusal == nil {
            parser.feed(line)
            fed += line.readableBytes
            do { _ = try parser.next() } catch { refusal = error }
        }
        #expect(refusal?.reason == "the head is too large")
        #expect(fed <= UpstreamResponseParser.maximumHeadBytes + line.readableBytes)
    }

    @Test func tooManyHeadersAreRefused() {
        let lines = (0...UpstreamResponseParser.maximumHeaders).map { "X-H\($0): v\r\n" }.joined()
        let answer = ParsedAnswer.vault(Self.bytes("HTTP/1.1 200 OK\r\n" + lines + "Content-Length: 0\r\n\r\n"))
        #expect(answer == .notAccepted("Personio's answer is not valid HTTP/1.1: too many headers"))
    }

    @Test func aRefusalNamesTheRuleNotTheBytes() {
        let secret = "echoed-credential-not-a-secret"
        let answer = ParsedAnswer.vault(Self.bytes("HTTP/1.1 200 OK\r\nX-A: \(secret)\u{1}\r\n\r\n"))
        #expect(
            answer == .notAccepted("Personio's answer is not valid HTTP/1.1: a header value holds a control character")
        )
    }

    @Test func bodyPiecesAreSlicesOfTheReadNotCopies() throws {
        var parser = UpstreamResponseParser()
        var read = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
        read.writeRepeatingByte(UInt8(ascii: "z"), count: 4096)
        let base = read.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        parser.feed(read)
        guard case .head = try parser.next(), case .body(let piece) = try parser.next() else {
            Issue.record("no head and body")
            return
        }
        let pieceBase = piece.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(piece.readableBytes == 4096)
        #expect(pieceBase == base + UInt(read.readableBytes - 4096))
        guard case .end = try parser.next() else {
            Issue.record("no end")
            return
        }
        #expect(!parser.hasUnparsedBytes)
    }
}
