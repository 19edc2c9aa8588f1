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
    package struct Head {
        package var status: Int
        package var headers: [(name: String, value: String)]
        package var keepAlive: Bool
        package var chunked: Bool
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
    package static let maximumHeadBytes = 80 * 1024
    package static let maximumHeaders = 256
    /// The longest chunk-size line, extensions included.
    package static let maximumChunkLineBytes = 1024
    /// The most trailer bytes after the last chunk.
    package static let maximumTrailerBytes = 16 * 1024
    /// The largest body length or chunk size accepted (2^48 bytes: no answer comes near it, and no sum overflows).
    package static let maximumLength = 1 << 48

    private enum State {
        /// Before a head: `scanned` bytes of the buffer have been searched for its end.
        case head(scanned: Int)
        /// A head with no body was handed on: its end comes next.
        case endNext
        case fixed(remaining: Int)
        case untilClose
        case chunkLine(scanned: Int)
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(scanned: Int)
        /// A failure was reported: nothing more is parsed on this connection.
        case failed
    }

    private var state = State.head(scanned: 0)
    /// The bytes read and not parsed yet.
    private var unparsed: ByteBuffer?

    package init() {}

    /// Whether bytes are waiting to be parsed (after an answer's end: bytes nobody asked for).
    package var hasUnparsedBytes: Bool { (self.unparsed?.readableBytes ?? 0) > 0 }

    /// Adds what the connection read; ``next()`` parses it.
    package mutating func feed(_ bytes: ByteBuffer) {
        guard var unparsed = self.unparsed, unparsed.readableBytes > 0 else {
            self.unparsed = bytes
            return
        }
        // What a read left (a head, a chunk-size line or a chunk's CRLF cut by its end) comes first: copied once,
        // at most a head's worth of bytes.
        self.unparsed = nil
        var bytes = bytes
        unparsed.writeBuffer(&bytes)
        self.unparsed = unparsed
    }

    /// The next event of what was fed, or nil when more bytes are needed.
    ///
    /// - Throws: ``Failure`` when the bytes are not an answer the parser accepts; every later call throws as well.
    package mutating func next() throws(Failure) -> Event? {
        // An answer's end may need no more bytes (the body's last piece came with the read before).
        var buffer = self.unparsed ?? Self.noBytes
        self.unparsed = nil
        defer { self.unparsed = buffer.readableBytes > 0 ? buffer : nil }
        return try self.parse(&buffer)
    }

    private mutating func parse(_ buffer: inout ByteBuffer) throws(Failure) -> Event? {
        do throws(Failure) {
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
                case .fixed(let remaining):
                    guard let (piece, left) = Self.piece(of: &buffer, remaining: remaining) else { return nil }
                    self.state = left == 0 ? .endNext : .fixed(remaining: left)
                    return .body(piece)
                case .untilClose:
                    guard buffer.readableBytes > 0 else { return nil }
                    return .body(buffer.readSlice(length: buffer.readableBytes)!)
                case .chunkLine(let scanned):
                    guard try self.parseChunkLine(&buffer, scanned: scanned) else { return nil }
                case .chunkData(let remaining):
                    guard let (piece, left) = Self.piece(of: &buffer, remaining: remaining) else { return nil }
                    self.state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                    return .body(piece)
                case .chunkDataEnd:
                    guard buffer.readableBytes >= 2 else { return nil }
                    guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                        throw Failure(reason: "a chunk does not end with CRLF")
                    }
                    self.state = .chunkLine(scanned: 0)
                case .trailers(let scanned):
                    guard try self.parseTrailers(&buffer, scanned: scanned) else { return nil }
                    self.state = .head(scanned: 0)
                    return .end
                case .failed:
                    throw Failure(reason: "an earlier part of the answer was malformed")
                }
            }
        } catch {
            self.state = .failed
            throw error
        }
    }

    /// Up to `remaining` bytes of a body (or a chunk) from what was read, as a slice, and how many are left after
    /// them; nil when nothing was read.
    private static func piece(of buffer: inout ByteBuffer, remaining: Int) -> (ByteBuffer, left: Int)? {
        guard buffer.readableBytes > 0 else { return nil }
        let count = min(remaining, buffer.readableBytes)
        return (buffer.readSlice(length: count)!, remaining - count)
    }

    /// The connection has closed: the end of an answer framed by the close, or nil (no answer in progress, or one
    /// cut short).
    package mutating func connectionClosed() -> Event? {
        guard case .untilClose = self.state else { return nil }
        self.state = .head(scanned: 0)
        return .end
    }

    // MARK: - The head

    private mutating func parseHead(_ buffer: inout ByteBuffer, scanned: Int) throws(Failure) -> Head? {
        let end = try Self.endOfSection(
            in: buffer,
            from: scanned,
            limit: Self.maximumHeadBytes,
            tooLarge: "the head is too large"
        )
        guard let end else {
            self.state = .head(scanned: Self.resumeSearch(buffer))
            return nil
        }
        let head = try buffer.withUnsafeReadableBytes { bytes throws(Failure) in
            try Self.head(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
        }
        buffer.moveReaderIndex(forwardBy: end)
        if head.status == 101 { throw Failure(reason: "an upgrade was not asked for") }
        if (100..<200).contains(head.status) {
            // An interim answer frames nothing: one that speaks of framing or of ending the connection is refused
            // (llhttp would honour its `close`; neither reading is worth the doubt).
            guard !head.chunked, head.contentLength == nil, head.keepAlive else {
                throw Failure(reason: "an interim answer carries framing or connection headers")
            }
            return Head(status: head.status, headers: [], keepAlive: true, chunked: false)
        }
        if head.status == 204 || head.status == 304 {
            self.state = .endNext
        } else if head.chunked {
            self.state = .chunkLine(scanned: 0)
        } else if let length = head.contentLength {
            self.state = length == 0 ? .endNext : .fixed(remaining: length)
        } else {
            self.state = .untilClose
        }
        return Head(
            status: head.status,
            headers: head.headers,
            keepAlive: head.keepAlive
                && (head.chunked || head.contentLength != nil || head.status == 204
                    || head.status == 304),
            chunked: head.chunked
        )
    }

    /// Where a section of header lines (a head, or the trailers) ends in `buffer`, after its CRLF CRLF, searching
    /// from `scanned`; nil when its end has not arrived yet.
    ///
    /// - Throws: ``Failure`` with `tooLarge` when `limit` bytes have come without the end.
    private static func endOfSection(
        in buffer: ByteBuffer,
        from scanned: Int,
        limit: Int,
        tooLarge: String
    ) throws(Failure) -> Int? {
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            Self.endOfHead(in: UnsafeRawBufferPointer(rebasing: bytes.prefix(limit)), from: scanned)
        }
        if end == nil, buffer.readableBytes >= limit { throw Failure(reason: tooLarge) }
        return end
    }

    /// Where the search for a section's end resumes with the next read: up to three bytes of its terminator may be
    /// at the end of this one.
    private static func resumeSearch(_ buffer: ByteBuffer) -> Int {
        max(0, buffer.readableBytes - 3)
    }

    /// Where the head ends (after its CRLF CRLF) in `bytes`, searching from `start`.
    private static func endOfHead(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index + 3 < bytes.count {
            // The fourth byte of a terminator, when it is one: skips four bytes at a time through a line.
            let byte = bytes[index + 3]
            if byte == 0x0A {
                if bytes[index] == 0x0D && bytes[index + 1] == 0x0A && bytes[index + 2] == 0x0D { return index + 4 }
                index += 1
            } else if byte == 0x0D {
                index += 1
            } else {
                index += 4
            }
        }
        return nil
    }

    private struct ParsedHead {
        var status: Int
        var headers: [(name: String, value: String)]
        var keepAlive: Bool
        var chunked: Bool
        var contentLength: Int?
    }

    /// Parses a complete head, `bytes` ending with its CRLF CRLF.
    private static func head(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> ParsedHead {
        // "HTTP/1.x 200" and a line end at the least.
        guard bytes.count >= 16, bytes.starts(with: Self.httpSlash1Dot) else {
            throw Failure(reason: "the status line does not start with HTTP/1.1 or HTTP/1.0")
        }
        let minor = bytes[7]
        guard minor == UInt8(ascii: "1") || minor == UInt8(ascii: "0"), bytes[8] == UInt8(ascii: " ") else {
            throw Failure(reason: "the status line does not start with HTTP/1.1 or HTTP/1.0")
        }
        var status = 0
        for index in 9..<12 {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { throw Failure(reason: "the status is not three digits") }
            status = status * 10 + Int(digit)
        }
        guard (100..<600).contains(status) else { throw Failure(reason: "the status is out of range") }
        var index = 12
        if bytes[index] == UInt8(ascii: " ") {
            index += 1
            while bytes[index] != 0x0D {
                guard Self.isFieldByte(bytes[index]) else {
                    throw Failure(reason: "the reason phrase holds a control character")
                }
                index += 1
            }
        }
        guard bytes[index] == 0x0D, bytes[index + 1] == 0x0A else {
            throw Failure(reason: "the status line does not end with CRLF")
        }
        index += 2

        var parsed = ParsedHead(status: status, headers: [], keepAlive: minor == UInt8(ascii: "1"), chunked: false)
        parsed.headers.reserveCapacity(16)
        var sawTransferEncoding = false
        var connectionClose = false
        while !(bytes[index] == 0x0D && bytes[index + 1] == 0x0A) {
            let (name, value, next) = try Self.headerLine(bytes, at: index)
            // The white space around a framing header's value: spaces only (llhttp reads a tab there as part of the
            // value, so a tab would make the two parsers frame the answer differently).
            let framingWhiteSpace = name.upperBound + 1..<next - 2
            index = next
            guard parsed.headers.count < Self.maximumHeaders else { throw Failure(reason: "too many headers") }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[name])
            let valueBytes = UnsafeRawBufferPointer(rebasing: bytes[value])
            switch nameBytes.count {
            case 10 where HTTPBytes.equalsIgnoringCase(nameBytes, "connection"):
                connectionClose = connectionClose || Self.hasCloseOption(valueBytes)
            case 14 where HTTPBytes.equalsIgnoringCase(nameBytes, "content-length"):
                try Self.requireNoTab(bytes, framingWhiteSpace)
                guard parsed.contentLength == nil else {
                    throw Failure(reason: "Content-Length comes more than once")
                }
                parsed.contentLength = try Self.decimal(valueBytes)
            case 17 where HTTPBytes.equalsIgnoringCase(nameBytes, "transfer-encoding"):
                try Self.requireNoTab(bytes, framingWhiteSpace)
                guard !sawTransferEncoding else { throw Failure(reason: "Transfer-Encoding comes more than once") }
                sawTransferEncoding = true
                guard HTTPBytes.equalsIgnoringCase(valueBytes, "chunked") else {
                    throw Failure(reason: "the only transfer coding accepted is chunked")
                }
                parsed.chunked = true
            default:
                break
            }
            parsed.headers.append(
                (String(decoding: nameBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self))
            )
        }
        guard index + 2 == bytes.count else { throw Failure(reason: "the head does not end where it should") }
        if parsed.chunked && parsed.contentLength != nil {
            throw Failure(reason: "Content-Length and Transfer-Encoding come together")
        }
        // Only an HTTP/1.1 connection is reused, and not after `close`; an HTTP/1.0 answer ends its connection
        // whatever it says (Personio speaks HTTP/1.1: one rule fewer to get wrong).
        parsed.keepAlive = minor == UInt8(ascii: "1") && !connectionClose
        return parsed
    }

    private static func requireNoTab(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) throws(Failure) {
        guard !bytes[range].contains(0x09) else {
            throw Failure(reason: "a Content-Length or Transfer-Encoding value is surrounded by a tab")
        }
    }

    /// One header line at `start`: the name's range, the value's (without surrounding white space) and where the
    /// next line begins.
    private static func headerLine(
        _ bytes: UnsafeRawBufferPointer,
        at start: Int
    ) throws(Failure) -> (name: Range<Int>, value: Range<Int>, next: Int) {
        var index = start
        while HTTPBytes.isToken(bytes[index]) { index += 1 }
        guard index > start, bytes[index] == UInt8(ascii: ":") else {
            // A line that starts with white space is obs-fold, which is refused like every other malformed name.
            throw Failure(reason: "a header name is malformed")
        }
        let name = start..<index
        index += 1
        while bytes[index] == UInt8(ascii: " ") || bytes[index] == 0x09 { index += 1 }
        let valueStart = index
        var valueEnd = index
        while bytes[index] != 0x0D {
            let byte = bytes[index]
            guard Self.isFieldByte(byte) else { throw Failure(reason: "a header value holds a control character") }
            index += 1
            if byte != UInt8(ascii: " ") && byte != 0x09 { valueEnd = index }
        }
        guard bytes[index + 1] == 0x0A else { throw Failure(reason: "a header line does not end with CRLF") }
        return (name, valueStart..<valueEnd, index + 2)
    }

    /// A `Content-Length` value: digits only, at most ``maximumLength``.
    private static func decimal(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        guard !bytes.isEmpty, bytes.count <= 15 else { throw Failure(reason: "Content-Length is not a length") }
        var value = 0
        for byte in bytes {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { throw Failure(reason: "Content-Length is not a length") }
            value = value * 10 + Int(digit)
        }
        guard value <= Self.maximumLength else { throw Failure(reason: "Content-Length is too large") }
        return value
    }

    /// Whether a `Connection` value holds the `close` option.
    private static func hasCloseOption(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
            var first = start
            var last = end
            while first < last && (bytes[first] == UInt8(ascii: " ") || bytes[first] == 0x09) { first += 1 }
            while last > first && (bytes[last - 1] == UInt8(ascii: " ") || bytes[last - 1] == 0x09) { last -= 1 }
            let option = UnsafeRawBufferPointer(rebasing: bytes[first..<last])
            if HTTPBytes.equalsIgnoringCase(option, "close") { return true }
            start = end + 1
        }
        return false
    }

    // MARK: - Chunks

    /// Parses a chunk-size line; false when it is not complete yet.
    private mutating func parseChunkLine(_ buffer: inout ByteBuffer, scanned: Int) throws(Failure) -> Bool {
        let readable = buffer.readableBytes
        let lineEnd: Int? = buffer.withUnsafeReadableBytes { bytes in
            var index = max(scanned, 1)
            let limit = min(bytes.count, Self.maximumChunkLineBytes)
            while index < limit {
                if bytes[index] == 0x0A { return bytes[index - 1] == 0x0D ? index + 1 : -1 }
                index += 1
            }
            return nil
        }
        guard let lineEnd else {
            guard readable < Self.maximumChunkLineBytes else { throw Failure(reason: "a chunk-size line is too long") }
            self.state = .chunkLine(scanned: readable)
            return false
        }
        guard lineEnd > 0 else { throw Failure(reason: "a chunk-size line does not end with CRLF") }
        let size = try buffer.withUnsafeReadableBytes { bytes throws(Failure) in
            try Self.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[..<(lineEnd - 2)]))
        }
        buffer.moveReaderIndex(forwardBy: lineEnd)
        self.state = size == 0 ? .trailers(scanned: 0) : .chunkData(remaining: size)
        return true
    }

    /// A chunk size in hexadecimal, then extensions (`;name` or `;name=value`, tokens only), which are dropped.
    private static func chunkSize(_ line: UnsafeRawBufferPointer) throws(Failure) -> Int {
        var index = 0
        var size = 0
        while index < line.count, let digit = Self.hexDigit(line[index]) {
            guard index < 12 else { throw Failure(reason: "a chunk is too large") }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0 else { throw Failure(reason: "a chunk size is not hexadecimal") }
        while index < line.count {
            guard line[index] == UInt8(ascii: ";") else { throw Failure(reason: "a chunk size is not hexadecimal") }
            index += 1
            let nameStart = index
            while index < line.count && HTTPBytes.isToken(line[index]) { index += 1 }
            guard index > nameStart else { throw Failure(reason: "a chunk extension is malformed") }
            guard index < line.count, line[index] == UInt8(ascii: "=") else { continue }
            index += 1
            let valueStart = index
            while index < line.count && HTTPBytes.isToken(line[index]) { index += 1 }
            guard index > valueStart else { throw Failure(reason: "a chunk extension is malformed") }
        }
        return size
    }

    /// Reads the trailer section after the last chunk, up to and with its empty line, and drops it; false when it is
    /// not complete yet.
    private mutating func parseTrailers(_ buffer: inout ByteBuffer, scanned: Int) throws(Failure) -> Bool {
        // No trailers: the empty line follows at once (nearly every answer).
        if buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            return true
        }
        // Trailers: a head without a status line, checked line by line once complete.
        let end = try Self.endOfSection(
            in: buffer,
            from: scanned,
            limit: Self.maximumTrailerBytes,
            tooLarge: "the trailers are too large"
        )
        guard let end else {
            self.state = .trailers(scanned: Self.resumeSearch(buffer))
            return false
        }
        try buffer.withUnsafeReadableBytes { bytes throws(Failure) in
            var index = 0
            while index + 2 < end {
                index = try Self.headerLine(UnsafeRawBufferPointer(rebasing: bytes[..<end]), at: index).next
            }
            guard index + 2 == end else { throw Failure(reason: "the trailers do not end where they should") }
        }
        buffer.moveReaderIndex(forwardBy: end)
        return true
    }

    // MARK: - Bytes

    private static let noBytes = ByteBuffer()
    private static let httpSlash1Dot: [UInt8] = Array("HTTP/1.".utf8)

    private static func hexDigit(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// A byte of a field value or reason phrase: HTAB, SP, visible ASCII, or obs-text.
    private static func isFieldByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
