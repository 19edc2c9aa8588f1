import NIOCore

/// The bytes a connection read and its parser has not consumed yet: what a read left (a head, a chunk-size line or a
/// chunk's CRLF cut by its end) is kept, and the next read is added after it.
package struct HTTP1Input {
    private var unparsed: ByteBuffer?

    package init() {}

    /// Whether bytes are waiting to be parsed.
    package var hasBytes: Bool { (self.unparsed?.readableBytes ?? 0) > 0 }

    /// Adds what the connection read. A read with nothing left before it is kept as it is; after a remainder it is
    /// copied behind it once, at most a head's worth of bytes.
    package mutating func feed(_ bytes: ByteBuffer) {
        guard var unparsed = self.unparsed, unparsed.readableBytes > 0 else {
            self.unparsed = bytes
            return
        }
        self.unparsed = nil
        var bytes = bytes
        unparsed.writeBuffer(&bytes)
        self.unparsed = unparsed
    }

    /// The bytes to parse, taken out so that parsing them does not copy them; ``keep(_:)`` puts back what is left.
    package mutating func take() -> ByteBuffer {
        defer { self.unparsed = nil }
        return self.unparsed ?? Self.noBytes
    }

    /// Puts back what parsing left of the bytes ``take()`` gave.
    package mutating func keep(_ buffer: ByteBuffer) {
        self.unparsed = buffer.readableBytes > 0 ? buffer : nil
    }

    private static let noBytes = ByteBuffer()
}
