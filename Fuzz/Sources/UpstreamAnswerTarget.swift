import NIOCore
import PersonioClient

/// The proxy's parser of Personio's answers (`UpstreamResponseParser`), on the bytes of one upstream connection.
/// Input: one byte that picks where the bytes are cut into reads, then the bytes, then the end of the connection.
///
/// The differential test against NIO's decoder is `UpstreamResponseFuzzTests` (swift test); this target looks for
/// what coverage guidance and AddressSanitizer find: a crash, an out-of-bounds read, a hang, and answers that
/// break what the proxy relies on.
final class UpstreamAnswerTarget: FuzzTarget {
    func run(_ input: [UInt8]) {
        var reader = InputReader(input)
        let cuts = reader.byte()
        let bytes = reader.rest
        let whole = Self.parse(bytes, cutEvery: 0)
        // How the bytes arrive never changes the outcome.
        let pieces = Self.parse(bytes, cutEvery: Int(cuts % 17) + 1)
        FuzzTargets.check(pieces == whole, "the reads' sizes change the outcome")
        guard case .answer(let answer) = whole else { return }

        // What the proxy relays holds no byte a header must not: names are tokens, values have no control
        // character but HTAB and no white space at either end.
        for (name, value) in answer.headers {
            FuzzTargets.check(!name.isEmpty && name.utf8.allSatisfy(Self.isToken), "a header name is not a token")
            FuzzTargets.check(
                value.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) },
                "a header value holds a control character"
            )
            FuzzTargets.check(
                value.utf8.first.map { $0 != 0x20 && $0 != 0x09 } ?? true
                    && value.utf8.last.map { $0 != 0x20 && $0 != 0x09 } ?? true,
                "a header value is not trimmed"
            )
        }
        FuzzTargets.check((200..<600).contains(answer.status), "a final answer with status \(answer.status)")
        FuzzTargets.check(!answer.keepAlive || answer.framed, "a connection reused after an answer ended by its close")
        if answer.status == 204 || answer.status == 304 {
            FuzzTargets.check(answer.body.isEmpty, "a \(answer.status) with a body")
        }

        // The answer written again in canonical form parses to itself: what was accepted has one reading.
        let (canonical, expected) = Self.canonical(answer)
        let again = Self.parse(canonical, cutEvery: 0)
        FuzzTargets.check(again == .answer(expected), "an accepted answer written again parses differently")
    }

    struct Answer: Equatable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var keepAlive: Bool
        var chunked: Bool
        /// Framed by its head (a length, chunks, or a status without a body), not by the close.
        var framed: Bool

        static func == (left: Answer, right: Answer) -> Bool {
            left.status == right.status && left.body == right.body && left.keepAlive == right.keepAlive
                && left.chunked == right.chunked && left.framed == right.framed
                && left.headers.map(\.name) == right.headers.map(\.name)
                && left.headers.map(\.value) == right.headers.map(\.value)
        }
    }

    enum Outcome: Equatable {
        case answer(Answer)
        case refused
        case incomplete
    }

    /// Feeds `bytes` in reads of `cutEvery` bytes (all at once for 0), then closes the connection.
    static func parse(_ bytes: [UInt8], cutEvery: Int) -> Outcome {
        var parser = UpstreamResponseParser()
        var head: UpstreamResponseParser.Head?
        var body: [UInt8] = []
        var framed = true
        let size = cutEvery == 0 ? max(bytes.count, 1) : cutEvery
        var start = 0
        repeat {
            let end = min(start + size, bytes.count)
            parser.feed(ByteBuffer(bytes: bytes[start..<end]))
            start = end
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let parsed):
                        FuzzTargets.check(head == nil, "a second head before an end")
                        head = parsed
                    case .body(let piece):
                        FuzzTargets.check(head != nil, "a body before the head")
                        body += piece.readableBytesView
                    case .end:
                        guard let head else { FuzzTargets.fail("an end before the head") }
                        return .answer(Self.answer(head, body, framed: framed))
                    }
                }
            } catch {
                FuzzTargets.check(
                    !error.description.utf8.contains(where: { $0 < 0x20 }),
                    "a refusal's message holds a control character"
                )
                return .refused
            }
        } while start < bytes.count
        framed = false
        if let head, case .end = parser.connectionClosed() { return .answer(Self.answer(head, body, framed: framed)) }
        return .incomplete
    }

    private static func answer(_ head: UpstreamResponseParser.Head, _ body: [UInt8], framed: Bool) -> Answer {
        Answer(
            status: head.status,
            headers: head.headers,
            body: body,
            keepAlive: head.keepAlive,
            chunked: head.chunked,
            framed: framed
        )
    }

    /// `answer` as HTTP/1.1 with single spaces, the body in one chunk when it was chunked, and what parsing that
    /// must give: the same answer, with `Connection: close` added where it was not reused though framed (HTTP/1.0).
    static func canonical(_ answer: Answer) -> (bytes: [UInt8], expected: Answer) {
        var expected = answer
        if !answer.keepAlive && answer.framed {
            expected.headers.append(("Connection", "close"))
        }
        var text = "HTTP/1.1 \(answer.status) X\r\n"
        for (name, value) in expected.headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        if answer.chunked {
            if !answer.body.isEmpty {
                bytes += Array((String(answer.body.count, radix: 16) + "\r\n").utf8) + answer.body + Array("\r\n".utf8)
            }
            bytes += Array("0\r\n\r\n".utf8)
        } else {
            bytes += answer.body
        }
        return (bytes, expected)
    }

    /// RFC 9110 `tchar`, written out here rather than taken from the parser's table: the check must not share the
    /// code it checks.
    private static func isToken(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
