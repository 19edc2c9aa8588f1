import HTTP1Wire
import NIOCore
import NIOHTTP1

/// The requests of one connection, parsed from the bytes as they arrive: the vault's own HTTP/1.1 request parser, in
/// place of NIO's `HTTPRequestDecoder` (docs/decisions.md, "The app socket's half").
///
/// It refuses at least what llhttp (NIO's parser) refuses, and more: lines end in CRLF only; the request line is a
/// method HTTP names, one space, a path of visible ASCII starting with `/` (so never the authority of a `CONNECT`:
/// the vault tunnels nothing), one space and `HTTP/1.1` or `HTTP/1.0`; header names are token characters with the
/// colon right after them; values hold no control character but HTAB; there is no obs-fold; `Content-Length` comes
/// once, as digits; `Transfer-Encoding` is exactly `chunked` and never comes with `Content-Length`; neither, nor
/// `Connection`, has a tab around its value; a head is at most 80 KiB and 256 headers. Nothing after a request that
/// ends its connection is parsed. Empty lines before a request line are skipped (RFC 9112 §2.2). `Upgrade` is an
/// ordinary header: the vault never switches protocols, and a client that asked goes on with HTTP/1.1 (RFC 9110
/// §7.8). `HTTPRequestFuzzTests` holds it to that against NIO's decoder, `HTTPServerCodecTests` to the rest.
///
/// Heads are parsed from one buffer once complete; body bytes are handed on as slices of the buffers read, never
/// copied.
struct HTTPRequestParser {
    enum Event {
        case head(HTTPRequestHead)
        case body(ByteBuffer)
        case end
    }

    /// Why the bytes are not a request this parser accepts. The message names the rule, never the bytes.
    struct Failure: Error, Equatable, CustomStringConvertible {
        var reason: String
        var description: String { "the request is not valid HTTP/1.1: \(self.reason)" }
    }

    private enum State {
        /// Before a head: `scanned` bytes of the buffer have been searched for its end.
        case head(scanned: Int)
        /// `keepAlive`: another request may follow this one's end.
        case body(HTTP1Body, keepAlive: Bool)
        /// A request that ends its connection was read: what follows is never parsed (llhttp refuses it; the
        /// connection closes after the answer).
        case finished
        /// A failure was reported: nothing more is parsed on this connection.
        case failed
    }

    private var state = State.head(scanned: 0)
    /// The bytes read and not parsed yet.
    private var input = HTTP1Input()

    init() {}

    /// Whether bytes are waiting to be parsed.
    var hasUnparsedBytes: Bool { self.input.hasBytes }

    /// Whether a request's head was handed on and its end was not yet.
    var isInsideRequest: Bool {
        if case .body = self.state { true } else { false }
    }

    /// Adds what the connection read; ``next()`` parses it.
    mutating func feed(_ bytes: ByteBuffer) {
        self.input.feed(bytes)
    }

    /// The next event of what was fed, or nil when more bytes are needed.
    ///
    /// - Throws: ``Failure`` when the bytes are not a request the parser accepts; every later call throws as well.
    mutating func next() throws(Failure) -> Event? {
        var buffer = self.input.take()
        defer { self.input.keep(buffer) }
        do throws(HTTP1Syntax.Violation) {
            switch self.state {
            case .head(let scanned):
                return try self.parseHead(&buffer, scanned: scanned).map(Event.head)
            case .body(var body, let keepAlive):
                // Out of `state` while it parses, so that it is not copied.
                self.state = .failed
                switch try body.next(&buffer) {
                case .bytes(let bytes):
                    self.state = .body(body, keepAlive: keepAlive)
                    return .body(bytes)
                case .end:
                    self.state = keepAlive ? .head(scanned: 0) : .finished
                    return .end
                case nil:
                    self.state = .body(body, keepAlive: keepAlive)
                    return nil
                }
            case .finished:
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return nil
            case .failed:
                throw HTTP1Syntax.Violation("an earlier part of the stream was malformed")
            }
        } catch {
            self.state = .failed
            throw Failure(reason: error.reason)
        }
    }

    // MARK: - The head

