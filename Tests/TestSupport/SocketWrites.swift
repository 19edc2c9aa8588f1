#if canImport(Glibc)
import Glibc
#endif

/// The send loop of the test clients and servers.
public enum SocketWrites {
    /// Writes all of `bytes` to the socket `descriptor`, retrying on EINTR; `MSG_NOSIGNAL`, so that a peer that closed
    /// is an error here rather than a SIGPIPE that ends the test process.
    /// - Throws: `TestSupportError` when the peer closed the connection or the send failed (a send time-out set on the
    ///   socket included).
    public static func sendAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = send(descriptor, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else { throw TestSupportError("send: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    /// ``sendAll(_:_:)`` of an array.
    public static func sendAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try Self.sendAll(descriptor, $0) }
    }
}
