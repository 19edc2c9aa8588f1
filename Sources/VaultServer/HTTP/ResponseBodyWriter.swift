import NIOCore

/// Writes a streamed response body (``Response/bodyStream``): its bytes, in order.
public typealias ResponseBodyStream = @Sendable (ResponseBodyWriter) async throws -> Void

/// Where a streamed body's pieces go. On a connection, ``write(_:)`` returns once the piece is handed to the socket,
/// so a body is produced no faster than the client reads it and at most one piece waits in the daemon's memory.
public struct ResponseBodyWriter: Sendable {
    private let sink: @Sendable (ByteBuffer) async throws -> Void

    /// A writer that hands each piece to `sink` (the connection handler's; a test's collects them).
    public init(_ sink: @escaping @Sendable (ByteBuffer) async throws -> Void) {
        self.sink = sink
    }

    /// Writes `buffer` after what was written before; throws when the client has gone.
    public func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }
        try await self.sink(buffer)
    }
}