    private mutating func parseHead(
        _ buffer: inout ByteBuffer,
        scanned: Int
    ) throws(HTTP1Syntax.Violation) -> HTTPRequestHead? {
        // Empty lines before a request line are skipped (RFC 9112 §2.2), as they come.
        while scanned == 0, buffer.readableBytes >= 2,
            buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A
        {
            buffer.moveReaderIndex(forwardBy: 2)
        }
        if buffer.readableBytes == 1, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == 0x0D {
            // Half of an empty line, or the start of one: decided by the next byte.
            self.state = .head(scanned: 0)
            return nil
        }
        let (end, resume) = try HTTP1Syntax.endOfHead(in: buffer, from: scanned)
        guard let end else {
            self.state = .head(scanned: resume)
            return nil
        }
        let (head, framing, keepAlive) = try buffer.withUnsafeReadableBytes { bytes throws(HTTP1Syntax.Violation) in
            try Self.head(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
        }
        buffer.moveReaderIndex(forwardBy: end)
        self.state = .body(HTTP1Body(framing), keepAlive: keepAlive)
        return head
    }

    /// Parses a complete head, `bytes` ending with its CRLF CRLF; the framing of its body (a request without
    /// `Content-Length` or `Transfer-Encoding` has none), and whether another request may follow it (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`).
    private static func head(
        _ bytes: UnsafeRawBufferPointer
    ) throws(HTTP1Syntax.Violation) -> (HTTPRequestHead, HTTP1Body.Framing, keepAlive: Bool) {
        var index = 0
        while HTTPBytes.isToken(bytes[index]) { index += 1 }
        guard index > 0, bytes[index] == UInt8(ascii: " ") else {
            throw HTTP1Syntax.Violation("the request line does not start with a method")
        }
        let method = try Self.method(UnsafeRawBufferPointer(rebasing: bytes[..<index]))
        index += 1
        let targetStart = index
        guard bytes[index] == UInt8(ascii: "/") else {
            throw HTTP1Syntax.Violation("the request target is not a path")
        }
        while bytes[index] > 0x20 && bytes[index] < 0x7F { index += 1 }
        let target = targetStart..<index
        guard bytes[index] == UInt8(ascii: " "), index + 11 <= bytes.count,
            UnsafeRawBufferPointer(rebasing: bytes[(index + 1)..<(index + 8)]).elementsEqual(Self.httpSlash1Dot)
        else {
            throw HTTP1Syntax.Violation("the request line does not end with HTTP/1.1 or HTTP/1.0")
        }
        let minor = bytes[index + 8]
        guard minor == UInt8(ascii: "1") || minor == UInt8(ascii: "0"), bytes[index + 9] == 0x0D,
            bytes[index + 10] == 0x0A
        else {
            throw HTTP1Syntax.Violation("the request line does not end with HTTP/1.1 or HTTP/1.0")
        }
        index += 11

        var headers: [(String, String)] = []
        headers.reserveCapacity(8)
        var framing = HTTP1Syntax.Framing()
        while !(bytes[index] == 0x0D && bytes[index + 1] == 0x0A) {
            let (name, value, next) = try HTTP1Syntax.headerLine(bytes, at: index)
            let framingWhiteSpace = name.upperBound + 1..<next - 2
            index = next
            guard headers.count < HTTP1Syntax.maximumHeaders else { throw HTTP1Syntax.Violation("too many headers") }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[name])
            let valueBytes = UnsafeRawBufferPointer(rebasing: bytes[value])
            if try !framing.read(name: nameBytes, value: valueBytes, whiteSpace: framingWhiteSpace, of: bytes),
                nameBytes.count == 10, HTTPBytes.equalsIgnoringCase(nameBytes, "connection")
            {
                // Whether the stream goes on after this request: llhttp reads a tab after the value as part of it.
                try HTTP1Syntax.requireNoTab(bytes, framingWhiteSpace)
            }
            headers.append((String(decoding: nameBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self)))
        }
        guard index + 2 == bytes.count else { throw HTTP1Syntax.Violation("the head does not end where it should") }
        try framing.check()
        let bodyFraming: HTTP1Body.Framing = framing.chunked ? .chunked : .length(framing.contentLength ?? 0)
        let head = HTTPRequestHead(
            version: minor == UInt8(ascii: "1") ? .http1_1 : .http1_0,
            method: method,
            uri: String(decoding: UnsafeRawBufferPointer(rebasing: bytes[target]), as: UTF8.self),
            headers: HTTPHeaders(headers)
        )
        // NIO's reading, the one the connection handler acts on: the two never differ on whether the connection ends.
        return (head, bodyFraming, head.isKeepAlive)
    }

    /// The method a request line names: one of those HTTP defines (and llhttp knows). The router answers those it
    /// does not serve (405); `CONNECT` comes with a path like any other, as the target must be one.
    private static func method(_ bytes: UnsafeRawBufferPointer) throws(HTTP1Syntax.Violation) -> HTTPMethod {
        // The methods the vault serves first, without building a string.
        switch bytes.count {
        case 3 where bytes.elementsEqual("GET".utf8): return .GET
        case 4 where bytes.elementsEqual("POST".utf8): return .POST
        case 3 where bytes.elementsEqual("PUT".utf8): return .PUT
        case 6 where bytes.elementsEqual("DELETE".utf8): return .DELETE
        case 5 where bytes.elementsEqual("PATCH".utf8): return .PATCH
        default: break
        }
        let method = HTTPMethod(rawValue: String(decoding: bytes, as: UTF8.self))
        if case .RAW = method { throw HTTP1Syntax.Violation("the method is not one HTTP defines") }
        return method
    }

    private static let httpSlash1Dot: [UInt8] = Array("HTTP/1.".utf8)
}
