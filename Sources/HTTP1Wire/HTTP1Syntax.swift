import NIOCore

/// The pieces of HTTP/1.1's message syntax (RFC 9112) that a request head and a response head share, read from the
/// bytes as they are: where a head ends, one header line, a `Content-Length` value, the `close` option of
/// `Connection`. ``HTTP1Body`` reads what follows a head.
///
/// Each rule is the narrow reading: lines end in CRLF only; header names are token characters with the colon right
/// after them (so obs-fold is refused); values hold no control character but HTAB.
package enum HTTP1Syntax {
    /// Why bytes are not HTTP/1.1 as the vault reads it. The reason names the rule, never the bytes: they may hold
    /// anything a peer sent.
    package struct Violation: Error, Equatable, CustomStringConvertible {
        package var reason: String
        package init(_ reason: String) { self.reason = reason }
        package var description: String { self.reason }
    }

    /// The longest head (start line and headers together), as NIO's parser limits it.
    package static let maximumHeadBytes = 80 * 1024
    package static let maximumHeaders = 256
    /// The largest body length or chunk size accepted (2^48 bytes: no message comes near it, and no sum overflows).
    package static let maximumLength = 1 << 48

    /// Where a section of header lines (a head, or trailers) ends in `buffer`, after its CRLF CRLF, searching from
    /// `scanned`; nil when its end has not arrived yet.
    ///
    /// - Throws: ``Violation`` with `tooLarge` when `limit` bytes have come without the end.
    package static func endOfSection(
        in buffer: ByteBuffer,
        from scanned: Int,
        limit: Int,
        tooLarge: String
    ) throws(Violation) -> Int? {
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            Self.endOfHead(in: UnsafeRawBufferPointer(rebasing: bytes.prefix(limit)), from: scanned)
        }
        if end == nil, buffer.readableBytes >= limit { throw Violation(tooLarge) }
        return end
    }

    /// Where a head ends in `buffer` (after its CRLF CRLF, at most ``maximumHeadBytes`` in), searching from `scanned`;
    /// when it has not arrived yet, nil and where the search resumes with the next read.
    ///
    /// - Throws: ``Violation`` when the head is too large.
    package static func endOfHead(
        in buffer: ByteBuffer,
        from scanned: Int
    ) throws(Violation) -> (end: Int?, resume: Int) {
        let end = try Self.endOfSection(
            in: buffer,
            from: scanned,
            limit: Self.maximumHeadBytes,
            tooLarge: "the head is too large"
        )
        return (end, end == nil ? Self.resumeSearch(buffer) : 0)
    }

    /// Where the search for a section's end resumes with the next read: up to three bytes of its terminator may be
    /// at the end of this one.
    package static func resumeSearch(_ buffer: ByteBuffer) -> Int {
        max(0, buffer.readableBytes - 3)
    }

    /// Where a head ends (after its CRLF CRLF) in `bytes`, searching from `start`.
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

    /// One header line at `start` of a complete section (`bytes` ends with CRLF CRLF): the name's range, the value's
    /// (without surrounding white space) and where the next line begins.
    package static func headerLine(
        _ bytes: UnsafeRawBufferPointer,
        at start: Int
    ) throws(Violation) -> (name: Range<Int>, value: Range<Int>, next: Int) {
        var index = start
        while HTTPBytes.isToken(bytes[index]) { index += 1 }
        guard index > start, bytes[index] == UInt8(ascii: ":") else {
            // A line that starts with white space is obs-fold, which is refused like every other malformed name.
            throw Violation("a header name is malformed")
        }
        let name = start..<index
        index += 1
        while bytes[index] == UInt8(ascii: " ") || bytes[index] == 0x09 { index += 1 }
        let valueStart = index
        var valueEnd = index
        while bytes[index] != 0x0D {
            let byte = bytes[index]
            guard Self.isFieldByte(byte) else { throw Violation("a header value holds a control character") }
            index += 1
            if byte != UInt8(ascii: " ") && byte != 0x09 { valueEnd = index }
        }
        guard bytes[index + 1] == 0x0A else { throw Violation("a header line does not end with CRLF") }
        return (name, valueStart..<valueEnd, index + 2)
    }

    /// The framing a head's headers set, read by the narrow rules: `Content-Length` once, as digits;
    /// `Transfer-Encoding` once, as exactly `chunked`; no tab around either value; never both.
    package struct Framing {
        package private(set) var contentLength: Int?
        package private(set) var chunked = false

        package init() {}

        /// Reads one header line of a complete head (`bytes`): true when `name` is `Content-Length` or
        /// `Transfer-Encoding`, false for any other name. `whiteSpace` is the line's range between the colon and the
        /// line end, the value's surrounding white space included.
        package mutating func read(
            name: UnsafeRawBufferPointer,
            value: UnsafeRawBufferPointer,
            whiteSpace: Range<Int>,
            of bytes: UnsafeRawBufferPointer
        ) throws(Violation) -> Bool {
            switch name.count {
            case 14 where HTTPBytes.equalsIgnoringCase(name, "content-length"):
                try HTTP1Syntax.requireNoTab(bytes, whiteSpace)
                guard self.contentLength == nil else { throw Violation("Content-Length comes more than once") }
                self.contentLength = try HTTP1Syntax.decimal(value)
                return true
            case 17 where HTTPBytes.equalsIgnoringCase(name, "transfer-encoding"):
                try HTTP1Syntax.requireNoTab(bytes, whiteSpace)
                guard !self.chunked else { throw Violation("Transfer-Encoding comes more than once") }
                guard HTTPBytes.equalsIgnoringCase(value, "chunked") else {
                    throw Violation("the only transfer coding accepted is chunked")
                }
                self.chunked = true
                return true
            default:
                return false
            }
        }

        /// Refuses a head with both `Content-Length` and `Transfer-Encoding`; called once its headers are read.
        package func check() throws(Violation) {
            if self.chunked && self.contentLength != nil {
                throw Violation("Content-Length and Transfer-Encoding come together")
            }
        }
    }

    /// Refuses a tab in the white space around a framing header's value (`Content-Length`, `Transfer-Encoding`, and
    /// for requests `Connection`):
    /// llhttp reads a tab there as part of the value, so a tab would make two parsers frame the message differently.
    package static func requireNoTab(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) throws(Violation) {
        guard !bytes[range].contains(0x09) else {
            throw Violation("a Content-Length, Transfer-Encoding or Connection value is surrounded by a tab")
        }
    }

    /// A `Content-Length` value: digits only, at most ``maximumLength``.
    package static func decimal(_ bytes: UnsafeRawBufferPointer) throws(Violation) -> Int {
        guard !bytes.isEmpty, bytes.count <= 15 else { throw Violation("Content-Length is not a length") }
        var value = 0
        for byte in bytes {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { throw Violation("Content-Length is not a length") }
            value = value * 10 + Int(digit)
        }
        guard value <= Self.maximumLength else { throw Violation("Content-Length is too large") }
        return value
    }

    /// Whether a `Connection` value holds the option `word` (lower-case), in any letter case.
    package static func hasOption(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
            var first = start
            var last = end
            while first < last && (bytes[first] == UInt8(ascii: " ") || bytes[first] == 0x09) { first += 1 }
            while last > first && (bytes[last - 1] == UInt8(ascii: " ") || bytes[last - 1] == 0x09) { last -= 1 }
            let option = UnsafeRawBufferPointer(rebasing: bytes[first..<last])
            if HTTPBytes.equalsIgnoringCase(option, word) { return true }
            start = end + 1
        }
        return false
    }

    /// A byte of a field value or reason phrase: HTAB, SP, visible ASCII, or obs-text.
    package static func isFieldByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
