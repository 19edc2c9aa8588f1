import NIOCore

/// A message body as it arrives after its head, framed as the head said: by a length, by chunks, or by the end of
/// the connection. It hands on body bytes as slices of the buffers read, never copied, and says where the body ends.
///
/// Chunk sizes are hexadecimal and bounded, extensions are tokens; both are dropped, like the trailers, which are
/// checked line by line and never handed on.
package struct HTTP1Body {
    package enum Framing: Equatable {
        case length(Int)
        case chunked
        /// The body ends with the connection (a response only).
        case untilClose
    }

    package enum Piece {
        case bytes(ByteBuffer)
        case end
    }

    /// The longest chunk-size line, extensions included.
    package static let maximumChunkLineBytes = 1024
    /// The most trailer bytes after the last chunk.
    package static let maximumTrailerBytes = 16 * 1024

    private enum State {
        case fixed(remaining: Int)
        case untilClose
        case chunkLine(scanned: Int)
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(scanned: Int)
        case ended
    }

    private var state: State

    package init(_ framing: Framing) {
        switch framing {
        case .length(let length): self.state = .fixed(remaining: length)
        case .chunked: self.state = .chunkLine(scanned: 0)
        case .untilClose: self.state = .untilClose
        }
    }

    /// Whether the body ends only with the connection.
    package var endsWithConnection: Bool {
        if case .untilClose = self.state { true } else { false }
    }

    /// The next piece of the body from `buffer`, or nil when more bytes are needed. A body of length zero ends at
    /// once, without bytes.
    ///
    /// - Throws: ``HTTP1Syntax/Violation`` when the chunk framing is malformed.
    package mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1Syntax.Violation) -> Piece? {
        while true {
            switch self.state {
            case .fixed(remaining: 0):
                self.state = .ended
                return .end
            case .fixed(let remaining):
                guard let (piece, left) = Self.piece(of: &buffer, remaining: remaining) else { return nil }
                // The end is reported with the next call (at once, with no more bytes needed).
                self.state = .fixed(remaining: left)
                return .bytes(piece)
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .bytes(buffer.readSlice(length: buffer.readableBytes)!)
            case .chunkLine(let scanned):
                guard try self.parseChunkLine(&buffer, scanned: scanned) else { return nil }
            case .chunkData(let remaining):
                guard let (piece, left) = Self.piece(of: &buffer, remaining: remaining) else { return nil }
                self.state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                return .bytes(piece)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return nil }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw HTTP1Syntax.Violation("a chunk does not end with CRLF")
                }
                self.state = .chunkLine(scanned: 0)
            case .trailers(let scanned):
                guard try self.parseTrailers(&buffer, scanned: scanned) else { return nil }
                self.state = .ended
                return .end
            case .ended:
                return nil
            }
        }
    }

    /// The connection has closed: the end of a body framed by the close, or nil (a body cut short).
    package mutating func connectionClosed() -> Piece? {
        guard case .untilClose = self.state else { return nil }
        self.state = .ended
        return .end
    }

    /// Up to `remaining` bytes of a body (or a chunk) from what was read, as a slice, and how many are left after
    /// them; nil when nothing was read.
    private static func piece(of buffer: inout ByteBuffer, remaining: Int) -> (ByteBuffer, left: Int)? {
        guard buffer.readableBytes > 0 else { return nil }
        let count = min(remaining, buffer.readableBytes)
        return (buffer.readSlice(length: count)!, remaining - count)
    }

    /// Parses a chunk-size line; false when it is not complete yet.
    private mutating func parseChunkLine(
        _ buffer: inout ByteBuffer,
        scanned: Int
    ) throws(HTTP1Syntax.Violation) -> Bool {
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
            guard readable < Self.maximumChunkLineBytes else {
                throw HTTP1Syntax.Violation("a chunk-size line is too long")
            }
            self.state = .chunkLine(scanned: readable)
            return false
        }
        guard lineEnd > 0 else { throw HTTP1Syntax.Violation("a chunk-size line does not end with CRLF") }
        let size = try buffer.withUnsafeReadableBytes { bytes throws(HTTP1Syntax.Violation) in
            try Self.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[..<(lineEnd - 2)]))
        }
        buffer.moveReaderIndex(forwardBy: lineEnd)
        self.state = size == 0 ? .trailers(scanned: 0) : .chunkData(remaining: size)
        return true
    }

    /// A chunk size in hexadecimal, then extensions (`;name` or `;name=value`, tokens only), which are dropped.
    private static func chunkSize(_ line: UnsafeRawBufferPointer) throws(HTTP1Syntax.Violation) -> Int {
        var index = 0
        var size = 0
        while index < line.count, let digit = Self.hexDigit(line[index]) {
            guard index < 12 else { throw HTTP1Syntax.Violation("a chunk is too large") }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0 else { throw HTTP1Syntax.Violation("a chunk size is not hexadecimal") }
        while index < line.count {
            guard line[index] == UInt8(ascii: ";") else {
                throw HTTP1Syntax.Violation("a chunk size is not hexadecimal")
            }
            index += 1
            let nameStart = index
            while index < line.count && HTTPBytes.isToken(line[index]) { index += 1 }
            guard index > nameStart else { throw HTTP1Syntax.Violation("a chunk extension is malformed") }
            guard index < line.count, line[index] == UInt8(ascii: "=") else { continue }
            index += 1
            let valueStart = index
            while index < line.count && HTTPBytes.isToken(line[index]) { index += 1 }
            guard index > valueStart else { throw HTTP1Syntax.Violation("a chunk extension is malformed") }
        }
        return size
    }

    /// Reads the trailer section after the last chunk, up to and with its empty line, and drops it; false when it is
    /// not complete yet.
    private mutating func parseTrailers(
        _ buffer: inout ByteBuffer,
        scanned: Int
    ) throws(HTTP1Syntax.Violation) -> Bool {
        // No trailers: the empty line follows at once (nearly every message).
        if buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            return true
        }
        // Trailers: a head without a start line, checked line by line once complete.
        let end = try HTTP1Syntax.endOfSection(
            in: buffer,
            from: scanned,
            limit: Self.maximumTrailerBytes,
            tooLarge: "the trailers are too large"
        )
        guard let end else {
            self.state = .trailers(scanned: HTTP1Syntax.resumeSearch(buffer))
            return false
        }
        try buffer.withUnsafeReadableBytes { bytes throws(HTTP1Syntax.Violation) in
            var index = 0
            while index + 2 < end {
                index = try HTTP1Syntax.headerLine(UnsafeRawBufferPointer(rebasing: bytes[..<end]), at: index).next
            }
            guard index + 2 == end else { throw HTTP1Syntax.Violation("the trailers do not end where they should") }
        }
        buffer.moveReaderIndex(forwardBy: end)
        return true
    }

    private static func hexDigit(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
