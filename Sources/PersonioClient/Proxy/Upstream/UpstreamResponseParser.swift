import HTTP1Wire
import NIOCore

/// Personio's answers on one upstream connection, parsed from the bytes as they arrive: the vault's own HTTP/1.1
/// response parser, in place of NIO's `HTTPResponseDecoder` (docs/decisions.md, "The proxy's next step: an HTTP/1.1
/// codec of the vault's own").
///
/// It refuses at least what llhttp (NIO's parser) refuses, and more: lines end in CRLF only; the status line is
/// `HTTP/1.1` or `HTTP/1.0`, a status of 100 to 599 and a reason of visible characters; header names are token
/// characters with the colon right after them; values hold no control character but HTAB; there is no obs-fold;
/// `Content-Length` comes once, as digits; `Transfer-Encoding` is exactly `chunked` and never comes with
/// `Content-Length`; neither has a tab around its value; chunk sizes are hexadecimal and bounded, extensions are
/// tokens and are dropped with the trailers. Only an HTTP/1.1 connection without `Connection: close` is reused.
/// `UpstreamResponseFuzzTests` holds it to that against NIO's decoder.
///
/// Framing follows RFC 9112 §6.3 for the methods the proxy sends (never `HEAD`, never `CONNECT`): 1xx answers other
/// than 101 are skipped, 204 and 304 have no body, then `chunked`, then `Content-Length`, else the body ends with the
/// connection (which then cannot be reused). A 101 is refused: the proxy never asks for an upgrade.
///
/// Heads are small and parsed from one buffer once they are complete; body bytes are handed on as slices of the
/// buffers the connection read, never copied.
///
/// `package`, not internal, for the fuzz harness's `upstream-answer` target.
package struct UpstreamResponseParser {
    /// A response head: the status, every header in arrival order, and whether the connection may carry another
    /// request after this answer.
    ///
    /// The headers stay where they arrived: ``bytes`` is the head as read (a slice of the connection's buffer, not a
    /// copy) and ``fields`` says where each name and value lie in it. The proxy returns two or three of the headers
    /// Personio sends, so only those become strings (``PersonioProxy/returnedResponseHeaders(_:redactor:scrubber:)``).
    package struct Head {
        /// Where one header's name and value lie in ``bytes``' readable bytes; the value without the white space
        /// around it.
        package struct Field {
            package var name: Range<Int>
            package var value: Range<Int>
        }

        package var status: Int
        package var keepAlive: Bool
        package var chunked: Bool
        /// The bytes ``fields`` point into.
        package var bytes: ByteBuffer
        /// Every header, in arrival order.
        package var fields: [Field]

        fileprivate init(status: Int, keepAlive: Bool, chunked: Bool, bytes: ByteBuffer, fields: [Field]) {
            self.status = status
            self.keepAlive = keepAlive
            self.chunked = chunked
            self.bytes = bytes
            self.fields = fields
        }

        /// A head with `headers`, as if parsed: for tests, and for the fuzz harness's expectations.
        package init(status: Int, headers: [(name: String, value: String)], keepAlive: Bool, chunked: Bool) {
            var bytes = ByteBuffer()
            var fields: [Field] = []
            for (name, value) in headers {
                let nameStart = bytes.readableBytes
                bytes.writeString(name)
                let valueStart = bytes.readableBytes
                bytes.writeString(value)
                fields.append(Field(name: nameStart..<valueStart, value: valueStart..<bytes.readableBytes))
            }
            self.init(status: status, keepAlive: keepAlive, chunked: chunked, bytes: bytes, fields: fields)
        }

        /// Calls `body` with the bytes of the head, which each field's ranges index.
        package func withFieldBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
            try self.bytes.withUnsafeReadableBytes(body)
        }

        /// Every header as strings, in arrival order. The proxy itself reads ``fields``; this is for tests and the
        /// fuzz harness.
        package var headers: [(name: String, value: String)] {
            self.withFieldBytes { bytes in
                self.fields.map { field in
                    (
                        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.name]), as: UTF8.self),
                        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self)
                    )
                }
            }
        }
    }

    package enum Event {
        case head(Head)
        case body(ByteBuffer)
        case end
    }

    /// Why the bytes are not an answer this parser accepts. The message names the rule, never the bytes: they may
    /// hold anything Personio echoed.
    package struct Failure: Error, Equatable, CustomStringConvertible {
        package var reason: String
        package var description: String { "Personio's answer is not valid HTTP/1.1: \(self.reason)" }
    }

    /// The longest head, status line and headers together (NIO's limit).
    package static let maximumHeadBytes = HTTP1Syntax.maximumHeadBytes
    package static let maximumHeaders = HTTP1Syntax.maximumHeaders

    private enum State {
        /// Before a head: `scanned` bytes of the buffer have been searched for its end.
        case head(scanned: Int)
        /// A head with no body was handed on: its end comes next.
        case endNext
        case body(HTTP1Body)
        /// A failure was reported: nothing more is parsed on this connection.
        case failed
    }

    private var state = State.head(scanned: 0)
    /// The bytes read and not parsed yet.
    private var input = HTTP1Input()

    package init() {}

    /// Whether bytes are waiting to be parsed (after an answer's end: bytes nobody asked for).
    package var hasUnparsedBytes: Bool { self.input.hasBytes }

    /// Adds what the connection read; ``next()`` parses it.
    package mutating func feed(_ bytes: ByteBuffer) {
        self.input.feed(bytes)
    }

    /// The next event of what was fed, or nil when more bytes are needed.
    ///
    /// - Throws: ``Failure`` when the bytes are not an answer the parser accepts; every later call throws as well.
    package mutating func next() throws(Failure) -> Event? {
        // An answer's end may need no more bytes (the body's last piece came with the read before).
        var buffer = self.input.take()
        defer { self.input.keep(buffer) }
        return try self.parse(&buffer)
    }

    private mutating func parse(_ buffer: inout ByteBuffer) throws(Failure) -> Event? {
        do throws(HTTP1Syntax.Violation) {
            while true {
                switch self.state {
                case .head(let scanned):
                    guard let head = try self.parseHead(&buffer, scanned: scanned) else { return nil }
                    if (100..<200).contains(head.status) {
                        // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                        self.state = .head(scanned: 0)
                        continue
                    }
                    return .head(head)
                case .endNext:
                    self.state = .head(scanned: 0)
                    return .end
                case .body(var body):
                    // Out of `state` while it parses, so that it is not copied.
                    self.state = .failed
                    let piece = try body.next(&buffer)
                    switch piece {
                    case .bytes(let bytes):
                        self.state = .body(body)
                        return .body(bytes)
                    case .end:
                        self.state = .head(scanned: 0)
                        return .end
                    case nil:
                        self.state = .body(body)
                        return nil
                    }
                case .failed:
                    throw HTTP1Syntax.Violation("an earlier part of the answer was malformed")
                }
            }
        } catch {
            self.state = .failed
            throw Failure(reason: error.reason)
        }
    }

    /// The connection has closed: the end of an answer framed by the close, or nil (no answer in progress, or one
    /// cut short).
    package mutating func connectionClosed() -> Event? {
        guard case .body(var body) = self.state, body.connectionClosed() != nil else { return nil }
        self.state = .head(scanned: 0)
        return .end
    }

    // MARK: - The head

    private mutating func parseHead(
        _ buffer: inout ByteBuffer,
        scanned: Int
    ) throws(HTTP1Syntax.Violation) -> Head? {
        let (end, resume) = try HTTP1Syntax.endOfHead(in: buffer, from: scanned)
        guard let end else {
            self.state = .head(scanned: resume)
            return nil
        }
        let head = try buffer.withUnsafeReadableBytes { bytes throws(HTTP1Syntax.Violation) in
            try Self.head(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
        }
        // The head's fields index these bytes: a slice shares the buffer's storage.
        let headBytes = buffer.readSlice(length: end)!
        if head.status == 101 { throw HTTP1Syntax.Violation("an upgrade was not asked for") }
        if (100..<200).contains(head.status) {
            // An interim answer frames nothing: one that speaks of framing or of ending the connection is refused
            // (llhttp would honour its `close`; neither reading is worth the doubt).
            guard !head.chunked, head.contentLength == nil, head.keepAlive else {
                throw HTTP1Syntax.Violation("an interim answer carries framing or connection headers")
            }
            return Head(status: head.status, keepAlive: true, chunked: false, bytes: headBytes, fields: [])
        }
        if head.status == 204 || head.status == 304 {
            self.state = .endNext
        } else if head.chunked {
            self.state = .body(HTTP1Body(.chunked))
        } else if let length = head.contentLength {
            self.state = length == 0 ? .endNext : .body(HTTP1Body(.length(length)))
        } else {
            self.state = .body(HTTP1Body(.untilClose))
        }
        return Head(
            status: head.status,
            keepAlive: head.keepAlive
                && (head.chunked || head.contentLength != nil || head.status == 204
                    || head.status == 304),
            chunked: head.chunked,
            bytes: headBytes,
            fields: head.fields
        )
    }

    private struct ParsedHead {
        var status: Int
        var fields: [Head.Field]
        var keepAlive: Bool
        var chunked: Bool
        var contentLength: Int?
    }

    /// Parses a complete head, `bytes` ending with its CRLF CRLF.
    private static func head(_ bytes: UnsafeRawBufferPointer) throws(HTTP1Syntax.Violation) -> ParsedHead {
        // "HTTP/1.x 200" and a line end at the least.
        guard bytes.count >= 16, bytes.starts(with: Self.httpSlash1Dot) else {
            throw HTTP1Syntax.Violation("the status line does not start with HTTP/1.1 or HTTP/1.0")
        }
        let minor = bytes[7]
        guard minor == UInt8(ascii: "1") || minor == UInt8(ascii: "0"), bytes[8] == UInt8(ascii: " ") else {
            throw HTTP1Syntax.Violation("the status line does not start with HTTP/1.1 or HTTP/1.0")
        }
        var status = 0
        for index in 9..<12 {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { throw HTTP1Syntax.Violation("the status is not three digits") }
            status = status * 10 + Int(digit)
        }
        guard (100..<600).contains(status) else { throw HTTP1Syntax.Violation("the status is out of range") }
        var index = 12
        if bytes[index] == UInt8(ascii: " ") {
            index += 1
            while bytes[index] != 0x0D {
                guard HTTP1Syntax.isFieldByte(bytes[index]) else {
                    throw HTTP1Syntax.Violation("the reason phrase holds a control character")
                }
                index += 1
            }
        }
        guard bytes[index] == 0x0D, bytes[index + 1] == 0x0A else {
            throw HTTP1Syntax.Violation("the status line does not end with CRLF")
        }
        index += 2

        var parsed = ParsedHead(status: status, fields: [], keepAlive: minor == UInt8(ascii: "1"), chunked: false)
        parsed.fields.reserveCapacity(16)
        var framing = HTTP1Syntax.Framing()
        var connectionClose = false
        while !(bytes[index] == 0x0D && bytes[index + 1] == 0x0A) {
            let (name, value, next) = try HTTP1Syntax.headerLine(bytes, at: index)
            // The white space around a framing header's value: spaces only (llhttp reads a tab there as part of the
            // value, so a tab would make the two parsers frame the answer differently).
            let framingWhiteSpace = name.upperBound + 1..<next - 2
            index = next
            guard parsed.fields.count < Self.maximumHeaders else { throw HTTP1Syntax.Violation("too many headers") }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[name])
            let valueBytes = UnsafeRawBufferPointer(rebasing: bytes[value])
            if try !framing.read(name: nameBytes, value: valueBytes, whiteSpace: framingWhiteSpace, of: bytes),
                nameBytes.count == 10, HTTPBytes.equalsIgnoringCase(nameBytes, "connection")
            {
                connectionClose = connectionClose || HTTP1Syntax.hasOption(valueBytes, "close")
            }
            parsed.fields.append(Head.Field(name: name, value: value))
        }
        guard index + 2 == bytes.count else { throw HTTP1Syntax.Violation("the head does not end where it should") }
        try framing.check()
        parsed.chunked = framing.chunked
        parsed.contentLength = framing.contentLength
        // Only an HTTP/1.1 connection is reused, and not after `close`; an HTTP/1.0 answer ends its connection
        // whatever it says (Personio speaks HTTP/1.1: one rule fewer to get wrong).
        parsed.keepAlive = minor == UInt8(ascii: "1") && !connectionClose
        return parsed
    }

    // MARK: - Bytes

    private static let httpSlash1Dot: [UInt8] = Array("HTTP/1.".utf8)
}
